#ifndef FTPSGATE_TSTREAM_H
#define FTPSGATE_TSTREAM_H
#include <stddef.h>
#include <uv.h>
#include <openssl/ssl.h>

/* A TCP connection, clear or TLS (server side), with byte accounting for
 * back-pressure. Control and data connections both use it; the TLS rules
 * themselves live in common/tls_engine.
 *
 * Ownership: the stream owns its uv_tcp_t and frees everything in the libuv
 * close callback, right after on_close returns. Writes are copied; the copy
 * belongs to libuv until the write callback. Until the stream is connected
 * (or, with TLS, until the handshake is done) writes are held in order and
 * count as queued.
 *
 * Completion rule (as libuv's): no callback runs inside a call of this API.
 * A failure found while a call starts work (a write that cannot be queued, a
 * shutdown that cannot start) and bytes a call makes deliverable (resume,
 * inject) are reported later from the event loop (defer.h). After
 * tstream_close only on_close follows. */

typedef struct tstream tstream_t;

typedef enum {
    TSTREAM_END_CLEAN = 0, /* FIN (clear) or close_notify (TLS) */
    TSTREAM_END_TRUNCATED, /* TLS: FIN without close_notify */
    TSTREAM_END_RESET,     /* connection reset or socket error (a failed write included) */
    TSTREAM_END_TLS_FAILED /* TLS protocol failure (handshake or later) */
} tstream_end_t;

typedef struct {
    void (*on_connect)(tstream_t *s, int status);   /* outgoing connect finished (status 0 or uv error) */
    void (*on_handshake)(tstream_t *s);              /* TLS handshake completed */
    void (*on_data)(tstream_t *s, const char *buf, size_t len);
    void (*on_end)(tstream_t *s, tstream_end_t how, const char *reason); /* once; reading stops */
    /* Writing failed after reading had already ended (the peer half-closed,
     * then reset): nothing more reaches the peer and further writes fail.
     * (Before on_end, a write failure is reported as on_end RESET.) Once. */
    void (*on_write_failed)(tstream_t *s, const char *reason);
    void (*on_drain)(tstream_t *s);                  /* queued bytes fell to the low mark */
    void (*on_shutdown)(tstream_t *s, int status);   /* our FIN went out after every queued byte */
    void (*on_close)(tstream_t *s);                  /* last callback; s is freed after it */
} tstream_cbs_t;

/* The high/low marks of the queue: a pump stops reading its source while its
 * sink's queue is above TSTREAM_HIGH_MARK and resumes at on_drain. */
#define TSTREAM_HIGH_MARK (256u * 1024u)
#define TSTREAM_LOW_MARK (64u * 1024u)

tstream_t *tstream_new(uv_loop_t *loop, const tstream_cbs_t *cbs, void *userdata);
void *tstream_userdata(const tstream_t *s);
void tstream_set_userdata(tstream_t *s, const tstream_cbs_t *cbs, void *userdata);
uv_tcp_t *tstream_tcp(tstream_t *s);   /* for uv_accept into it */
uv_stream_t *tstream_uv(tstream_t *s);

/* For an accepted stream: marks it connected. */
void tstream_set_connected(tstream_t *s);
/* FG_OK, or FG_IO when the connect cannot start (no callback then). */
int tstream_connect(tstream_t *s, const struct sockaddr *addr);

/* FG_OK, or FG_IO when reading cannot start (the stream is useless then). */
int tstream_start_read(tstream_t *s);
void tstream_pause(tstream_t *s);
void tstream_resume(tstream_t *s);

/* Server-side TLS from now on: bytes read afterwards are TLS records. */
int tstream_start_tls(tstream_t *s, SSL_CTX *ctx);
int tstream_is_tls(const tstream_t *s);

/* Ends TLS but not the connection (CCC, REIN): close_notify goes out after
 * the queued bytes; when the peer's close_notify arrives, reading pauses and
 * on_tls_stopped runs from the loop; then the stream carries clear bytes, or
 * TLS again if the callback called tstream_start_tls (anything the peer sent
 * after its close_notify is delivered next, as clear data or to the new TLS
 * engine). */
int tstream_stop_tls(tstream_t *s, void (*on_tls_stopped)(tstream_t *s));
int tstream_tls_stopping(const tstream_t *s); /* close_notify sent, peer's awaited */
int tstream_handshake_done(const tstream_t *s);
struct tls_engine *tstream_engine(tstream_t *s); /* NULL when clear */
const char *tstream_tls_desc(tstream_t *s); /* "TLSv1.3 TLS_AES_..." or "clear" */

/* TLS records already read off the socket (after a PROXY header), processed
 * as if they had just arrived. FG_OK, FG_STATE when the stream is not TLS, or
 * FG_NOMEM. */
int tstream_inject_tls(tstream_t *s, const void *data, size_t len);

/* 0 or a negative FG_ code (FG_IO once a write has failed). */
int tstream_write(tstream_t *s, const void *data, size_t len);
size_t tstream_queued(const tstream_t *s);

/* After every queued byte: close_notify (TLS), then FIN. on_shutdown follows. */
void tstream_shutdown(tstream_t *s);
int tstream_shutdown_done(const tstream_t *s);
/* The end of stream that libuv reported was a reset (the socket's pending error). */
int tstream_eof_was_reset(const tstream_t *s);
int tstream_ended(const tstream_t *s); /* on_end was delivered */

/* Until the stream is shut down or closed normally, its connection is reset
 * (not ended with a FIN) if it is closed otherwise, even by the kernel when
 * the process dies: a backend then never takes an upload cut short by a
 * killed proxy for a complete file. */
void tstream_reset_if_killed(tstream_t *s);

/* Closes now (reset=1 sends RST: the peer must not take what it got as
 * complete, or it was refused). Idempotent; on_close follows. */
void tstream_close(tstream_t *s, int reset);
int tstream_closing(const tstream_t *s);

#endif
