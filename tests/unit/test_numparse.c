/* Unit tests for common/numparse.c: strict decimal parsing of untrusted bytes. */
#include <stdint.h>

#include "check.h"
#include "fgerr.h"
#include "numparse.h"

static int u64(const char *s, uint64_t max, uint64_t *out)
{
    return num_parse_u64(s, strlen(s), max, out);
}

static int port(const char *s, uint16_t *out)
{
    return num_parse_port(s, strlen(s), out);
}

static void test_u64_ok(void)
{
    uint64_t v = 0;
    CHECK_EQ_INT(u64("0", 10, &v), FG_OK);
    CHECK_EQ_INT(v, 0);
    CHECK_EQ_INT(u64("7", 10, &v), FG_OK);
    CHECK_EQ_INT(v, 7);
    CHECK_EQ_INT(u64("10", 10, &v), FG_OK);
    CHECK_EQ_INT(v, 10);
    CHECK_EQ_INT(u64("000255", 255, &v), FG_OK); /* leading zeros are decimal, not octal */
    CHECK_EQ_INT(v, 255);
    CHECK_EQ_INT(u64("18446744073709551615", UINT64_MAX, &v), FG_OK);
    CHECK(v == UINT64_MAX);
    CHECK_EQ_INT(u64("00000000000000000001", UINT64_MAX, &v), FG_OK); /* 20 digits */
    CHECK_EQ_INT(v, 1);
    /* the slice length rules, not a NUL */
    CHECK_EQ_INT(num_parse_u64("12345", 2, 100, &v), FG_OK);
    CHECK_EQ_INT(v, 12);
    /* NULL out is allowed: validation only */
    CHECK_EQ_INT(u64("5", 5, NULL), FG_OK);
}

static void test_u64_syntax(void)
{
    static const char *bad[] = {"", " 1", "1 ", "+1", "-1", "1a", "a1", "0x10", "1.0", "1,0",
                                "\t1", "1\n", "\xd9\xa1"};
    uint64_t v = 4242;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(u64(bad[i], UINT64_MAX, &v), FG_SYNTAX);
        CHECK_EQ_INT(v, 4242); /* untouched on failure */
    }
    CHECK_EQ_INT(num_parse_u64("1\0" "2", 3, 100, &v), FG_SYNTAX); /* embedded NUL */
    CHECK_EQ_INT(num_parse_u64(NULL, 0, 100, &v), FG_SYNTAX);
    CHECK_EQ_INT(num_parse_u64(NULL, 5, 100, &v), FG_SYNTAX);
    CHECK_EQ_INT(v, 4242);
}

static void test_u64_range(void)
{
    uint64_t v = 4242;
    CHECK_EQ_INT(u64("256", 255, &v), FG_RANGE);
    CHECK_EQ_INT(u64("11", 10, &v), FG_RANGE);
    CHECK_EQ_INT(u64("18446744073709551616", UINT64_MAX, &v), FG_RANGE); /* 2^64 */
    CHECK_EQ_INT(u64("99999999999999999999", UINT64_MAX, &v), FG_RANGE); /* 20 nines */
    CHECK_EQ_INT(u64("000000000000000000001", UINT64_MAX, &v), FG_RANGE); /* 21 digits */
    CHECK_EQ_INT(u64("123456789012345678901234567890", UINT64_MAX, &v), FG_RANGE);
    CHECK_EQ_INT(u64("1", 0, &v), FG_RANGE);
    CHECK_EQ_INT(v, 4242);
    /* a long run with a non-digit at the end is a syntax error, not a range one */
    CHECK_EQ_INT(u64("1234567890123456789012345x", UINT64_MAX, &v), FG_SYNTAX);
}

static void test_port(void)
{
    uint16_t p = 77;
    CHECK_EQ_INT(port("1", &p), FG_OK);
    CHECK_EQ_INT(p, 1);
    CHECK_EQ_INT(port("21", &p), FG_OK);
    CHECK_EQ_INT(p, 21);
    CHECK_EQ_INT(port("65535", &p), FG_OK);
    CHECK_EQ_INT(p, 65535);
    CHECK_EQ_INT(port("065535", &p), FG_OK);
    CHECK_EQ_INT(p, 65535);
    p = 77;
    CHECK_EQ_INT(port("0", &p), FG_RANGE);
    CHECK_EQ_INT(port("00000", &p), FG_RANGE);
    CHECK_EQ_INT(port("65536", &p), FG_RANGE);
    CHECK_EQ_INT(port("99999", &p), FG_RANGE);
    CHECK_EQ_INT(port("4294967317", &p), FG_RANGE); /* 2^32 + 21: no truncation to 21 */
    CHECK_EQ_INT(port("123456789012345678901", &p), FG_RANGE);
    CHECK_EQ_INT(port("", &p), FG_SYNTAX);
    CHECK_EQ_INT(port("-21", &p), FG_SYNTAX);
    CHECK_EQ_INT(port("+21", &p), FG_SYNTAX);
    CHECK_EQ_INT(port(" 21", &p), FG_SYNTAX);
    CHECK_EQ_INT(port("21 ", &p), FG_SYNTAX);
    CHECK_EQ_INT(p, 77);
}

int main(void)
{
    test_u64_ok();
    test_u64_syntax();
    test_u64_range();
    test_port();
    return check_report();
}
