#include "defer.h"

#include <assert.h>
#include <stddef.h>

/* The loop of this thread: its idle handle keeps the loop from blocking in
 * poll while something is queued, and runs the queue. */
static _Thread_local uv_idle_t *queue_idle;
static _Thread_local uv_idle_t queue_idle_storage;
static _Thread_local defer_t *queue_head, *queue_tail;
static _Thread_local int queue_torn_down;

static void unlink_entry(defer_t *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        queue_head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        queue_tail = d->prev;
    d->next = d->prev = NULL;
    d->queued = 0;
}

static void run_queue(uv_idle_t *h)
{
    /* Only what is queued now runs in this pass: work queued by these calls
     * waits for the next loop iteration, so I/O is never starved. */
    defer_t *last = queue_tail;
    while (queue_head) {
        defer_t *d = queue_head;
        int was_last = d == last;
        unlink_entry(d);
        d->fn(d);
        if (was_last)
            break;
    }
    if (!queue_head)
        uv_idle_stop(h);
}

int defer_setup(uv_loop_t *loop)
{
    queue_head = queue_tail = NULL;
    queue_torn_down = 0;
    queue_idle = &queue_idle_storage;
    return uv_idle_init(loop, queue_idle);
}

void defer_teardown(void)
{
    if (queue_idle && !uv_is_closing((uv_handle_t *)queue_idle))
        uv_close((uv_handle_t *)queue_idle, NULL);
    queue_idle = NULL;
    queue_torn_down = 1;
}

void defer_call(defer_t *d, defer_fn fn)
{
    assert(queue_idle != NULL || queue_torn_down); /* defer_setup was not called on this thread */
    if (d->queued || !queue_idle)
        return; /* after teardown every object is being closed: nothing left to report to */
    d->fn = fn;
    d->queued = 1;
    d->next = NULL;
    d->prev = queue_tail;
    if (queue_tail)
        queue_tail->next = d;
    else
        queue_head = d;
    queue_tail = d;
    if (!uv_is_active((uv_handle_t *)queue_idle))
        uv_idle_start(queue_idle, run_queue);
}

void defer_cancel(defer_t *d)
{
    if (d->queued)
        unlink_entry(d);
}
