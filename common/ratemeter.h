#ifndef FTPSGATE_RATEMETER_H
#define FTPSGATE_RATEMETER_H
#include <stdint.h>

/* The rate of a running transfer as the live view shows it (/sessions'
 * rate_bps): bytes per second over the last few seconds, from samples of the
 * transfer's byte count that its worker takes about once a second. Pure: the
 * caller passes the time (monotonic, ms).
 *
 * The rate is (newest bytes - oldest bytes) / (newest time - oldest time)
 * over the RATEMETER_SAMPLES latest samples, so over the last ~5 s at one
 * sample a second; the transfer's start is the first sample (0 bytes), so a
 * young transfer shows its average since it began. */

#define RATEMETER_SAMPLES 6u

typedef struct {
    uint64_t t_ms[RATEMETER_SAMPLES];
    uint64_t bytes[RATEMETER_SAMPLES];
    unsigned n;    /* samples kept */
    unsigned next; /* where the next goes */
} ratemeter_t;

/* A transfer begins: the first sample is (now, 0). */
void ratemeter_start(ratemeter_t *r, uint64_t now_ms);
/* bytes: the transfer's count so far (never less than the last sample's). */
void ratemeter_sample(ratemeter_t *r, uint64_t now_ms, uint64_t bytes);
/* Bytes per second over the samples kept; 0 with fewer than two or no time between them. */
uint64_t ratemeter_rate(const ratemeter_t *r);

#endif
