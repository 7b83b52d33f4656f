/* jsonout.c: peer strings come out as valid JSON with no markup character,
 * no control byte, invalid UTF-8 as U+FFFD; the cap fails the writer. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "jsonout.h"

static void expect_str(const char *in, size_t len, const char *want)
{
    jsonout_t o;
    size_t n;
    jsonout_init(&o, 1024);
    jsonout_str(&o, in, len);
    char *s = jsonout_take(&o, &n);
    CHECK(s != NULL);
    if (s)
        CHECK_EQ_MEM(s, n, want);
    free(s);
}

int main(void)
{
    expect_str("plain", 5, "\"plain\"");
    expect_str("q\"b\\s", 5, "\"q\\\"b\\\\s\"");
    expect_str("<script>&", 9, "\"\\u003cscript\\u003e\\u0026\"");
    expect_str("t\tn\nz\0x\x7f", 8, "\"t\\u0009n\\u000az\\u0000x\\u007f\"");
    expect_str("\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\"");
    expect_str("a\xff" "b", 3, "\"a\\ufffdb\"");
    expect_str("\xc3(", 2, "\"\\ufffd(\"");           /* a cut sequence */
    expect_str("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");   /* overlong '/' */
    expect_str("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* a surrogate */
    expect_str("\xe2\x80\xa8", 3, "\"\\u2028\"");
    expect_str("\xe6\x97", 2, "\"\\ufffd\\ufffd\"");   /* truncated at the end */

    jsonout_t o;
    size_t n;
    jsonout_init(&o, 10);
    jsonout_raw(&o, "0123456789");
    char *s = jsonout_take(&o, &n);
    CHECK(s != NULL && n == 10);
    free(s);
    jsonout_init(&o, 10);
    jsonout_raw(&o, "0123456789");
    jsonout_raw(&o, "x");
    jsonout_fmt(&o, "%d", 1);
    CHECK(jsonout_take(&o, &n) == NULL); /* past the cap: failed, whatever follows */
    CHECK_EQ_INT(n, 0);
    jsonout_init(&o, 1 << 20);
    for (int i = 0; i < 10000; i++)
        jsonout_fmt(&o, "%05d,", i);
    s = jsonout_take(&o, &n);
    CHECK_EQ_INT(n, 60000);
    CHECK(s && memcmp(s + 59994, "09999,", 6) == 0);
    free(s);
    jsonout_init(&o, 100);
    jsonout_cstr(&o, NULL);
    s = jsonout_take(&o, &n);
    CHECK(s && strcmp(s, "null") == 0);
    free(s);
    return check_report();
}
