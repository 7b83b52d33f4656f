/* Unit tests for common/linequeue.c: order, bounds, empty and full. */
#include "check.h"
#include "fgerr.h"
#include "linequeue.h"

int main(void)
{
    linequeue_t q;
    char out[16];
    size_t len = 99;
    linequeue_init(&q, 12);
    CHECK(linequeue_empty(&q));
    CHECK(!linequeue_full(&q));
    CHECK_EQ_INT(linequeue_pop(&q, out, sizeof out, &len), FG_NEED_MORE);
    CHECK_EQ_INT(linequeue_push(&q, "TYPE I", 6), FG_OK);
    CHECK_EQ_INT(linequeue_push(&q, "", 0), FG_OK); /* an empty line is a line */
    CHECK(!linequeue_full(&q));
    CHECK_EQ_INT(linequeue_push(&q, "CWD /a", 6), FG_OK);
    CHECK(linequeue_full(&q)); /* 7 + 1 + 7 bytes >= 12: taken, then full */
    CHECK_EQ_INT(linequeue_push(&q, "a\nb", 3), FG_SYNTAX);
    CHECK_EQ_INT(linequeue_pop(&q, out, sizeof out, &len), FG_OK);
    CHECK_EQ_MEM(out, len, "TYPE I");
    CHECK_EQ_INT(linequeue_pop(&q, out, sizeof out, &len), FG_OK);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(linequeue_pop(&q, out, 3, &len), FG_TOO_LONG); /* stays */
    CHECK_EQ_INT(linequeue_pop(&q, out, sizeof out, &len), FG_OK);
    CHECK_EQ_MEM(out, len, "CWD /a");
    CHECK(linequeue_empty(&q));
    CHECK(q.buf == NULL); /* no memory while nothing waits */
    CHECK_EQ_INT(linequeue_push(&q, "NOOP", 4), FG_OK);
    linequeue_clear(&q);
    CHECK(linequeue_empty(&q));
    return check_report();
}
