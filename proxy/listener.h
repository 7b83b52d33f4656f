#ifndef FTPSGATE_LISTENER_H
#define FTPSGATE_LISTENER_H
#include <uv.h>
#include <openssl/ssl.h>

#include "config.h"
#include "generation.h"
#include "metrics.h"
#include "portpool.h"
#include "tls_engine.h"

/* One configured listener: its bound socket, TLS context, passive port pool,
 * and the sessions it accepted (for limits and draining). */

typedef struct listener listener_t;
typedef struct session session_t;

/* Binds and listens for listener `index` of gen's config (the listener takes
 * a reference). id_counter and metrics are borrowed and must outlive it. On
 * FG_IO (bind failed) *out is still set and must be stopped and freed. */
int listener_new(uv_loop_t *loop, generation_t *gen, size_t index, unsigned long long *id_counter,
                 metrics_t *metrics, listener_t **out, char *err, size_t errlen);

/* The loop's listeners, so the per-IP limit counts a client's sessions on all
 * of them (the daemon owns the array; NULL: this listener alone). */
void listener_set_siblings(listener_t *l, listener_t *const *all, const size_t *n_all);

/* SIGHUP, in two steps so that a refusal changes nothing: first every
 * listener is asked whether its new settings n can apply without a restart
 * (not when the bind address, mode, passive range, transparency or source-IP
 * transparency changed: sockets and capabilities are set up at start), 0 or
 * -1 and the reason in err; then each is switched: new sessions use listener
 * `index` of gen, live ones keep theirs. */
int listener_can_reconfigure(const listener_t *l, const config_listener_t *n, char *err, size_t errlen);
void listener_reconfigure(listener_t *l, generation_t *gen, size_t index);

/* Stops accepting; live sessions go on. on_closed runs when the socket is closed. */
void listener_stop(listener_t *l);
/* Frees the listener once stopped and without sessions; returns 1 if freed. */
int listener_try_free(listener_t *l);

portpool_t *listener_pool(listener_t *l);
unsigned listener_session_count(const listener_t *l);

/* Asks every live session to end (SIGTERM after the drain deadline). */
void listener_close_sessions(listener_t *l);

#endif
