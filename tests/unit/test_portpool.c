/* Unit tests for proxy/portpool.c: passive port bookkeeping, round-robin. */
#include "check.h"
#include "fgerr.h"
#include "portpool.h"

static void test_acquire_all(void)
{
    enum { FIRST = 50000, LAST = 50099, N = LAST - FIRST + 1 };
    portpool_t *pp = portpool_new(FIRST, LAST);
    CHECK(pp != NULL);
    if (!pp)
        return;
    CHECK_EQ_INT(portpool_size(pp), N);
    CHECK_EQ_INT(portpool_in_use(pp), 0);

    unsigned char seen[N] = {0};
    int distinct = 1, in_range = 1, all_ok = 1;
    for (unsigned i = 0; i < N; i++) {
        uint16_t port = 0;
        if (portpool_acquire(pp, &port) != FG_OK) {
            all_ok = 0;
            break;
        }
        if (port < FIRST || port > LAST) {
            in_range = 0;
            continue;
        }
        if (seen[port - FIRST])
            distinct = 0;
        seen[port - FIRST] = 1;
    }
    CHECK(all_ok);
    CHECK(in_range);
    CHECK(distinct);
    CHECK_EQ_INT(portpool_in_use(pp), N);

    /* Exhausted: FG_RANGE, *port untouched, counters unchanged. */
    uint16_t port = 4242;
    CHECK_EQ_INT(portpool_acquire(pp, &port), FG_RANGE);
    CHECK_EQ_INT(port, 4242);
    CHECK_EQ_INT(portpool_acquire(pp, &port), FG_RANGE);
    CHECK_EQ_INT(portpool_in_use(pp), N);

    /* Release one: exactly that one comes back. */
    portpool_release(pp, FIRST + 37);
    CHECK_EQ_INT(portpool_in_use(pp), N - 1);
    CHECK_EQ_INT(portpool_acquire(pp, &port), FG_OK);
    CHECK_EQ_INT(port, FIRST + 37);
    CHECK_EQ_INT(portpool_in_use(pp), N);
    CHECK_EQ_INT(portpool_acquire(pp, &port), FG_RANGE);

    /* Release everything. */
    for (unsigned p = FIRST; p <= LAST; p++)
        portpool_release(pp, (uint16_t)p);
    CHECK_EQ_INT(portpool_in_use(pp), 0);
    CHECK_EQ_INT(portpool_size(pp), N);
    portpool_free(pp);
}

static void test_round_robin(void)
{
    portpool_t *pp = portpool_new(6000, 6004);
    CHECK(pp != NULL);
    if (!pp)
        return;
    uint16_t a = 0, b = 0, c = 0;
    CHECK_EQ_INT(portpool_acquire(pp, &a), FG_OK);
    CHECK_EQ_INT(a, 6000);
    /* A port released at once is not the next one handed out. */
    portpool_release(pp, a);
    CHECK_EQ_INT(portpool_acquire(pp, &b), FG_OK);
    CHECK(b != a);
    CHECK_EQ_INT(b, 6001);
    portpool_release(pp, b);

    /* Acquire-release cycles walk the whole range before reusing a port. */
    unsigned char seen[5] = {0};
    int fresh = 1;
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(portpool_acquire(pp, &c), FG_OK);
        if (c < 6000 || c > 6004 || seen[c - 6000])
            fresh = 0;
        else
            seen[c - 6000] = 1;
        portpool_release(pp, c);
    }
    CHECK(fresh);
    CHECK_EQ_INT(portpool_in_use(pp), 0);

    /* With ports held, the cursor skips the used ones and wraps around. */
    uint16_t p[5];
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(portpool_acquire(pp, &p[i]), FG_OK);
    CHECK_EQ_INT(portpool_in_use(pp), 5);
    portpool_release(pp, p[1]);
    portpool_release(pp, p[3]);
    uint16_t x = 0, y = 0;
    CHECK_EQ_INT(portpool_acquire(pp, &x), FG_OK);
    CHECK_EQ_INT(portpool_acquire(pp, &y), FG_OK);
    CHECK((x == p[1] && y == p[3]) || (x == p[3] && y == p[1]));
    CHECK_EQ_INT(portpool_acquire(pp, &x), FG_RANGE);
    portpool_free(pp);
}

static void test_release_edge_cases(void)
{
    portpool_t *pp = portpool_new(7000, 7009);
    CHECK(pp != NULL);
    if (!pp)
        return;
    uint16_t a = 0, b = 0;
    CHECK_EQ_INT(portpool_acquire(pp, &a), FG_OK);
    CHECK_EQ_INT(portpool_acquire(pp, &b), FG_OK);
    CHECK_EQ_INT(portpool_in_use(pp), 2);

    /* Out-of-range releases are ignored. */
    portpool_release(pp, 0);
    portpool_release(pp, 6999);
    portpool_release(pp, 7010);
    portpool_release(pp, 65535);
    CHECK_EQ_INT(portpool_in_use(pp), 2);

    /* Releasing a port never acquired is ignored. */
    portpool_release(pp, 7005);
    CHECK_EQ_INT(portpool_in_use(pp), 2);

    /* Double release: counted once, no underflow. */
    portpool_release(pp, a);
    portpool_release(pp, a);
    CHECK_EQ_INT(portpool_in_use(pp), 1);
    portpool_release(pp, b);
    portpool_release(pp, b);
    portpool_release(pp, b);
    CHECK_EQ_INT(portpool_in_use(pp), 0);

    /* Still fully usable: all 10 ports can be acquired. */
    int ok = 1;
    for (int i = 0; i < 10; i++) {
        uint16_t p = 0;
        if (portpool_acquire(pp, &p) != FG_OK || p < 7000 || p > 7009)
            ok = 0;
    }
    CHECK(ok);
    CHECK_EQ_INT(portpool_in_use(pp), 10);
    uint16_t p = 0;
    CHECK_EQ_INT(portpool_acquire(pp, &p), FG_RANGE);
    portpool_free(pp);
}

static void test_single_port(void)
{
    portpool_t *pp = portpool_new(2121, 2121);
    CHECK(pp != NULL);
    if (!pp)
        return;
    CHECK_EQ_INT(portpool_size(pp), 1);
    uint16_t p = 0;
    for (int round = 0; round < 3; round++) {
        CHECK_EQ_INT(portpool_acquire(pp, &p), FG_OK);
        CHECK_EQ_INT(p, 2121);
        CHECK_EQ_INT(portpool_in_use(pp), 1);
        CHECK_EQ_INT(portpool_acquire(pp, &p), FG_RANGE);
        portpool_release(pp, 2121);
        CHECK_EQ_INT(portpool_in_use(pp), 0);
    }
    portpool_free(pp);
}

static void test_bounds(void)
{
    /* Inverted range is refused. */
    CHECK(portpool_new(6001, 6000) == NULL);
    portpool_free(NULL);

    /* The top of the port space: no uint16_t wrap-around. */
    portpool_t *pp = portpool_new(65530, 65535);
    CHECK(pp != NULL);
    if (!pp)
        return;
    CHECK_EQ_INT(portpool_size(pp), 6);
    int ok = 1;
    for (int i = 0; i < 6; i++) {
        uint16_t p = 0;
        if (portpool_acquire(pp, &p) != FG_OK || p < 65530)
            ok = 0;
    }
    CHECK(ok);
    uint16_t p = 0;
    CHECK_EQ_INT(portpool_acquire(pp, &p), FG_RANGE);
    portpool_release(pp, 65535);
    CHECK_EQ_INT(portpool_acquire(pp, &p), FG_OK);
    CHECK_EQ_INT(p, 65535);
    portpool_free(pp);

    /* The whole port space (1..65535) is representable. */
    pp = portpool_new(1, 65535);
    CHECK(pp != NULL);
    if (pp) {
        CHECK_EQ_INT(portpool_size(pp), 65535);
        CHECK_EQ_INT(portpool_acquire(pp, &p), FG_OK);
        CHECK_EQ_INT(p, 1);
        portpool_free(pp);
    }
}

int main(void)
{
    test_acquire_all();
    test_round_robin();
    test_release_edge_cases();
    test_single_port();
    test_bounds();
    return check_report();
}
