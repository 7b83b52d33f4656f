#ifndef FTPSGATE_PUMP_H
#define FTPSGATE_PUMP_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ratelimit.h"
#include "tstream.h"

/* One direction of a data link (DESIGN.md §4): moves bytes from a source
 * stream to a sink stream (TLS or clear), reading the source only while the
 * sink's queue is under TSTREAM_HIGH_MARK, and records how the source ended.
 * The sink may not exist yet (a client or an active backend still to
 * connect): what arrives before is kept, the source paused, and written first
 * when the sink comes. A data link is two pumps; its transfer is complete when
 * the pump of its direction has ended clean and its sink has shut down after
 * the last byte.
 *
 * The pump owns neither stream: the data link owns both and routes their
 * callbacks here; each call says what happened. It owns one handle, the
 * timer that resumes a source paused for the rate: pump_close closes it, and
 * its `closed` callback is the pump's only one. */

typedef struct {
    tstream_t *source, *sink; /* borrowed; sink NULL until it exists */
    uv_timer_t rate_timer;    /* the source waits for tokens */
    void *owner;
    void (*closed)(void *owner);
    ratelimit_t rate;         /* policy.rate_limit, a token bucket */
    uint64_t rate_bps;        /* 0: unlimited */
    uint64_t max_bytes;       /* policy.max_upload_bytes on the upload pump; 0: none */
    char *kept;               /* bytes read before the sink existed */
    size_t kept_len;
    uint64_t bytes;           /* payload read from the source */
    unsigned ended : 1,       /* the source ended */
        clean : 1,            /* ... cleanly (FIN / close_notify) */
        sink_shut : 1,        /* the sink shut down after every byte */
        rate_paused : 1;      /* the source waits for tokens (pump_rate_wait_ns) */
} pump_t;

/* owner: passed to pump_close's callback. */
void pump_init(pump_t *p, uv_loop_t *loop, void *owner);
/* The transfer is over: the rate timer closes, then closed(owner) runs (from
 * the loop). Idempotent. */
void pump_close(pump_t *p, void (*closed)(void *owner));
void pump_release(pump_t *p); /* after closed: frees what was kept */

void pump_set_source(pump_t *p, tstream_t *source);

/* rate: bytes per second (0: unlimited), a token bucket that pauses the source
 * when empty (so memory stays flat: nothing more is read, nothing buffered)
 * and resumes it from the timer once tokens are there again (and the sink is
 * not full); max_bytes: the most the pump may move (0: no cap). */
void pump_set_limits(pump_t *p, uint64_t rate, uint64_t max_bytes);
/* A stream is closed: the pump forgets it as its source or sink. */
void pump_stream_gone(pump_t *p, const tstream_t *s);

/* Bytes from the source. FG_OK; FG_RANGE when they would take the pump past
 * max_bytes (nothing of them is written: the transfer must be cut); or an
 * error when they cannot reach the sink (its write failed) or be kept
 * (FG_NOMEM). */
int pump_push(pump_t *p, const char *buf, size_t len);

/* The sink exists now (connected, TLS handshake pending or done): kept bytes
 * go first, then the source reads again; an ended clean source is passed on
 * (the sink shuts down). FG_OK or the sink's write error. */
int pump_attach_sink(pump_t *p, tstream_t *sink);

/* The sink's queue fell to the low mark. */
void pump_sink_drained(pump_t *p);

/* The source ended; on a clean end the sink is shut down once nothing is
 * kept (DESIGN.md §2: FIN or close_notify only after the last byte). */
void pump_source_ended(pump_t *p, tstream_end_t how);

/* The sink's shutdown went out after its last byte. */
void pump_sink_shut(pump_t *p);

/* Ended clean with every byte delivered to a shut-down sink. */
int pump_complete(const pump_t *p);

#endif
