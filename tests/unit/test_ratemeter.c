/* ratemeter.c: the rate over the last samples, a young transfer's average
 * since it began, and no rate without time between samples. */
#include "check.h"
#include "ratemeter.h"

int main(void)
{
    ratemeter_t r;
    ratemeter_start(&r, 1000);
    CHECK_EQ_INT(ratemeter_rate(&r), 0);          /* one sample */
    ratemeter_sample(&r, 1000, 5000);
    CHECK_EQ_INT(ratemeter_rate(&r), 0);          /* no time between them */
    ratemeter_sample(&r, 1500, 1000000);
    CHECK_EQ_INT(ratemeter_rate(&r), 2000000);    /* 1 MB in 0.5 s since the start */
    /* A burst at the start, then 1 MB/s: once the burst left the window
     * (RATEMETER_SAMPLES samples), the rate is the steady one. */
    ratemeter_start(&r, 0);
    uint64_t bytes = 8000000;
    for (unsigned t = 1; t <= 10; t++) {
        ratemeter_sample(&r, t * 1000, bytes);
        bytes += 1000000;
    }
    CHECK_EQ_INT(ratemeter_rate(&r), 1000000);
    ratemeter_sample(&r, 11000, bytes); /* then a stall of a second */
    ratemeter_sample(&r, 12000, bytes);
    CHECK_EQ_INT(ratemeter_rate(&r), 800000); /* 4 MB over the 5 s window */
    return check_report();
}
