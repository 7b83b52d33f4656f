#ifndef FTPSGATE_LISTENER_H
#define FTPSGATE_LISTENER_H
#include <uv.h>
#include <openssl/ssl.h>

#include "admission.h"
#include "config.h"
#include "generation.h"
#include "liveview.h"
#include "metrics.h"
#include "portpool.h"
#include "tls_engine.h"

/* One configured listener on one worker loop: its listening socket, the
 * sessions it accepted there (for draining), admission against the
 * process-wide limits. Every worker has its own listener for each configured
 * one, on its own socket of a SO_REUSEPORT group, so the kernel spreads the
 * connections over the loops; a session lives on the loop that accepted it. */

typedef struct listener listener_t;
typedef struct session session_t;

/* What the listeners of every worker share. */
typedef struct {
    unsigned long long *session_ids; /* atomic counter: ids unique per process */
    admission_t *admission;          /* sessions in total and per client IP */
    portpool_t *pool;                /* this listener's passive ports */
    struct auditlog *audit;          /* log.transfer_log; NULL: none */
} listener_shared_t;

/* A listening socket for listener `index` of cfg, bound (with the
 * privileges the process has now) and listening: one per worker. With
 * reuseport the port must be free first (a probe bind without SO_REUSEPORT:
 * another ftpsgate on it is an error, not a silent share) and every socket
 * joins one SO_REUSEPORT group. FG_OK and fds[0..n), or an error in err. */
int listener_bind(const config_listener_t *cfg, int reuseport, int *fds, size_t n, char *err, size_t errlen);

/* A listener for listener `index` of gen's config on loop, over fd (from
 * listener_bind; the listener owns it then). It takes a reference on gen.
 * shared and metrics are borrowed and must outlive it. */
int listener_new(uv_loop_t *loop, generation_t *gen, size_t index, int fd, const listener_shared_t *shared,
                 metrics_t *metrics, listener_t **out, char *err, size_t errlen);

/* SIGHUP, in two steps so that a refusal changes nothing: first every
 * listener is asked whether its new settings n can apply without a restart
 * (not when the bind address, mode, passive range, transparency or source-IP
 * transparency changed: sockets and capabilities are set up at start), 0 or
 * -1 and the reason in err; then each is switched: new sessions use listener
 * `index` of gen, live ones keep theirs. */
int listener_can_reconfigure(const config_listener_t *o, const config_listener_t *n, char *err, size_t errlen);
void listener_reconfigure(listener_t *l, generation_t *gen, size_t index);

/* Stops accepting; live sessions go on. on_closed runs when the socket is closed. */
void listener_stop(listener_t *l);
/* Frees the listener once stopped and without sessions; returns 1 if freed. */
int listener_try_free(listener_t *l);

unsigned listener_session_count(const listener_t *l);

/* Adds every session of this listener to the live view's snapshot (session_snapshot). */
void listener_snapshot(listener_t *l, liveview_snap_t *snap, uint64_t loop_now, int64_t wall_now);

/* Asks every live session to end (SIGTERM after the drain deadline). */
void listener_close_sessions(listener_t *l);

#endif
