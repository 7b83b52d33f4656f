#ifndef FTPSGATE_TICKETKEYS_H
#define FTPSGATE_TICKETKEYS_H
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

/* The session-ticket keys of one SSL_CTX: a small ring, newest first.
 *
 * New tickets are encrypted under the newest key (OpenSSL's own ticket format:
 * AES-256-CBC and HMAC-SHA256 under a 16-byte key name), which is replaced by
 * a fresh one (RAND_priv_bytes) once it is rotate_s old. An older key still
 * decrypts the tickets issued under it until rotate_s + lifetime_s after its
 * creation: the last ticket it encrypted is then past its own lifetime
 * (lifetime_s, the context's session timeout). Then it is erased
 * (OPENSSL_cleanse). Rotation and erasure happen lazily, from the time, when a
 * ticket is made or opened and when a connection starts (ticketkeys_bind): no
 * timer. The clock is monotonic (CLOCK_BOOTTIME), injectable for tests.
 *
 * Only TLS 1.3 tickets are issued: see tls_ctx.c for why TLS 1.2 resumes by
 * session id instead. The ring is locked, so that contexts may be shared by
 * several event-loop threads. */

#define TICKETKEYS_NAME_LEN 16
/* A new key at least once a day. */
#define TICKETKEYS_ROTATE_S (24 * 3600)

typedef struct ticketkeys ticketkeys_t;

/* Seconds of a monotonic clock. */
typedef int64_t (*ticketkeys_clock_fn)(void *arg);

/* Gives ctx a ring with its first key and makes it ctx's ticket key callback
 * (SSL_CTX_set_tlsext_ticket_key_evp_cb). The ring belongs to ctx and is
 * erased and freed with it. rotate_s > 0; lifetime_s >= 0, and at most
 * TICKETKEYS_MAX_KEYS keys can be needed at once. FG_OK, FG_RANGE, FG_NOMEM or
 * FG_TLS (no randomness). Once per context. */
#define TICKETKEYS_MAX_KEYS 16
int ticketkeys_install(SSL_CTX *ctx, int64_t rotate_s, int64_t lifetime_s);

/* ctx's ring, or NULL. */
ticketkeys_t *ticketkeys_of(SSL_CTX *ctx);

/* Call right after SSL_new(ctx): OpenSSL keeps using ctx's ticket callback
 * (its session context) after SNI moved ssl to another identity's context, so
 * ssl remembers ctx's ring. Also rotates and erases keys when due. */
void ticketkeys_bind(SSL *ssl);

/* The clock (default: CLOCK_BOOTTIME in seconds). For tests. */
void ticketkeys_set_clock(ticketkeys_t *k, ticketkeys_clock_fn fn, void *arg);

/* Rotates when due and erases keys past their retention, as every ticket
 * operation does. */
void ticketkeys_maintain(ticketkeys_t *k);

/* Keys held now and the newest one's name (FG_OK, or FG_STATE when the ring
 * is empty); neither rotates nor erases. */
size_t ticketkeys_count(ticketkeys_t *k);
int ticketkeys_newest_name(ticketkeys_t *k, unsigned char name[TICKETKEYS_NAME_LEN]);

#endif
