#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "defer.h"
#include "fgerr.h"
#include "log.h"

#define WORKER_POLL_MS 100u /* while draining: is the last session gone? */

enum { MSG_RELOAD = 1, MSG_STOP = 2, MSG_CLOSE = 4 };

struct worker {
    int index;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;   /* messages from the main thread */
    uv_timer_t poll;   /* draining */
    uv_sem_t ready;
    uv_mutex_t lock;   /* guards the messages below */
    unsigned messages;
    generation_t *next_gen;
    int ended;         /* the loop no longer takes messages */
    /* Set up by the starting thread, read by the worker thread. */
    generation_t *gen;
    const int *fds;
    const listener_shared_t *shared;
    listener_t **listeners;
    size_t n_listeners;
    int start_rc;
    char err[512];
    int stopping;
    metrics_t metrics; /* this worker's counters (relaxed atomics) */
    liveview_board_t *board; /* the live view of its sessions */
    unsigned polls;          /* on_poll runs since the last live-view snapshot */
};

static unsigned count_sessions(const worker_t *w)
{
    unsigned n = 0;
    for (size_t i = 0; i < w->n_listeners; i++)
        n += listener_session_count(w->listeners[i]);
    return n;
}

/* The live view (liveview.h): one walk of this loop's sessions, published. */
static void publish_sessions(worker_t *w, unsigned n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    uint64_t now = uv_now(&w->loop);
    liveview_snap_t *snap = liveview_snap_new(n);
    if (!snap)
        return; /* the board keeps the previous one */
    for (size_t i = 0; i < w->n_listeners; i++)
        listener_snapshot(w->listeners[i], snap, now, wall);
    liveview_publish(w->board, snap);
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* The last session of a stopping worker is gone: the loop may end. */
static void on_poll(uv_timer_t *t)
{
    worker_t *w = t->data;
    unsigned n = count_sessions(w);
    if (++w->polls * WORKER_POLL_MS >= LIVEVIEW_TICK_MS) {
        w->polls = 0;
        publish_sessions(w, n);
    }
    if (!w->stopping || n > 0)
        return;
    uv_mutex_lock(&w->lock);
    w->ended = 1;
    uv_mutex_unlock(&w->lock);
    uv_close((uv_handle_t *)&w->poll, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    defer_teardown();
}

static void on_wake(uv_async_t *a)
{
    worker_t *w = a->data;
    uv_mutex_lock(&w->lock);
    unsigned msgs = w->messages;
    generation_t *gen = w->next_gen;
    w->messages = 0;
    w->next_gen = NULL;
    uv_mutex_unlock(&w->lock);
    if ((msgs & MSG_RELOAD) && gen) {
        for (size_t i = 0; i < w->n_listeners; i++)
            listener_reconfigure(w->listeners[i], gen, i);
        generation_unref(gen);
    }
    if ((msgs & MSG_STOP) && !w->stopping) {
        w->stopping = 1;
        for (size_t i = 0; i < w->n_listeners; i++)
            listener_stop(w->listeners[i]);
    }
    if (msgs & MSG_CLOSE)
        for (size_t i = 0; i < w->n_listeners; i++)
            listener_close_sessions(w->listeners[i]);
}

static void worker_main(void *arg)
{
    worker_t *w = arg;
    size_t n = generation_config(w->gen)->n_listeners;
    int rc = uv_loop_init(&w->loop);
    if (rc == 0)
        rc = defer_setup(&w->loop);
    w->listeners = rc == 0 ? calloc(n, sizeof *w->listeners) : NULL;
    if (!w->listeners) {
        snprintf(w->err, sizeof w->err, "worker %d: cannot set up its event loop", w->index);
        for (size_t i = 0; i < n; i++)
            close(w->fds[i]);
        w->start_rc = FG_NOMEM;
    }
    for (size_t i = 0; w->listeners && i < n; i++) {
        if (w->start_rc != FG_OK) {
            close(w->fds[i]);
            continue;
        }
        w->start_rc = listener_new(&w->loop, w->gen, i, w->fds[i], &w->shared[i], &w->metrics, &w->listeners[i],
                                   w->err, sizeof w->err);
        if (w->listeners[i])
            w->n_listeners = i + 1;
    }
    uv_async_init(&w->loop, &w->wake, on_wake);
    uv_timer_init(&w->loop, &w->poll);
    w->wake.data = w->poll.data = w;
    uv_timer_start(&w->poll, on_poll, WORKER_POLL_MS, WORKER_POLL_MS);
    int failed = w->start_rc != FG_OK;
    if (failed) {
        w->stopping = 1;
        w->ended = 1;
        for (size_t i = 0; i < w->n_listeners; i++)
            listener_stop(w->listeners[i]);
    }
    uv_sem_post(&w->ready); /* from here the starting thread may return */
    if (!failed)
        uv_run(&w->loop, UV_RUN_DEFAULT);
    defer_teardown();
    uv_walk(&w->loop, close_handle, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < w->n_listeners; i++)
        listener_try_free(w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    w->n_listeners = 0;
    liveview_publish(w->board, liveview_snap_new(0)); /* no session is left to show */
    uv_loop_close(&w->loop);
}

int worker_start(int index, generation_t *gen, const int *fds, const listener_shared_t *shared, worker_t **out,
                 char *err, size_t errlen)
{
    worker_t *w = calloc(1, sizeof *w);
    size_t n = generation_config(gen)->n_listeners;
    if (!w) {
        for (size_t i = 0; i < n; i++)
            close(fds[i]);
        snprintf(err, errlen, "out of memory");
        return FG_NOMEM;
    }
    w->board = liveview_board_new();
    if (!w->board) {
        for (size_t i = 0; i < n; i++)
            close(fds[i]);
        free(w);
        snprintf(err, errlen, "out of memory");
        return FG_NOMEM;
    }
    w->index = index;
    w->gen = gen;
    w->fds = fds;
    w->shared = shared;
    uv_sem_init(&w->ready, 0);
    uv_mutex_init(&w->lock);
    if (uv_thread_create(&w->thread, worker_main, w) != 0) {
        for (size_t i = 0; i < n; i++)
            close(fds[i]);
        snprintf(err, errlen, "cannot start worker thread %d", index);
        uv_sem_destroy(&w->ready);
        uv_mutex_destroy(&w->lock);
        liveview_board_free(w->board);
        free(w);
        return FG_IO;
    }
    uv_sem_wait(&w->ready);
    if (w->start_rc != FG_OK) {
        snprintf(err, errlen, "%s", w->err);
        int rc = w->start_rc;
        worker_join(w);
        return rc;
    }
    *out = w;
    return FG_OK;
}

static void post(worker_t *w, unsigned msg, generation_t *gen)
{
    uv_mutex_lock(&w->lock);
    if (w->ended) { /* nothing left to tell it */
        uv_mutex_unlock(&w->lock);
        generation_unref(gen);
        return;
    }
    w->messages |= msg;
    if (gen) {
        generation_unref(w->next_gen); /* an older reload not yet applied */
        w->next_gen = gen;
    }
    uv_async_send(&w->wake); /* under the lock: the handle cannot be closed meanwhile */
    uv_mutex_unlock(&w->lock);
}

void worker_reload(worker_t *w, generation_t *gen)
{
    generation_ref(gen);
    post(w, MSG_RELOAD, gen);
}

void worker_stop(worker_t *w)
{
    post(w, MSG_STOP, NULL);
}

void worker_close_sessions(worker_t *w)
{
    post(w, MSG_CLOSE, NULL);
}

int worker_ended(worker_t *w)
{
    uv_mutex_lock(&w->lock);
    int ended = w->ended;
    uv_mutex_unlock(&w->lock);
    return ended;
}

const metrics_t *worker_metrics(const worker_t *w)
{
    return &w->metrics;
}

void worker_join(worker_t *w)
{
    if (!w)
        return;
    uv_thread_join(&w->thread);
    generation_unref(w->next_gen);
    uv_sem_destroy(&w->ready);
    uv_mutex_destroy(&w->lock);
    liveview_board_free(w->board);
    free(w);
}

liveview_board_t *worker_board(const worker_t *w)
{
    return w->board;
}
