#include "ticketkeys.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <time.h>

#include "fgerr.h"

typedef struct {
    unsigned char name[TICKETKEYS_NAME_LEN];
    unsigned char aes[32];  /* AES-256-CBC */
    unsigned char hmac[32]; /* HMAC-SHA256 */
    int64_t born;           /* clock seconds */
} tkey_t;

struct ticketkeys {
    CRYPTO_RWLOCK *lock;
    ticketkeys_clock_fn clock;
    void *clock_arg;
    int64_t rotate_s, retain_s; /* retain_s = rotate_s + lifetime_s */
    size_t n;                   /* keys[0] is the newest */
    tkey_t keys[TICKETKEYS_MAX_KEYS];
};

/* SSL_CTX ex_data: the ring it owns. SSL ex_data: the ring of the context the
 * SSL was created from (borrowed). Both created once, at start-up. */
static int ctx_index = -1, ssl_index = -1;

static int64_t boottime_clock(void *arg)
{
    (void)arg;
    struct timespec ts;
    /* BOOTTIME counts a suspended machine's time too: "daily" is wall days. */
    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0 && clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec;
}

static void ring_free(ticketkeys_t *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k->keys, sizeof k->keys);
    CRYPTO_THREAD_lock_free(k->lock);
    OPENSSL_free(k);
}

static void on_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    ring_free(ptr);
}

/* SECURITY: forward secrecy of what the tickets protect: a key is erased as
 * soon as no ticket it encrypted can still be valid. Caller holds the lock. */
static void ring_erase_expired(ticketkeys_t *k, int64_t now)
{
    while (k->n > 0 && now - k->keys[k->n - 1].born >= k->retain_s) {
        k->n--;
        OPENSSL_cleanse(&k->keys[k->n], sizeof k->keys[k->n]);
    }
}

/* A new newest key when there is none or the newest is rotate_s old. Caller
 * holds the lock. 0, or -1 without randomness (the ring keeps its keys). */
static int ring_rotate(ticketkeys_t *k, int64_t now)
{
    if (k->n > 0 && now - k->keys[0].born < k->rotate_s)
        return 0;
    tkey_t fresh;
    if (RAND_bytes(fresh.name, sizeof fresh.name) != 1 || RAND_priv_bytes(fresh.aes, sizeof fresh.aes) != 1 ||
        RAND_priv_bytes(fresh.hmac, sizeof fresh.hmac) != 1) {
        OPENSSL_cleanse(&fresh, sizeof fresh);
        return -1;
    }
    fresh.born = now;
    /* Full only if the clock jumped: the oldest key goes first. */
    if (k->n == TICKETKEYS_MAX_KEYS) {
        k->n--;
        OPENSSL_cleanse(&k->keys[k->n], sizeof k->keys[k->n]);
    }
    memmove(&k->keys[1], &k->keys[0], k->n * sizeof k->keys[0]);
    k->keys[0] = fresh;
    k->n++;
    OPENSSL_cleanse(&fresh, sizeof fresh);
    return 0;
}

static int64_t ring_now(const ticketkeys_t *k)
{
    return k->clock(k->clock_arg);
}

static int set_mac_key(EVP_MAC_CTX *hctx, const tkey_t *key)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)key->hmac, sizeof key->hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

static ticketkeys_t *ring_for(SSL *ssl)
{
    ticketkeys_t *k = ssl_index >= 0 ? SSL_get_ex_data(ssl, ssl_index) : NULL;
    /* Not bound (an SSL made without ticketkeys_bind): never moved by SNI
     * either, so its context is its session context. */
    return k ? k : ticketkeys_of(SSL_get_SSL_CTX(ssl));
}

/* OpenSSL's ticket key callback. enc: make a ticket (1: keys set; 0: no
 * ticket) or open one whose key name is given (1: keys set; 2: keys set and
 * the ticket should be replaced; 0: unknown key, a full handshake). */
static int on_ticket_key(SSL *ssl, unsigned char name[TICKETKEYS_NAME_LEN], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    ticketkeys_t *k = ring_for(ssl);
    if (!k)
        return 0;
    /* TLS 1.2 resumes by session id only (tls_ctx.c): should OpenSSL still
     * ask, no ticket is opened and an empty one is made (RFC 5077 §3.3). */
    if (SSL_version(ssl) < TLS1_3_VERSION)
        return 0;
    int rc = 0;
    if (!CRYPTO_THREAD_write_lock(k->lock))
        return 0;
    int64_t now = ring_now(k);
    ring_erase_expired(k, now);
    if (enc) {
        const int iv_len = EVP_CIPHER_get_iv_length(EVP_aes_256_cbc());
        if (ring_rotate(k, now) == 0 && k->n > 0 && iv_len > 0 && RAND_bytes(iv, iv_len) == 1 &&
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->keys[0].aes, iv) == 1 &&
            set_mac_key(hctx, &k->keys[0])) {
            memcpy(name, k->keys[0].name, TICKETKEYS_NAME_LEN);
            rc = 1;
        }
    } else {
        for (size_t i = 0; i < k->n; i++) {
            if (memcmp(name, k->keys[i].name, TICKETKEYS_NAME_LEN) != 0)
                continue;
            if (set_mac_key(hctx, &k->keys[i]) &&
                EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->keys[i].aes, iv) == 1)
                rc = i == 0 ? 1 : 2;
            break;
        }
    }
    CRYPTO_THREAD_unlock(k->lock);
    return rc;
}

int ticketkeys_install(SSL_CTX *ctx, int64_t rotate_s, int64_t lifetime_s)
{
    if (rotate_s <= 0 || lifetime_s < 0 || lifetime_s / rotate_s + 2 > TICKETKEYS_MAX_KEYS)
        return FG_RANGE;
    if (ctx_index < 0)
        ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, on_ctx_free);
    if (ssl_index < 0)
        ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (ctx_index < 0 || ssl_index < 0 || ticketkeys_of(ctx) != NULL)
        return FG_STATE;
    ticketkeys_t *k = OPENSSL_zalloc(sizeof *k);
    if (!k)
        return FG_NOMEM;
    k->lock = CRYPTO_THREAD_lock_new();
    k->clock = boottime_clock;
    k->rotate_s = rotate_s;
    k->retain_s = rotate_s + lifetime_s;
    if (!k->lock) {
        ring_free(k);
        return FG_NOMEM;
    }
    if (ring_rotate(k, ring_now(k)) != 0) {
        ring_free(k);
        return FG_TLS;
    }
    if (!SSL_CTX_set_ex_data(ctx, ctx_index, k)) {
        ring_free(k);
        return FG_NOMEM;
    }
    return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key) == 1 ? FG_OK : FG_TLS;
}

ticketkeys_t *ticketkeys_of(SSL_CTX *ctx)
{
    return ctx && ctx_index >= 0 ? SSL_CTX_get_ex_data(ctx, ctx_index) : NULL;
}

void ticketkeys_bind(SSL *ssl)
{
    ticketkeys_t *k = ticketkeys_of(SSL_get_SSL_CTX(ssl));
    if (!k)
        return;
    SSL_set_ex_data(ssl, ssl_index, k);
    ticketkeys_maintain(k);
}

void ticketkeys_set_clock(ticketkeys_t *k, ticketkeys_clock_fn fn, void *arg)
{
    if (!CRYPTO_THREAD_write_lock(k->lock))
        return;
    k->clock = fn ? fn : boottime_clock;
    k->clock_arg = fn ? arg : NULL;
    CRYPTO_THREAD_unlock(k->lock);
}

void ticketkeys_maintain(ticketkeys_t *k)
{
    if (!k || !CRYPTO_THREAD_write_lock(k->lock))
        return;
    int64_t now = ring_now(k);
    ring_erase_expired(k, now);
    (void)ring_rotate(k, now); /* without randomness: retried with the next ticket */
    CRYPTO_THREAD_unlock(k->lock);
}

size_t ticketkeys_count(ticketkeys_t *k)
{
    if (!CRYPTO_THREAD_read_lock(k->lock))
        return 0;
    size_t n = k->n;
    CRYPTO_THREAD_unlock(k->lock);
    return n;
}

int ticketkeys_newest_name(ticketkeys_t *k, unsigned char name[TICKETKEYS_NAME_LEN])
{
    if (!CRYPTO_THREAD_read_lock(k->lock))
        return FG_STATE;
    int rc = FG_STATE;
    if (k->n > 0) {
        memcpy(name, k->keys[0].name, TICKETKEYS_NAME_LEN);
        rc = FG_OK;
    }
    CRYPTO_THREAD_unlock(k->lock);
    return rc;
}
