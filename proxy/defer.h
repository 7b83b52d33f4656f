#ifndef FTPSGATE_DEFER_H
#define FTPSGATE_DEFER_H
#include <uv.h>

/* Work run later from the event loop, never inside the call that asked for
 * it. This is how the proxy keeps libuv's completion rule (DESIGN.md §4,
 * README "Completion rules"): a module that finds a failure while starting
 * some work (a write that cannot be queued, a shutdown that cannot start)
 * reports it from here, so no owner callback ever runs while the owner's own
 * call is still on the stack.
 *
 * One queue per event loop, kept by the loop's thread (defer_setup on that
 * thread before the loop runs). An entry is embedded in the object that
 * defers; the object cancels it before its memory goes (in its close
 * callback), so a queued entry never points at freed memory. */

typedef struct defer defer_t;
typedef void (*defer_fn)(defer_t *d);

struct defer {
    defer_t *next, *prev;
    defer_fn fn;
    int queued;
};

/* Once per loop, on the loop's thread. 0 or a libuv error. */
int defer_setup(uv_loop_t *loop);
/* Closes the queue's handle (the loop must then run once to finish it);
 * what is deferred after this is dropped: every object is being closed. */
void defer_teardown(void);

/* Queues fn(d) to run once, soon, from the loop; a no-op while d is already
 * queued (the first fn stays). d must be zeroed or used before. */
void defer_call(defer_t *d, defer_fn fn);
/* Unqueues d if it is queued. Idempotent. */
void defer_cancel(defer_t *d);

#endif
