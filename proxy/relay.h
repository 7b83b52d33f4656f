#ifndef FTPSGATE_RELAY_H
#define FTPSGATE_RELAY_H
#include <stddef.h>
#include <sys/socket.h>

#include "client.h"
#include "config.h"
#include "dataplan.h"
#include "ftp_cmd.h"
#include "policy.h"
#include "routing.h"
#include "upstream.h"

/* The backend half of a session's command exchange (DESIGN.md §2): the
 * commands the session forwards go to the backend, which is dialled when the
 * first one needs it (routing.h says which; that command is held until the
 * backend greets and then handed back to be run again), and the backend's
 * replies come back to the client: to the data plan while it awaits them,
 * FEAT merged with ftpsgate's own features, the others as they are. The
 * session hears when the reply it awaits is complete. While the client does
 * not read our replies, the backend's are not read either.
 *
 * The relay writes to the client itself and borrows the session's client,
 * data plan, routing and policy state. It reports through relay_cbs_t from
 * the upstream's callbacks, never from inside a relay_* call. Every upstream
 * it opens is the session's child: relay_forward says when it opened one
 * (RELAY_DIALLED), and on_closed follows for each, retired ones included. */

typedef struct relay relay_t;

/* What the session awaits from the backend. */
typedef enum {
    RELAY_IDLE = 0, /* nothing: the next command may go */
    RELAY_GREETING, /* the backend is being connected; the held command runs when it greets */
    RELAY_REPLY,    /* the reply to a forwarded command */
    RELAY_FEAT,     /* the FEAT reply, merged */
    RELAY_DATA,     /* the data plan has the backend's replies (set-up, transfer, ABOR) */
    RELAY_QUIT      /* QUIT's reply, then the session ends */
} relay_wait_t;

/* relay_forward and friends: what happened (or a negative FG_ code: FG_IO
 * when the backend cannot be written to, FG_NOMEM). */
enum {
    RELAY_SENT = 0, /* the command went to the backend */
    RELAY_DIALLED,  /* the backend is being dialled (one more child upstream) */
    RELAY_ANSWERED  /* no backend could be chosen: the client was answered */
};

typedef struct {
    /* The backend greeted: line (the command that needed it; NULL when
     * none) is to run again. The relay frees it after this returns. */
    void (*on_ready)(void *owner, const char *line, size_t len);
    /* A 230 closes a forwarded command's reply: called before that line is relayed. */
    void (*on_login)(void *owner);
    /* A reply line was handled; data_idle: the data plan needs no more
     * backend replies. The session may take commands again. */
    void (*on_replied)(void *owner, int data_idle);
    /* The session ends (gracefully: what was said goes out): QUIT's reply
     * went out (reason "QUIT"), or the backend connection cannot serve the
     * session any more (the 421 was sent when there was something to say).
     * reason: for the log. */
    void (*on_end)(void *owner, const char *reason);
    /* An upstream is closed and freed. */
    void (*on_closed)(void *owner);
} relay_cbs_t;

/* base: how to dial (backend and intercepted are set per route: the
 * intercepted destination only applies to the listener's own backend). All
 * borrowed for the relay's life. NULL when out of memory. */
relay_t *relay_new(const config_listener_t *cfg, const upstream_opts_t *base, client_t *client, dataplan_t *plan,
                   routing_t *route, const policy_state_t *pol, const relay_cbs_t *cbs, void *owner);
void relay_free(relay_t *x); /* after every upstream is closed; NULL is fine */

/* line (no CRLF) to the backend, the session then awaiting `wait`; dials
 * first when no backend is connected (the line is held and handed back by
 * on_ready, whatever `wait` was). */
int relay_forward(relay_t *x, const char *line, size_t len, relay_wait_t wait);
/* USER (after routing_user): as relay_forward, rewritten for USER
 * name@alias, or refused with 530 when the routes now name another server. */
int relay_user(relay_t *x, const char *line, size_t len);
/* FEAT: ftpsgate's own features alone while no backend can be chosen yet,
 * else the backend's reply merged with them. */
int relay_feat(relay_t *x, const char *line, size_t len);

/* PASV, EPSV, PORT, EPRT (cmd; target: the PORT/EPRT address the policy
 * validated): the data plan prepares the channel for the protection level
 * prot and asks the backend for its side, the replies then going there. No
 * backend yet: as relay_forward. */
int relay_data_setup(relay_t *x, const char *line, size_t len, ftp_cmd_id_t cmd, const struct sockaddr *target,
                     char prot);
/* A transfer command: forwarded, its replies to the data plan, unless the
 * prepared channel had failed (the client was answered: RELAY_ANSWERED). */
int relay_transfer(relay_t *x, const char *line, size_t len, const ftp_cmd_t *cmd);
/* ABOR during a transfer (dataplan_abort). FG_OK, or FG_STATE when none runs. */
int relay_abort(relay_t *x);
/* The data plan released a held reply (dataplan on_idle): 1 when the
 * session was waiting for it and may go on. */
int relay_data_released(relay_t *x);

relay_wait_t relay_waiting(const relay_t *x);
/* 1 when a backend is connected (or being connected). */
int relay_connected(const relay_t *x);
/* The backend's address; NULL when none is connected. */
const struct sockaddr *relay_peer(const relay_t *x);

/* Stop reading the backend (the control TLS is stopping), and read again
 * when the client reads our replies. */
void relay_pause(relay_t *x);
void relay_resume(relay_t *x);

/* REIN: the backend connection is retired (closed, nothing it still sends is
 * read); a new one opens when a command needs it. */
void relay_reset(relay_t *x);
/* The session ends: as relay_reset, for good. */
void relay_close(relay_t *x);

#endif
