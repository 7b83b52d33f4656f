#include "ratelimit.h"

#include <string.h>

#define NS_PER_S 1000000000ull
/* The debt never grows past this (a caller consuming absurd counts) and a
 * wait never exceeds RATELIMIT_MAX_WAIT_S: both keep the products below in
 * 64 bits. */
#define RATELIMIT_MAX_DEBT (1ll << 62)
#define RATELIMIT_MAX_WAIT_S 1000000ull /* 11.5 days */
#define RATELIMIT_FULL_AFTER_S (1ull << 24) /* an idle bucket is full long before this */

void ratelimit_init(ratelimit_t *rl, uint64_t rate, uint64_t now_ns)
{
    memset(rl, 0, sizeof *rl);
    if (rate > RATELIMIT_MAX_RATE)
        rate = RATELIMIT_MAX_RATE;
    rl->rate = rate;
    rl->last_ns = now_ns;
    if (rate == 0)
        return;
    uint64_t burst = rate < RATELIMIT_BURST_BYTES ? rate : RATELIMIT_BURST_BYTES;
    uint64_t window = rate / (NS_PER_S / RATELIMIT_BURST_NS); /* the rate over 20 ms */
    rl->burst = window > burst ? window : burst;
    rl->tokens = 0; /* empty: ratelimit.h says why */
}

/* Adds what the time since the last call earned, exactly: whole bytes to
 * tokens, the fraction of a byte kept in frac for the next call. */
static void refill(ratelimit_t *rl, uint64_t now_ns)
{
    if (now_ns <= rl->last_ns)
        return;
    uint64_t elapsed = now_ns - rl->last_ns;
    rl->last_ns = now_ns;
    if (rl->tokens >= (int64_t)rl->burst) {
        rl->frac = 0;
        return;
    }
    uint64_t secs = elapsed / NS_PER_S, ns = elapsed % NS_PER_S;
    if (secs >= RATELIMIT_FULL_AFTER_S) {
        rl->tokens = (int64_t)rl->burst;
        rl->frac = 0;
        return;
    }
    /* rate = hi * 1e9 + lo: ns * lo < 1e18 and secs * rate < 2^57 fit. */
    uint64_t hi = rl->rate / NS_PER_S, lo = rl->rate % NS_PER_S;
    uint64_t part = ns * lo + rl->frac;
    uint64_t add = secs * rl->rate + ns * hi + part / NS_PER_S;
    rl->frac = part % NS_PER_S;
    rl->tokens += (int64_t)add; /* tokens < burst <= 2^33 and add < 2^58: no overflow */
    if (rl->tokens >= (int64_t)rl->burst) {
        rl->tokens = (int64_t)rl->burst;
        rl->frac = 0;
    }
}

uint64_t ratelimit_available(ratelimit_t *rl, uint64_t now_ns)
{
    if (rl->rate == 0)
        return UINT64_MAX;
    refill(rl, now_ns);
    return rl->tokens > 0 ? (uint64_t)rl->tokens : 0;
}

void ratelimit_consume(ratelimit_t *rl, uint64_t now_ns, uint64_t n)
{
    if (rl->rate == 0)
        return;
    refill(rl, now_ns);
    uint64_t room = (uint64_t)(rl->tokens + RATELIMIT_MAX_DEBT); /* tokens >= -MAX_DEBT */
    rl->tokens = n >= room ? -RATELIMIT_MAX_DEBT : rl->tokens - (int64_t)n;
}

uint64_t ratelimit_wait_ns(ratelimit_t *rl, uint64_t now_ns, uint64_t k)
{
    if (rl->rate == 0)
        return 0;
    refill(rl, now_ns);
    if (k == 0)
        k = 1;
    if (k > rl->burst)
        k = rl->burst;
    if (rl->tokens >= (int64_t)k)
        return 0;
    /* need bytes at rate, less the fraction already earned:
     * ceil((need * 1e9 - frac) / rate), with need = q * rate + r so that
     * r * 1e9 < 2^33 * 1e9 < 2^63 fits. */
    uint64_t need = (uint64_t)((int64_t)k - rl->tokens);
    uint64_t q = need / rl->rate, r = need % rl->rate;
    if (q >= RATELIMIT_MAX_WAIT_S)
        return RATELIMIT_MAX_WAIT_S * NS_PER_S;
    int64_t num = (int64_t)(r * NS_PER_S) - (int64_t)rl->frac;
    int64_t rate = (int64_t)rl->rate;
    int64_t part = num >= 0 ? (num + rate - 1) / rate : -((-num) / rate);
    return (uint64_t)((int64_t)(q * NS_PER_S) + part);
}

uint64_t ratelimit_burst(const ratelimit_t *rl)
{
    return rl->burst;
}
