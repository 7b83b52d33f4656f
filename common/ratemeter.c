#include "ratemeter.h"

#include <string.h>

void ratemeter_start(ratemeter_t *r, uint64_t now_ms)
{
    memset(r, 0, sizeof *r);
    ratemeter_sample(r, now_ms, 0);
}

void ratemeter_sample(ratemeter_t *r, uint64_t now_ms, uint64_t bytes)
{
    r->t_ms[r->next] = now_ms;
    r->bytes[r->next] = bytes;
    r->next = (r->next + 1) % RATEMETER_SAMPLES;
    if (r->n < RATEMETER_SAMPLES)
        r->n++;
}

uint64_t ratemeter_rate(const ratemeter_t *r)
{
    if (r->n < 2)
        return 0;
    unsigned newest = (r->next + RATEMETER_SAMPLES - 1) % RATEMETER_SAMPLES;
    unsigned oldest = (r->next + RATEMETER_SAMPLES - r->n) % RATEMETER_SAMPLES;
    uint64_t dt = r->t_ms[newest] - r->t_ms[oldest];
    if (dt == 0 || r->bytes[newest] < r->bytes[oldest])
        return 0;
    return (r->bytes[newest] - r->bytes[oldest]) * 1000u / dt;
}
