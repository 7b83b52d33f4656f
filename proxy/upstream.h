#ifndef FTPSGATE_UPSTREAM_H
#define FTPSGATE_UPSTREAM_H
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "config.h"
#include "ftp_reply.h"
#include "metrics.h"

/* The backend control connection of a session: resolves the backend name
 * (libuv's thread pool, never blocking the loop), tries its addresses in
 * turn with a connect deadline each, connects from the client's address
 * when the listener says so (source-IP transparency), reads the greeting and
 * then parses every reply line, and writes commands (Telnet IAC doubled).
 *
 * It reports to its owner through upstream_cbs_t, never from inside an
 * upstream_* call. After upstream_close only on_closed follows, once, when
 * every handle is closed and the memory is gone. */

typedef struct upstream upstream_t;

typedef enum {
    UPSTREAM_UNREACHABLE = 0, /* no address answered, or the name does not resolve */
    UPSTREAM_REFUSED,         /* the greeting was not 220 (e.g. "421 Too many users") */
    UPSTREAM_PROTOCOL,        /* a line that is not an FTP reply, or too long */
    UPSTREAM_CLOSED           /* the backend closed the connection */
} upstream_failure_t;

typedef struct {
    /* The backend greeted with 220: commands may go. */
    void (*on_ready)(void *owner);
    /* A reply line after the greeting (r parsed; line as received, no CRLF). */
    void (*on_reply)(void *owner, const ftp_reply_line_t *r, const char *line, size_t len);
    /* The connection cannot serve the session any more (once). detail is
     * for the log (the backend's refusal line is escaped into it). */
    void (*on_failed)(void *owner, upstream_failure_t why, const char *detail);
    /* Every handle is closed; the upstream is freed after this returns. */
    void (*on_closed)(void *owner);
} upstream_cbs_t;

typedef struct {
    uv_loop_t *loop;
    const config_backend_t *backend;     /* the name to resolve, or interception, and the source rule */
    const config_limits_t *limits;       /* backend_connect_timeout (per address), tcp_keepalive */
    const struct sockaddr *client;       /* the real client (source-IP transparency) */
    const struct sockaddr *intercepted;  /* where an intercepted client meant to go; NULL when not */
    metrics_t *metrics;                  /* backend_connect_failures */
    unsigned long long sid;              /* for the log */
    const char *peer;
} upstream_opts_t;

/* What the client is told (after "421 ") when the backend fails so. */
const char *upstream_failure_reply(upstream_failure_t why);

/* Starts resolving and connecting. NULL when out of memory. */
upstream_t *upstream_open(const upstream_opts_t *o, const upstream_cbs_t *cbs, void *owner);

/* A command line without CRLF: IAC bytes are doubled again (RFC 854; the
 * line reader turned the client's IAC IAC into one 0xFF). FG_OK or an error. */
int upstream_send_line(upstream_t *u, const char *line, size_t len);
/* Bytes as they are (a formatted PORT/EPRT/PASV line with CRLF). */
int upstream_send_raw(upstream_t *u, const char *data, size_t len);
/* ABOR with the Telnet "Synch" (RFC 959 §4.1.3): IAC IP, IAC DM as TCP
 * urgent data, so a backend busy with a transfer notices it. */
void upstream_send_abort(upstream_t *u);

/* Stop and resume reading replies (the client is not reading ours). */
void upstream_pause(upstream_t *u);
void upstream_resume(upstream_t *u);

/* The backend's address (after on_ready), and our end of the connection. */
const struct sockaddr *upstream_peer(const upstream_t *u);
int upstream_local(upstream_t *u, struct sockaddr_storage *out);

/* Ends the connection; only on_closed follows. Idempotent. */
void upstream_close(upstream_t *u);

#endif
