#ifndef FTPSGATE_CLIENT_H
#define FTPSGATE_CLIENT_H
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>
#include <openssl/ssl.h>

#include "proxyproto.h"
#include "tls_engine.h"
#include "tstream.h"

/* The client's control connection, as the session sees it: a PROXY header
 * read first when the listener expects one, TLS started and stopped on
 * request (with the session's token and SNI table), client bytes buffered
 * with a bound and taken one command line at a time (the line cap is lower
 * before login), and replies written out.
 *
 * Reports through client_cbs_t, from libuv callbacks only (never inside a
 * client_* call). After client_close only on_closed follows. */

typedef struct client client_t;

typedef struct {
    /* The PROXY header was read: status FG_OK and pp naming the real client,
     * or the parse error (FG_SYNTAX, FG_TOO_LONG, FG_RANGE; pp NULL). Return 0
     * to go on, -1 when the owner refused or closed the session. */
    int (*on_proxy_header)(void *owner, int status, const proxyproto_t *pp);
    void (*on_input)(void *owner);          /* new bytes: client_take_line may have a line */
    void (*on_handshake)(void *owner);      /* the TLS handshake finished */
    /* The client answered our close_notify (client_stop_tls); restarted: a
     * new TLS handshake is awaited on the same connection. */
    void (*on_tls_stopped)(void *owner, int restarted);
    void (*on_drain)(void *owner);          /* our queued replies fell to the low mark */
    void (*on_end)(void *owner, tstream_end_t how, const char *reason); /* the client is gone */
    void (*on_closed)(void *owner);         /* last callback; the client is freed after it */
} client_cbs_t;

/* stream: accepted and connected; the client takes it over. proxy_header:
 * the first bytes must be a PROXY header. NULL when out of memory (the stream
 * is closed then). */
client_t *client_new(tstream_t *stream, int proxy_header, size_t max_line, const client_cbs_t *cbs,
                     void *owner);
/* Starts reading. FG_OK or FG_IO. */
int client_start(client_t *c);

/* The next complete command line (without CRLF; valid until the next call):
 * FG_OK, FG_NEED_MORE, FG_TOO_LONG (discarded, over the cap) or FG_SYNTAX
 * (discarded: NUL or bare CR). */
int client_take_line(client_t *c, const char **line, size_t *len);
int client_has_input(const client_t *c);
void client_set_line_cap(client_t *c, size_t cap);
/* Forgets unread input (plaintext pipelined after AUTH); returns its size. */
size_t client_discard_input(client_t *c);

/* Replies: a formatted "code text" line, a line as given, or raw bytes. */
void client_reply(client_t *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void client_line(client_t *c, const char *line, size_t len);
void client_write(client_t *c, const char *data, size_t len);
size_t client_queued(const client_t *c);

/* TLS of the control connection. client_set_tls: the identity (ctx, the SNI
 * table) and the session's token, which ties data TLS sessions to this
 * control connection (borrowed; they outlive the client). client_start_tls:
 * TLS from the next byte. After each handshake the client keeps its TLS
 * session, which data connections resume, until the next handshake or its
 * close, and takes it out of the server cache then. client_stop_tls:
 * close_notify, then on_tls_stopped; with restart a new handshake follows
 * (REIN on an implicit session, MS-FTPS). */
void client_set_tls(client_t *c, SSL_CTX *ctx, const unsigned char *token, const tls_sni_t *sni);
/* TLS 1.3 tickets only when the owner says (client_issue_ticket), none with
 * the handshake: policy "client" accepts another control connection's
 * ticket only from a logged-in connection, so tickets are handed out after
 * login. */
void client_hold_tickets(client_t *c);
void client_issue_ticket(client_t *c);
int client_start_tls(client_t *c);
int client_stop_tls(client_t *c, int restart);
int client_tls_stopping(const client_t *c);
tls_engine_t *client_tls(client_t *c);       /* NULL when clear */
const char *client_tls_desc(client_t *c);

/* Graceful: what was written goes out (close_notify and FIN after it). */
void client_shutdown(client_t *c);
void client_close(client_t *c);
int client_closing(const client_t *c);

/* The addresses of the TCP connection. FG_OK or FG_IO. */
int client_addresses(client_t *c, struct sockaddr_storage *peer, struct sockaddr_storage *local);
uv_tcp_t *client_tcp(client_t *c);

#endif
