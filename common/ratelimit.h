#ifndef FTPSGATE_RATELIMIT_H
#define FTPSGATE_RATELIMIT_H
#include <stdint.h>

/* A token bucket for policy.rate_limit: bytes per second, one bucket per
 * direction of a transfer. Pure: the caller passes the time (a monotonic
 * clock in nanoseconds, e.g. uv_hrtime()) into every call.
 *
 * The pump's use: before it reads from its source it asks how many bytes may
 * go now (ratelimit_available) and reads no more than that; after a read it
 * consumes what it got (ratelimit_consume; a read may deliver more than was
 * available, e.g. a whole TLS record: the bucket then goes into debt and the
 * average rate stays exact). With nothing available it stops reading its
 * source and sets a timer for ratelimit_wait_ns(k); so the rate limit never
 * buffers a byte more than the pump's usual bound, and memory stays flat.
 * Ask for k = half the burst (ratelimit_burst / 2, or less): the timer then
 * fires with room to spare for the event loop's latency before the bucket
 * would overflow and waste time.
 *
 * The burst (the bucket's size, what may go at once after a pause) is
 *   min(rate, 64 KiB), or 20 ms worth of the rate when that is larger.
 * - At most one second's worth, so a slow limit cannot start with a long
 *   burst (a 1 KiB/s limit starts with 1 KiB, not 64).
 * - 64 KiB (one pump chunk) below 3.2 MiB/s: over the 10 s of a measurement
 *   a full bucket at the start adds under 0.5 % at 2 MiB/s.
 * - 20 ms worth above that: libuv timers have a resolution of 1 ms and the
 *   loop is late by whatever else it runs, so a bucket of 64 KiB would cap
 *   a high limit (at 1 GiB/s it holds 64 us of the rate; a 1 ms timer would
 *   give 64 MiB/s at best). The burst costs no memory: it is a count.
 * The bucket starts empty: a transfer's first bytes wait for their share like
 * the others, so a transfer takes size / rate from its start whatever the
 * burst (a full bucket at the start would make a 10 s transfer at a slow
 * limit up to a second shorter). The burst matters only after a pause. */

#define RATELIMIT_MIN_RATE 1024ull        /* bytes/s; config refuses less (but 0 = unlimited) */
#define RATELIMIT_MAX_RATE (1ull << 33)   /* 8 GiB/s: more than one connection carries; keeps the
                                             arithmetic below within 64 bits */
#define RATELIMIT_BURST_BYTES (64u * 1024u)
#define RATELIMIT_BURST_NS 20000000ull    /* 20 ms */

/* Embedded in its owner; the fields are private (use the functions). */
typedef struct {
    uint64_t rate;    /* bytes/s; 0: unlimited */
    uint64_t burst;
    int64_t tokens;   /* bytes that may go; negative: debt */
    uint64_t frac;    /* part of a byte earned but not yet counted, in 1e-9 bytes */
    uint64_t last_ns; /* when tokens were last brought up to date */
} ratelimit_t;

/* rate 0: unlimited (every call then says "go"); above RATELIMIT_MAX_RATE it
 * is clamped to it. */
void ratelimit_init(ratelimit_t *rl, uint64_t rate, uint64_t now_ns);

/* Bytes that may go now: 0 when the bucket is empty or in debt, UINT64_MAX
 * when unlimited. A clock that goes backwards earns nothing. */
uint64_t ratelimit_available(ratelimit_t *rl, uint64_t now_ns);

/* n bytes went (now). May be more than available: the debt is paid first. */
void ratelimit_consume(ratelimit_t *rl, uint64_t now_ns, uint64_t n);

/* Nanoseconds from now until k bytes may go (k is clamped to 1..burst: more
 * than the burst is never available at once); 0 when they may go now.
 * Round up when converting to a coarser timer, never down. */
uint64_t ratelimit_wait_ns(ratelimit_t *rl, uint64_t now_ns, uint64_t k);

/* The bucket's size in bytes (0 when unlimited). */
uint64_t ratelimit_burst(const ratelimit_t *rl);

#endif
