#ifndef FTPSGATE_ROUTING_H
#define FTPSGATE_ROUTING_H
#include <stddef.h>

#include "config.h"

/* A session's way to its backend before one is connected (listeners[].routes,
 * route.h): what the session learns of its client stage by stage (the TLS
 * server name, an accepted HOST, the USER name), ftpsgate's own answers while
 * no backend can be chosen yet, which backend to dial once one can, and the
 * command that needed it, held until that backend greets.
 *
 * No I/O: each call returns a decision, and the session replies, dials, logs
 * and counts. The names it keeps (the USER name for the log, the login for
 * policy "client") live until routing_reset. */

typedef struct routing routing_t;

/* cfg: the session's listener (borrowed). NULL when out of memory. */
routing_t *routing_new(const config_listener_t *cfg);
void routing_free(routing_t *r); /* NULL is fine */

/* At connect and after REIN (RFC 959 §4.1.1): nothing known, no backend
 * chosen, nothing held. */
void routing_reset(routing_t *r);

/* The control TLS handshake is over; name: the client's SNI, NULL when it
 * sent none. */
void routing_tls_done(routing_t *r, const char *name);

/* HOST on a listener with routes (RFC 7151 §3), answered by ftpsgate: the
 * reply code and its text. 220: accepted, and the host is recorded. */
int routing_host(routing_t *r, const char *arg, size_t len, const char **text);

/* USER arrived: its name is recorded (the last datum routing needs). */
void routing_user(routing_t *r, const char *arg, size_t len);

/* No backend can be chosen yet (route.h's ROUTE_WAIT). */
int routing_waiting(const routing_t *r);

/* What to do with a command that needs the backend while none is connected. */
typedef struct {
    const config_backend_t *backend; /* dial this one; NULL: answer with code and text instead */
    const config_route_t *route;     /* the route that chose backend; NULL: the listener's backend */
    int code;                        /* no backend: the reply */
    const char *text;
    int unmatched;                   /* the reply refuses a USER that no route takes (log and count it) */
} routing_dial_t;

/* line (a command without CRLF) needs the backend and none is connected.
 * When d->backend is set, it is the session's backend from now on and the
 * line is held until the backend greets (routing_take_held). FG_OK, or
 * FG_NOMEM (nothing decided). */
int routing_dial(routing_t *r, const char *line, size_t len, routing_dial_t *d);

/* The command held for the backend's greeting, or NULL; the caller frees it. */
char *routing_take_held(routing_t *r, size_t *len);

/* The backend routing_dial chose; NULL before. */
const config_backend_t *routing_backend(const routing_t *r);

/* USER while the backend is connected: FG_OK and the line the backend gets
 * (USER name for USER name@alias; valid until the next call), or FG_STATE
 * and the text of a 530 when the routes now point to another server. */
int routing_user_line(routing_t *r, const char **line, size_t *len, const char **text);

/* The USER name, escaped for the log ("" before USER), and as it was sent
 * ("" before USER, or when it is too long to match anything). */
const char *routing_user_shown(const routing_t *r);
const char *routing_login(const routing_t *r);
/* The name the backend received in USER (name for name@alias), as bytes. */
const char *routing_sent_user(const routing_t *r, size_t *len);

#endif
