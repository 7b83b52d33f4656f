#ifndef FTPSGATE_WORKER_H
#define FTPSGATE_WORKER_H
#include <stddef.h>

#include "generation.h"
#include "listener.h"
#include "liveview.h"
#include "metrics.h"

/* One event loop on a thread of its own (DESIGN.md §8): a listener for each
 * configured listener, over its own socket of that listener's SO_REUSEPORT
 * group, and the sessions they accept; a session and all its data links live
 * on the loop that accepted it. The main thread talks to a worker only by
 * messages (reload, stop, close sessions), delivered on the worker's loop;
 * the worker's counters are read from the main thread (relaxed atomics). */

typedef struct worker worker_t;

/* Starts worker `index` on a thread: its listeners take fds[i] for listener
 * i of gen (the worker owns them from now, also on failure) and shared[i].
 * Returns once the listeners are set up: FG_OK and *out, or an error in err
 * (the thread has ended then). */
int worker_start(int index, generation_t *gen, const int *fds, const listener_shared_t *shared, worker_t **out,
                 char *err, size_t errlen);

/* SIGHUP: new sessions of this worker use gen (a reference is taken). */
void worker_reload(worker_t *w, generation_t *gen);
/* Drain: stop accepting; the worker ends once its last session has. */
void worker_stop(worker_t *w);
/* Past the drain deadline: end every live session now. */
void worker_close_sessions(worker_t *w);

/* A stopped worker's last session has ended (its loop takes no more work). */
int worker_ended(worker_t *w);
const metrics_t *worker_metrics(const worker_t *w);
/* The live view of this worker's sessions (liveview.h), refreshed on its loop
 * every LIVEVIEW_TICK_MS; any thread may read it. */
liveview_board_t *worker_board(const worker_t *w);

/* Waits for a stopped worker's thread to end, then frees it. */
void worker_join(worker_t *w);

#endif
