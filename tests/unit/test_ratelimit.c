/* Unit tests for common/ratelimit.c: the bucket's size, exact refills with
 * fractions of a byte, debt after an over-read, the wait until k bytes may go
 * (never early), a clock that goes backwards, overflow guards, and simulated
 * pumps (virtual time, millisecond timers, a late event loop) whose average
 * rate over 10 s must stay within 1 % of the limit. */
#include <stdint.h>

#include "check.h"
#include "ratelimit.h"

#define MS 1000000ull
#define S 1000000000ull
#define T0 (5 * S) /* any start; not 0, to catch "0 means unset" mistakes */

static void test_burst(void)
{
    ratelimit_t rl;
    ratelimit_init(&rl, 1024, T0);
    CHECK_EQ_INT(ratelimit_burst(&rl), 1024); /* one second's worth below 64 KiB/s */
    CHECK_EQ_INT(ratelimit_available(&rl, T0), 0);     /* starts empty */
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + S / 2), 512);
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + 3 * S), 1024); /* never more than the burst */
    ratelimit_init(&rl, 60000, T0);
    CHECK_EQ_INT(ratelimit_burst(&rl), 60000);
    ratelimit_init(&rl, 1048576, T0);
    CHECK_EQ_INT(ratelimit_burst(&rl), 65536);
    ratelimit_init(&rl, 2 * 1048576, T0);
    CHECK_EQ_INT(ratelimit_burst(&rl), 65536);
    ratelimit_init(&rl, 100 * 1048576, T0);
    CHECK_EQ_INT(ratelimit_burst(&rl), 100 * 1048576 / 50); /* 20 ms worth */
    ratelimit_init(&rl, 1ull << 40, T0);                     /* clamped to the maximum */
    CHECK_EQ_INT(ratelimit_burst(&rl), RATELIMIT_MAX_RATE / 50);

    ratelimit_init(&rl, 0, T0); /* unlimited */
    CHECK(ratelimit_available(&rl, T0) == UINT64_MAX);
    ratelimit_consume(&rl, T0, 1ull << 50);
    CHECK(ratelimit_available(&rl, T0) == UINT64_MAX);
    CHECK_EQ_INT(ratelimit_wait_ns(&rl, T0, 1 << 20), 0);
    CHECK_EQ_INT(ratelimit_burst(&rl), 0);
}

static void test_exact_wait(void)
{
    ratelimit_t rl;
    ratelimit_init(&rl, 1048576, T0);
    CHECK_EQ_INT(ratelimit_available(&rl, T0), 0);
    /* 1000 bytes at 1 MiB/s: 953674.3 ns, rounded up */
    uint64_t w = ratelimit_wait_ns(&rl, T0, 1000);
    CHECK_EQ_INT(w, 953675);
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + w - 1), 999);
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + w), 1000);
    CHECK_EQ_INT(ratelimit_wait_ns(&rl, T0 + w, 1000), 0);
    /* the wait counts what is already there: 24 more bytes */
    w = ratelimit_wait_ns(&rl, T0 + 953675, 1024);
    CHECK_EQ_INT(w, 22888); /* (24 bytes - 0.33 of a byte earned) / 1 MiB/s, rounded up */
    CHECK(ratelimit_available(&rl, T0 + 953675 + w - 1) < 1024);
    CHECK(ratelimit_available(&rl, T0 + 953675 + w) >= 1024);

    /* more than the burst is never available at once: k is clamped */
    ratelimit_init(&rl, 1048576, T0);
    CHECK_EQ_INT(ratelimit_wait_ns(&rl, T0, 1 << 30), 62500000); /* 64 KiB at 1 MiB/s */
    CHECK_EQ_INT(ratelimit_wait_ns(&rl, T0, 0), 954);             /* k 0 counts as 1 */
}

static void test_fraction(void)
{
    /* 1.5 bytes per ms: every whole byte appears exactly when earned */
    ratelimit_t rl;
    ratelimit_init(&rl, 1500, T0);
    int ok = 1;
    for (uint64_t i = 1; i <= 999; i++)
        if (ratelimit_available(&rl, T0 + i * MS) != i * 3 / 2)
            ok = 0;
    CHECK(ok);
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + 1000 * MS), 1500);
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + 5000 * MS), 1500); /* full stays full */

    /* many tiny steps earn as much as one big one */
    ratelimit_t a, b;
    ratelimit_init(&a, 3000, T0);
    ratelimit_init(&b, 3000, T0);
    for (uint64_t t = 1; t <= 700000; t++)
        (void)ratelimit_available(&a, T0 + t * 1000); /* 1 us steps, 700 ms */
    CHECK_EQ_INT(ratelimit_available(&a, T0 + 700 * MS), 2100);
    CHECK_EQ_INT(ratelimit_available(&b, T0 + 700 * MS), 2100);
}

static void test_debt_and_clock(void)
{
    ratelimit_t rl;
    ratelimit_init(&rl, 1048576, T0);
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + 62500000), 65536); /* full after 64 KiB / 1 MiB/s */
    ratelimit_consume(&rl, T0 + 62500000, 3 * 65536);             /* an over-read: 128 KiB of debt */
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + 62500000), 0);
    CHECK_EQ_INT(ratelimit_wait_ns(&rl, T0 + 62500000, 32768), 156250000); /* (128 + 32) KiB at 1 MiB/s */
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + 62500000 + 125 * MS), 0); /* the debt is paid first */
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + 62500000 + 156250000), 32768);

    /* a clock going backwards earns nothing and breaks nothing */
    ratelimit_init(&rl, 1048576, T0);
    CHECK_EQ_INT(ratelimit_available(&rl, T0 - S), 0);
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + 1 * MS), 1048);
    CHECK_EQ_INT(ratelimit_available(&rl, T0), 1048);

    /* absurd inputs stay within 64 bits */
    ratelimit_consume(&rl, T0, UINT64_MAX);
    CHECK_EQ_INT(ratelimit_available(&rl, T0), 0);
    CHECK(ratelimit_wait_ns(&rl, T0, 1) == 1000000ull * S); /* the longest wait */
    ratelimit_init(&rl, RATELIMIT_MAX_RATE, T0);
    CHECK_EQ_INT(ratelimit_available(&rl, T0 + 999999999), ratelimit_burst(&rl));
    CHECK_EQ_INT(ratelimit_available(&rl, UINT64_MAX), ratelimit_burst(&rl)); /* ages of idleness */
    ratelimit_consume(&rl, UINT64_MAX, ratelimit_burst(&rl) + 1);
    CHECK_EQ_INT(ratelimit_wait_ns(&rl, UINT64_MAX, 1), 1); /* 2 bytes at 8 GiB/s: rounded up to 1 ns */
}

/* A deterministic PRNG for the loop's latency. */
static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* A pump in virtual time: whenever bytes may go it reads one chunk (a TLS
 * record arrives whole, so it may be more than available), else it pauses and
 * sets a millisecond timer for half the burst, which the loop runs up to
 * max_late_us late. Returns the bytes moved in duration_ns. */
static uint64_t pump(uint64_t rate, uint64_t chunk, uint64_t duration_ns, uint32_t max_late_us, int *early)
{
    ratelimit_t rl;
    uint64_t now = T0, end = T0 + duration_ns, moved = 0;
    uint32_t seed = 42;
    ratelimit_init(&rl, rate, now);
    for (int steps = 0; now < end && steps < 50000000; steps++) {
        if (ratelimit_available(&rl, now) > 0) {
            ratelimit_consume(&rl, now, chunk);
            moved += chunk;
            now += 2000; /* the read and the write: 2 us */
            continue;
        }
        uint64_t k = ratelimit_burst(&rl) / 2 < chunk ? ratelimit_burst(&rl) / 2 : chunk;
        uint64_t w = ratelimit_wait_ns(&rl, now, k);
        uint64_t ms = (w + MS - 1) / MS; /* libuv: whole milliseconds, rounded up */
        now += ms * MS;
        if (ratelimit_available(&rl, now) < k)
            *early = 1; /* the timer fired and k bytes were not there */
        now += max_late_us ? (rnd(&seed) % max_late_us) * 1000ull : 0;
    }
    return moved;
}

static void expect_rate(uint64_t rate, uint64_t chunk, uint32_t late_us, double tolerance)
{
    int early = 0;
    uint64_t moved = pump(rate, chunk, 10 * S, late_us, &early);
    double want = (double)rate * 10.0, ratio = (double)moved / want;
    if (ratio < 1.0 - tolerance || ratio > 1.0 + tolerance || early)
        fprintf(stderr, "  rate %llu chunk %llu late %u us: moved %llu in 10 s, %.4f of the limit%s\n",
                (unsigned long long)rate, (unsigned long long)chunk, late_us, (unsigned long long)moved, ratio,
                early ? ", a timer fired early" : "");
    CHECK(ratio >= 1.0 - tolerance);
    CHECK(ratio <= 1.0 + tolerance);
    CHECK(!early);
}

static void test_simulated_pumps(void)
{
    /* the case: 2 MiB/s, TLS records and clear 64 KiB reads, a loop up to 5 ms late */
    expect_rate(2 * 1048576, 16384, 0, 0.01);
    expect_rate(2 * 1048576, 16384, 5000, 0.01);
    expect_rate(2 * 1048576, 65536, 5000, 0.01);
    /* slow limits with whole 16 KiB TLS records: the debt keeps the average,
     * off by at most the one record in flight (at 64 KiB/s that is 2.5 %) */
    expect_rate(64 * 1024, 16384, 5000, 0.026);
    expect_rate(64 * 1024, 4096, 5000, 0.01);
    int early = 0;
    uint64_t moved = pump(1024, 16384, 100 * S, 5000, &early);
    CHECK(moved >= 100 * 1024 - 16384 && moved <= 100 * 1024 + 16384);
    CHECK(!early);
    /* fast limits: the 20 ms burst absorbs millisecond timers and a late loop */
    expect_rate(200ull * 1048576, 16384, 5000, 0.01);
    expect_rate(1024ull * 1048576, 16384, 3000, 0.01);
}

int main(void)
{
    test_burst();
    test_exact_wait();
    test_fraction();
    test_debt_and_clock();
    test_simulated_pumps();
    return check_report();
}
