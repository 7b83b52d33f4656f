#include "tls_engine.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "hostname.h"
#include "ticketkeys.h"
#include "tls_ctx.h"

/* SSL ex_data slot pointing at the owning engine's token: created once at
 * start-up (start-up configuration, never changed afterwards). */
static int token_index = -1;
static int sni_index = -1;

struct tls_engine {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer; owned by ssl */
    BIO *wbio; /* ciphertext to the peer; owned by ssl */
    tls_engine_state_t state;
    tls_fail_t failure;
    int transport_eof;
    int sent_close_notify;
    int has_token, control;
    int offered_session; /* the ClientHello offered a session to resume */
    tls_engine_foreign_check_cb foreign_check; /* policy "client" (tls_engine_set_foreign_check) */
    void *foreign_ctx;
    uint64_t since_key_update, key_update_after; /* plaintext bytes, both directions */
    unsigned char token[TLS_ENGINE_TOKEN_LEN];
    char reason[160];
};

static void engine_fail(tls_engine_t *e, tls_fail_t why, const char *text)
{
    if (e->state == TLS_ENGINE_FAILED)
        return;
    e->state = TLS_ENGINE_FAILED;
    e->failure = why;
    unsigned long err = ERR_get_error();
    if (err != 0 && why == TLS_FAIL_PROTOCOL) {
        char ebuf[120];
        ERR_error_string_n(err, ebuf, sizeof ebuf);
        snprintf(e->reason, sizeof e->reason, "%s: %s", text, ebuf);
    } else {
        snprintf(e->reason, sizeof e->reason, "%s", text);
    }
    /* The error queue is per thread: leave nothing behind for the next SSL call. */
    ERR_clear_error();
}

tls_engine_t *tls_engine_new(SSL_CTX *ctx)
{
    tls_engine_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->ssl = SSL_new(ctx);
    e->rbio = BIO_new(BIO_s_mem());
    e->wbio = BIO_new(BIO_s_mem());
    if (!e->ssl || !e->rbio || !e->wbio) {
        SSL_free(e->ssl);
        BIO_free(e->rbio);
        BIO_free(e->wbio);
        free(e);
        return NULL;
    }
    ticketkeys_bind(e->ssl); /* before SNI can move it to another context */
    /* An empty memory BIO means "wait for more", not EOF: EOF is signalled
     * explicitly by tls_engine_feed_eof so that truncation is detected. */
    BIO_set_mem_eof_return(e->rbio, -1);
    BIO_set_mem_eof_return(e->wbio, -1);
    SSL_set_bio(e->ssl, e->rbio, e->wbio);
    SSL_set_accept_state(e->ssl);
    e->state = TLS_ENGINE_HANDSHAKING;
    e->key_update_after = TLS_ENGINE_KEY_UPDATE_BYTES;
    return e;
}

void tls_engine_free(tls_engine_t *e)
{
    if (!e)
        return;
    /* OpenSSL drops the session of an SSL freed before it sent close_notify
     * from the server cache (the SSL 3.0 rule; since TLS 1.1 a session
     * survives a connection that was not closed cleanly, RFC 4346 §7.2.1). A
     * data connection shares its control connection's session, and an aborted
     * or failed transfer must not stop the next one from resuming it; sessions
     * leave the cache by tls_session_forget. */
    SSL_set_shutdown(e->ssl, SSL_get_shutdown(e->ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(e->ssl);
    free(e);
}

int tls_engine_feed(tls_engine_t *e, const void *data, size_t len)
{
    if (len == 0)
        return FG_OK;
    size_t written = 0;
    if (BIO_write_ex(e->rbio, data, len, &written) != 1 || written != len)
        return FG_NOMEM;
    return FG_OK;
}

void tls_engine_feed_eof(tls_engine_t *e)
{
    e->transport_eof = 1;
}

static int engine_handshake(tls_engine_t *e)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(e->ssl);
    if (rc == 1) {
        e->state = TLS_ENGINE_OPEN;
        /* A new full-handshake session (the control connection's) carries the
         * token, also when resumed later from the server cache by session id. */
        SSL_SESSION *sess = SSL_get_session(e->ssl);
        if (e->has_token && e->control && sess)
            SSL_SESSION_set1_ticket_appdata(sess, e->token, sizeof e->token);
        return FG_OK;
    }
    int err = SSL_get_error(e->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        if (e->transport_eof && BIO_ctrl_pending(e->rbio) == 0) {
            engine_fail(e, TLS_FAIL_TRUNCATED, "peer closed during the TLS handshake");
            return FG_TLS;
        }
        return FG_NEED_MORE;
    }
    engine_fail(e, TLS_FAIL_PROTOCOL, "TLS handshake failed");
    return FG_TLS;
}

/* RFC 8446 §5.5: AES-GCM keys must not protect more than about 2^24.5 full
 * records (some 380 GiB) of one connection, and a single data connection can
 * carry a backup that large. TLS 1.3 only (TLS 1.2 has no key update and no
 * renegotiation here); REQUESTED makes the peer renew its sending keys too. */
static void count_for_key_update(tls_engine_t *e, size_t n)
{
    e->since_key_update += n;
    if (e->since_key_update < e->key_update_after || SSL_version(e->ssl) != TLS1_3_VERSION)
        return;
    e->since_key_update = 0;
    if (SSL_key_update(e->ssl, SSL_KEY_UPDATE_REQUESTED) == 1)
        SSL_do_handshake(e->ssl); /* the KeyUpdate goes out now, not with the next write */
}

void tls_engine_set_key_update_bytes(tls_engine_t *e, uint64_t bytes)
{
    e->key_update_after = bytes;
}

int tls_engine_read(tls_engine_t *e, void *buf, size_t cap, size_t *got)
{
    *got = 0;
    switch (e->state) {
    case TLS_ENGINE_FAILED:
        return FG_TLS;
    case TLS_ENGINE_CLOSED:
        return FG_CLOSED;
    case TLS_ENGINE_HANDSHAKING: {
        int rc = engine_handshake(e);
        if (rc != FG_OK)
            return rc;
        break;
    }
    default:
        break;
    }
    ERR_clear_error();
    int rc = SSL_read_ex(e->ssl, buf, cap, got);
    if (rc == 1) {
        count_for_key_update(e, *got);
        return FG_OK;
    }
    *got = 0;
    int err = SSL_get_error(e->ssl, 0);
    switch (err) {
    case SSL_ERROR_ZERO_RETURN:
        e->state = TLS_ENGINE_CLOSED;
        return FG_CLOSED;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        /* SECURITY: a transport EOF without close_notify is a truncation
         * attack or a crashed peer (RFC 8446 §6.1); never a clean end. */
        if (e->transport_eof && BIO_ctrl_pending(e->rbio) == 0) {
            engine_fail(e, TLS_FAIL_TRUNCATED, "connection closed without TLS close_notify");
            return FG_TLS;
        }
        return FG_NEED_MORE;
    default:
        engine_fail(e, TLS_FAIL_PROTOCOL, "TLS read failed");
        return FG_TLS;
    }
}

int tls_engine_write(tls_engine_t *e, const void *data, size_t len)
{
    if (e->state != TLS_ENGINE_OPEN && e->state != TLS_ENGINE_CLOSED)
        return e->state == TLS_ENGINE_FAILED ? FG_TLS : FG_STATE;
    if (e->sent_close_notify)
        return FG_STATE;
    const char *p = data;
    while (len > 0) {
        size_t n = 0;
        ERR_clear_error();
        /* Memory BIOs never block, so a write completes whole or fails. */
        if (SSL_write_ex(e->ssl, p, len, &n) != 1) {
            engine_fail(e, TLS_FAIL_PROTOCOL, "TLS write failed");
            return FG_TLS;
        }
        p += n;
        len -= n;
        count_for_key_update(e, n);
    }
    return FG_OK;
}

int tls_engine_shutdown(tls_engine_t *e)
{
    if (e->sent_close_notify)
        return FG_OK;
    if (e->state == TLS_ENGINE_FAILED || e->state == TLS_ENGINE_HANDSHAKING)
        return FG_STATE;
    ERR_clear_error();
    int rc = SSL_shutdown(e->ssl);
    if (rc < 0) {
        int err = SSL_get_error(e->ssl, rc);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            engine_fail(e, TLS_FAIL_PROTOCOL, "TLS shutdown failed");
            return FG_TLS;
        }
    }
    e->sent_close_notify = 1;
    if (e->state == TLS_ENGINE_OPEN)
        e->state = TLS_ENGINE_CLOSING;
    return FG_OK;
}

size_t tls_engine_pending_out(const tls_engine_t *e)
{
    return BIO_ctrl_pending(e->wbio);
}

size_t tls_engine_take_out(tls_engine_t *e, void *buf, size_t cap)
{
    size_t n = 0;
    if (cap == 0 || BIO_ctrl_pending(e->wbio) == 0)
        return 0;
    if (BIO_read_ex(e->wbio, buf, cap, &n) != 1)
        return 0;
    return n;
}

tls_engine_state_t tls_engine_state(const tls_engine_t *e)
{
    return e->state;
}

tls_fail_t tls_engine_failure(const tls_engine_t *e)
{
    return e->failure;
}

const char *tls_engine_reason(const tls_engine_t *e)
{
    return e->reason;
}

int tls_engine_handshake_done(const tls_engine_t *e)
{
    return e->state != TLS_ENGINE_HANDSHAKING && SSL_is_init_finished(e->ssl);
}

int tls_engine_session_reused(const tls_engine_t *e)
{
    return SSL_session_reused(e->ssl);
}

void tls_engine_fail_reuse(tls_engine_t *e, const char *why)
{
    engine_fail(e, TLS_FAIL_REUSE, why);
}

const char *tls_engine_version(const tls_engine_t *e)
{
    return SSL_get_version(e->ssl);
}

const char *tls_engine_cipher(const tls_engine_t *e)
{
    const char *c = SSL_get_cipher_name(e->ssl);
    return c ? c : "";
}

static int on_ticket_generate(SSL *ssl, void *arg)
{
    (void)arg;
    const tls_engine_t *e = token_index >= 0 ? SSL_get_ex_data(ssl, token_index) : NULL;
    SSL_SESSION *sess = SSL_get_session(ssl);
    /* SECURITY: a data connection keeps the token of the session it resumed;
     * writing its own over it would make any session pass the reuse check. */
    if (!e || !e->has_token || !sess || !e->control)
        return 1;
    return SSL_SESSION_set1_ticket_appdata(sess, e->token, TLS_ENGINE_TOKEN_LEN);
}

static SSL_TICKET_RETURN on_ticket_decrypt(SSL *ssl, SSL_SESSION *sess, const unsigned char *keyname,
                                           size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
    (void)keyname;
    (void)keyname_len;
    (void)arg;
    /* SECURITY: TLS 1.2 neither opens nor issues tickets (IGNORE, not
     * IGNORE_RENEW: no session_ticket extension, no NewSessionTicket): it
     * resumes by session id from the server cache, where a session lives only
     * as long as its control connection (tls_ctx.c says why). */
    if (SSL_version(ssl) < TLS1_3_VERSION)
        return SSL_TICKET_RETURN_IGNORE;
    const tls_engine_t *e = token_index >= 0 ? SSL_get_ex_data(ssl, token_index) : NULL;
    /* A control connection does a full handshake (and gets fresh tickets):
     * resuming would give it another connection's token. */
    if (e && e->control && (status == SSL_TICKET_SUCCESS || status == SSL_TICKET_SUCCESS_RENEW))
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    /* SECURITY: policy "client": another control connection's ticket resumes
     * here only when the owner says that connection is the same client's
     * (OpenSSL compares the session id context after this callback). */
    void *data = NULL;
    size_t len = 0;
    if (e && !e->control && e->foreign_check && sess &&
        (status == SSL_TICKET_SUCCESS || status == SSL_TICKET_SUCCESS_RENEW) &&
        SSL_SESSION_get0_ticket_appdata(sess, &data, &len) == 1 && len == TLS_ENGINE_TOKEN_LEN &&
        CRYPTO_memcmp(data, e->token, len) != 0 && e->foreign_check(e->foreign_ctx, data))
        SSL_SESSION_set1_id_context(sess, e->token, TLS_ENGINE_TOKEN_LEN);
    /* OpenSSL's own defaults otherwise; the token travels inside the session. */
    switch (status) {
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    case SSL_TICKET_SUCCESS:
        return SSL_TICKET_RETURN_USE;
    case SSL_TICKET_SUCCESS_RENEW:
        return SSL_TICKET_RETURN_USE_RENEW;
    default:
        return SSL_TICKET_RETURN_ABORT;
    }
}

SSL_CTX *tls_sni_lookup(const tls_sni_t *sni, const char *name)
{
    if (!sni || !name)
        return NULL;
    /* "*.example.com" matches exactly one more label (hostname.h), by the
     * same rule as the listener's sni routes. */
    for (size_t i = 0; i < sni->n; i++)
        if (hostname_match(sni->entries[i].name, name, strlen(name)))
            return sni->entries[i].ctx;
    return NULL;
}

/* The host name of a ClientHello's server_name extension (RFC 6066 §3). */
static int sni_from_hello(SSL *ssl, char *name, size_t cap)
{
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 2)
        return 0;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list + 2 > len)
        return 0;
    p += 2;
    while (list >= 3) {
        unsigned type = p[0];
        size_t n = ((size_t)p[1] << 8) | p[2];
        if (n + 3 > list)
            return 0;
        if (type == 0) { /* host_name */
            if (n == 0 || n >= cap || memchr(p + 3, 0, n))
                return 0;
            memcpy(name, p + 3, n);
            name[n] = '\0';
            return 1;
        }
        p += 3 + n;
        list -= 3 + n;
    }
    return 0;
}

/* SNI is decided in the ClientHello callback, before the version and the
 * cipher are chosen, so the chosen identity's whole TLS policy applies (not
 * only its certificate, as a servername callback would give). */
/* Whether a ClientHello asks to resume: a TLS 1.3 PSK, a non-empty TLS 1.2
 * ticket, or a session id from a client that cannot speak TLS 1.3 (a TLS 1.3
 * client's legacy session id is random, for middlebox compatibility). */
static int hello_offers_session(SSL *ssl)
{
    const unsigned char *ext = NULL, *sid = NULL;
    size_t len = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_psk, &ext, &len) == 1)
        return 1;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_session_ticket, &ext, &len) == 1 && len > 0)
        return 1;
    return SSL_client_hello_get0_session_id(ssl, &sid) > 0 &&
           SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &ext, &len) != 1;
}

static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    tls_engine_t *e = token_index >= 0 ? SSL_get_ex_data(ssl, token_index) : NULL;
    if (e)
        e->offered_session = hello_offers_session(ssl);
    const tls_sni_t *sni = sni_index >= 0 ? SSL_get_ex_data(ssl, sni_index) : NULL;
    char name[256];
    if (!sni || sni->n == 0 || !sni_from_hello(ssl, name, sizeof name))
        return SSL_CLIENT_HELLO_SUCCESS;
    SSL_CTX *ctx = tls_sni_lookup(sni, name);
    if (ctx && ctx != SSL_get_SSL_CTX(ssl) && tls_ctx_switch(ssl, ctx) != 0) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

void tls_engine_set_sni(tls_engine_t *e, const tls_sni_t *sni)
{
    if (sni_index >= 0)
        SSL_set_ex_data(e->ssl, sni_index, (void *)sni);
}

int tls_engine_prepare_ctx(SSL_CTX *ctx)
{
    if (token_index < 0)
        token_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (sni_index < 0)
        sni_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (token_index < 0 || sni_index < 0)
        return FG_TLS;
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    return SSL_CTX_set_session_ticket_cb(ctx, on_ticket_generate, on_ticket_decrypt, NULL) == 1
               ? FG_OK
               : FG_TLS;
}

void tls_engine_set_token(tls_engine_t *e, const unsigned char token[TLS_ENGINE_TOKEN_LEN], int control)
{
    memcpy(e->token, token, sizeof e->token);
    e->has_token = 1;
    e->control = control;
    if (token_index >= 0)
        SSL_set_ex_data(e->ssl, token_index, e);
    /* SECURITY: the token is also the session id context, which OpenSSL
     * compares before it resumes anything (session id, ticket, PSK): a session
     * resumes only on this control connection's data connections, and no
     * control connection resumes another one's (by session id either, which
     * the ticket callback cannot see). */
    SSL_set_session_id_context(e->ssl, token, TLS_ENGINE_TOKEN_LEN);
}

int tls_engine_offered_session(const tls_engine_t *e)
{
    return e->offered_session;
}

SSL_SESSION *tls_engine_get1_session(tls_engine_t *e)
{
    return SSL_get1_session(e->ssl);
}

void tls_session_forget(SSL_CTX *ctx, SSL_SESSION *sess)
{
    if (!sess)
        return;
    if (ctx)
        SSL_CTX_remove_session(ctx, sess);
    SSL_SESSION_free(sess);
}

int tls_engine_resumed_with_token(const tls_engine_t *e, const unsigned char token[TLS_ENGINE_TOKEN_LEN])
{
    if (!tls_engine_handshake_done(e) || !SSL_session_reused(e->ssl))
        return 0;
    SSL_SESSION *sess = SSL_get_session(e->ssl);
    void *data = NULL;
    size_t len = 0;
    if (!sess || SSL_SESSION_get0_ticket_appdata(sess, &data, &len) != 1)
        return 0;
    return len == TLS_ENGINE_TOKEN_LEN && CRYPTO_memcmp(data, token, len) == 0;
}

void tls_engine_set_num_tickets(tls_engine_t *e, size_t n)
{
    SSL_set_num_tickets(e->ssl, n);
}

void tls_engine_issue_ticket(tls_engine_t *e)
{
    if (e->state == TLS_ENGINE_OPEN && SSL_version(e->ssl) >= TLS1_3_VERSION)
        SSL_new_session_ticket(e->ssl);
}

size_t tls_engine_take_leftover(tls_engine_t *e, void *buf, size_t cap)
{
    size_t n = 0;
    if (e->state != TLS_ENGINE_CLOSED || cap == 0 || BIO_ctrl_pending(e->rbio) == 0)
        return 0;
    if (BIO_read_ex(e->rbio, buf, cap, &n) != 1)
        return 0;
    return n;
}

SSL *tls_engine_ssl(tls_engine_t *e)
{
    return e->ssl;
}

int tls_engine_resumed_token(const tls_engine_t *e, unsigned char out[TLS_ENGINE_TOKEN_LEN])
{
    if (!tls_engine_handshake_done(e) || !SSL_session_reused(e->ssl))
        return 0;
    SSL_SESSION *sess = SSL_get_session(e->ssl);
    void *data = NULL;
    size_t len = 0;
    if (!sess || SSL_SESSION_get0_ticket_appdata(sess, &data, &len) != 1 || len != TLS_ENGINE_TOKEN_LEN)
        return 0;
    memcpy(out, data, len);
    return 1;
}

void tls_engine_set_foreign_check(tls_engine_t *e, tls_engine_foreign_check_cb check, void *ctx)
{
    e->foreign_check = check;
    e->foreign_ctx = ctx;
}

const char *tls_engine_server_name(const tls_engine_t *e)
{
    return SSL_get_servername(e->ssl, TLSEXT_NAMETYPE_host_name);
}
