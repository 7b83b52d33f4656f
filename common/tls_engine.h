#ifndef FTPSGATE_TLS_ENGINE_H
#define FTPSGATE_TLS_ENGINE_H
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

/* An I/O-free TLS server endpoint (DESIGN.md §4). It owns one SSL and no
 * socket: ciphertext goes in with tls_engine_feed, plaintext comes out with
 * tls_engine_read, plaintext goes in with tls_engine_write, and ciphertext to
 * send comes out with tls_engine_take_out. Every rule about handshakes, EOF
 * and close_notify lives here, so control and data connections share it and
 * it is unit-tested without sockets. */

typedef enum {
    TLS_ENGINE_HANDSHAKING = 0,
    TLS_ENGINE_OPEN,    /* handshake done, both directions open */
    TLS_ENGINE_CLOSING, /* we sent close_notify; peer's not yet seen */
    TLS_ENGINE_CLOSED,  /* peer's close_notify received */
    TLS_ENGINE_FAILED   /* see tls_engine_reason */
} tls_engine_state_t;

typedef enum {
    TLS_FAIL_NONE = 0,
    TLS_FAIL_PROTOCOL,  /* bad record, alert, handshake failure */
    TLS_FAIL_TRUNCATED, /* transport EOF without close_notify */
    TLS_FAIL_REUSE      /* data session did not resume the control session */
} tls_fail_t;

typedef struct tls_engine tls_engine_t;

/* Server side. ctx is borrowed (SSL_new takes its own reference). */
tls_engine_t *tls_engine_new(SSL_CTX *ctx);
void tls_engine_free(tls_engine_t *e); /* NULL is fine */

/* Ciphertext received from the peer. Returns FG_OK or FG_NOMEM. */
int tls_engine_feed(tls_engine_t *e, const void *data, size_t len);
/* The transport reached EOF: without a prior close_notify this is a failure
 * (TLS_FAIL_TRUNCATED) reported by the next tls_engine_read. */
void tls_engine_feed_eof(tls_engine_t *e);

/* Drives the handshake and returns decrypted bytes.
 *   FG_OK        *got > 0 bytes in buf
 *   FG_NEED_MORE nothing available now (may have advanced the handshake:
 *                check tls_engine_state and tls_engine_pending_out)
 *   FG_CLOSED    the peer's close_notify was received
 *   FG_TLS       failure; tls_engine_reason says why */
int tls_engine_read(tls_engine_t *e, void *buf, size_t cap, size_t *got);

/* Encrypts all of data (valid only in TLS_ENGINE_OPEN). FG_OK, FG_STATE or FG_TLS. */
int tls_engine_write(tls_engine_t *e, const void *data, size_t len);

/* Queues close_notify (idempotent). */
int tls_engine_shutdown(tls_engine_t *e);

/* Ciphertext waiting to be sent, and taking it. */
size_t tls_engine_pending_out(const tls_engine_t *e);
size_t tls_engine_take_out(tls_engine_t *e, void *buf, size_t cap);

tls_engine_state_t tls_engine_state(const tls_engine_t *e);
tls_fail_t tls_engine_failure(const tls_engine_t *e);
const char *tls_engine_reason(const tls_engine_t *e); /* "" when none */
int tls_engine_handshake_done(const tls_engine_t *e);
int tls_engine_session_reused(const tls_engine_t *e);
/* Marks the engine failed with TLS_FAIL_REUSE (policy decided outside). */
void tls_engine_fail_reuse(tls_engine_t *e, const char *why);
/* Negotiated protocol and cipher, for logs ("TLSv1.3", "TLS_AES_256_GCM_SHA384"). */
const char *tls_engine_version(const tls_engine_t *e);
const char *tls_engine_cipher(const tls_engine_t *e);
/* After FG_CLOSED: bytes the peer sent after its close_notify, which are not
 * TLS (CCC, RFC 2228 §5.3.3: the connection goes on in clear). Takes up to
 * cap bytes; call until it returns 0. */
size_t tls_engine_take_leftover(tls_engine_t *e, void *buf, size_t cap);

/* Data-session reuse (RFC 4217 §10.2, vsftpd's require_ssl_reuse): every TLS
 * session and ticket an engine issues carries its token (a random id of the
 * control connection), so a data connection can prove that it resumed *this*
 * control connection's session and not another client's. */
#define TLS_ENGINE_TOKEN_LEN 16
/* control: 1 on a control connection, whose sessions and tickets get token
 * (a control connection never resumes: its own session must carry its own
 * token); 0 on a data connection, which must resume and keeps what it resumed.
 * The token is the session id context too: a session resumes only where the
 * token is the same. Call before the handshake. */
void tls_engine_set_token(tls_engine_t *e, const unsigned char token[TLS_ENGINE_TOKEN_LEN], int control);
/* After the handshake: 1 when it resumed a session that carries token. */
int tls_engine_resumed_with_token(const tls_engine_t *e, const unsigned char token[TLS_ENGINE_TOKEN_LEN]);
/* After the handshake: 1 and the token of the session it resumed, else 0. */
int tls_engine_resumed_token(const tls_engine_t *e, unsigned char out[TLS_ENGINE_TOKEN_LEN]);
/* policy.require_session_reuse "client": on a data connection, a ticket
 * that carries another control connection's token may resume when check
 * says that connection is the same client's (same address and login); its
 * session id context is then taken as this one's. Session-id resumption
 * (TLS 1.2 without tickets) stays bound to its own control connection.
 * Call before the handshake; check is called from within OpenSSL. */
typedef int (*tls_engine_foreign_check_cb)(void *ctx, const unsigned char token[TLS_ENGINE_TOKEN_LEN]);
void tls_engine_set_foreign_check(tls_engine_t *e, tls_engine_foreign_check_cb check, void *ctx);
/* After the ClientHello of an engine with a token: 1 when the client offered a
 * session to resume (which, not resumed, was another connection's or stale). */
int tls_engine_offered_session(const tls_engine_t *e);
/* After the handshake of a control connection: its session (a reference),
 * to keep for as long as its data connections may resume it (past CCC), then
 * tls_session_forget: removed from the server cache of ctx (the context the
 * engine was created with), reference dropped. NULL-safe. */
SSL_SESSION *tls_engine_get1_session(tls_engine_t *e);
void tls_session_forget(SSL_CTX *ctx, SSL_SESSION *sess);
/* TLS 1.3: a key update (both directions) after this many plaintext bytes
 * in either direction; TLS_ENGINE_KEY_UPDATE_BYTES by default, far below the
 * AES-GCM limit of RFC 8446 §5.5. */
#define TLS_ENGINE_KEY_UPDATE_BYTES (64ull << 30)
void tls_engine_set_key_update_bytes(tls_engine_t *e, uint64_t bytes);
/* TLS 1.3 tickets sent after the handshake. Data connections send none: a
 * client that never reads one (uploads) resets the connection over the
 * unread ticket and loses its last bytes (the vsftpd/ProFTPD upload bug). */
void tls_engine_set_num_tickets(tls_engine_t *e, size_t n);
/* TLS 1.3: one more ticket, sent with the next write. The control connection
 * issues one per transfer, so clients that spend a ticket on every data
 * connection (curl) always hold a fresh one. No-op before TLS 1.3. */
void tls_engine_issue_ticket(tls_engine_t *e);
/* SNI: server names (exact, or "*.example.com" for one label) mapped to the
 * SSL_CTX of another identity. Borrowed; must outlive the engine. The
 * connection starts on the listener's default context, whose ticket keys and
 * session cache stay in use, so data sessions resume across identities. */
typedef struct {
    const char *name;
    SSL_CTX *ctx;
} tls_sni_entry_t;
typedef struct {
    const tls_sni_entry_t *entries;
    size_t n;
} tls_sni_t;
void tls_engine_set_sni(tls_engine_t *e, const tls_sni_t *sni);
/* Pure: the context for server name, or NULL when none matches. */
SSL_CTX *tls_sni_lookup(const tls_sni_t *sni, const char *server_name);

/* Called once per SSL_CTX (by tls_ctx_new): makes tickets carry the token. */
int tls_engine_prepare_ctx(SSL_CTX *ctx);

/* The server name the client sent (SNI), NUL-terminated, or NULL: none.
 * After the ClientHello. */
const char *tls_engine_server_name(const tls_engine_t *e);

/* The underlying SSL, for session-reuse checks by the owner. */
SSL *tls_engine_ssl(tls_engine_t *e);

#endif
