#ifndef FTPSGATE_PUMP_H
#define FTPSGATE_PUMP_H
#include <stddef.h>
#include <stdint.h>

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
 * callbacks here. No callbacks: each call says what happened. */

typedef struct {
    tstream_t *source, *sink; /* borrowed; sink NULL until it exists */
    char *kept;               /* bytes read before the sink existed */
    size_t kept_len;
    uint64_t bytes;           /* payload read from the source */
    unsigned ended : 1,       /* the source ended */
        clean : 1,            /* ... cleanly (FIN / close_notify) */
        sink_shut : 1;        /* the sink shut down after every byte */
} pump_t;

void pump_init(pump_t *p, tstream_t *source, tstream_t *sink);
void pump_release(pump_t *p); /* frees what was kept */

void pump_set_source(pump_t *p, tstream_t *source);
/* A stream is closed: the pump forgets it as its source or sink. */
void pump_stream_gone(pump_t *p, const tstream_t *s);

/* Bytes from the source. FG_OK, or an error when they cannot reach the sink
 * (its write failed: the transfer is broken) or be kept (FG_NOMEM). */
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
