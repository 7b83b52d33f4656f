/* Unit tests for common/linebuf.c: the bounded, Telnet-aware line reader. */
#include <stdlib.h>

#include "check.h"
#include "fgerr.h"
#include "linebuf.h"

/* Transcript of the events produced by feeding data to a linebuf, as text:
 * "L<len>:<bytes>;" for a line, "T;" for FG_TOO_LONG, "S;" for FG_SYNTAX, and
 * finally "P<n>" with the partial count. Split-invariance is checked by
 * comparing transcripts. */
typedef struct {
    char buf[8192];
    size_t len;
} transcript_t;

static void tr_add(transcript_t *t, const char *s, size_t n)
{
    if (n > sizeof(t->buf) - t->len)
        n = sizeof(t->buf) - t->len;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

static void tr_addf_num(transcript_t *t, char tag, size_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%c%zu", tag, v);
    tr_add(t, tmp, (size_t)n);
}

/* Feeds data[0..len) to lb; returns 0 on a protocol violation of the API
 * itself (bad *used, NEED_MORE without consuming everything). */
static int feed(linebuf_t *lb, const char *data, size_t len, transcript_t *t)
{
    size_t off = 0;
    int guard = 0;
    do {
        size_t used = (size_t)-1;
        const char *line = (const char *)1;
        size_t line_len = 12345;
        int rc = linebuf_take(lb, data + off, len - off, &used, &line, &line_len);
        if (used > len - off)
            return 0;
        off += used;
        switch (rc) {
        case FG_OK:
            tr_addf_num(t, 'L', line_len);
            tr_add(t, ":", 1);
            tr_add(t, line, line_len);
            tr_add(t, ";", 1);
            if (used == 0)
                return 0;
            break;
        case FG_TOO_LONG:
            tr_add(t, "T;", 2);
            if (used == 0)
                return 0;
            break;
        case FG_SYNTAX:
            tr_add(t, "S;", 2);
            if (used == 0)
                return 0;
            break;
        case FG_NEED_MORE:
            if (off != len)
                return 0;
            break;
        default:
            return 0;
        }
        if (++guard > 100000)
            return 0;
    } while (off < len);
    return 1;
}

static void run_whole(size_t cap, int telnet, const char *in, size_t n, transcript_t *t)
{
    linebuf_t *lb = linebuf_new(cap, telnet);
    CHECK(lb != NULL);
    t->len = 0;
    CHECK(feed(lb, in, n, t));
    tr_addf_num(t, 'P', linebuf_partial(lb));
    linebuf_free(lb);
}

/* Checks that the expected transcript comes out for one call, for every
 * split into two calls, for every split into three calls, and byte by byte. */
static void expect_split_invariant(size_t cap, int telnet, const char *in, size_t n,
                                   const char *expect, size_t expect_len)
{
    transcript_t t;
    run_whole(cap, telnet, in, n, &t);
    CHECK(t.len == expect_len && memcmp(t.buf, expect, expect_len) == 0);
    if (!(t.len == expect_len && memcmp(t.buf, expect, expect_len) == 0))
        fprintf(stderr, "  got      \"%.*s\"\n  expected \"%.*s\"\n", (int)t.len, t.buf,
                (int)expect_len, expect);

    int all_ok = 1;
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            linebuf_t *lb = linebuf_new(cap, telnet);
            transcript_t s;
            s.len = 0;
            int ok = feed(lb, in, a, &s) && feed(lb, in + a, b - a, &s) &&
                     feed(lb, in + b, n - b, &s);
            tr_addf_num(&s, 'P', linebuf_partial(lb));
            linebuf_free(lb);
            if (!ok || s.len != t.len || memcmp(s.buf, t.buf, t.len) != 0) {
                if (all_ok)
                    fprintf(stderr, "  split at %zu,%zu differs: \"%.*s\"\n", a, b,
                            (int)s.len, s.buf);
                all_ok = 0;
            }
        }
    }
    CHECK(all_ok);

    linebuf_t *lb = linebuf_new(cap, telnet);
    transcript_t s;
    s.len = 0;
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok = ok && feed(lb, in + i, 1, &s);
    tr_addf_num(&s, 'P', linebuf_partial(lb));
    linebuf_free(lb);
    CHECK(ok && s.len == t.len && memcmp(s.buf, t.buf, t.len) == 0);
}

#define EXPECT(cap, telnet, in, expect) \
    expect_split_invariant((cap), (telnet), (in), sizeof(in) - 1, (expect), sizeof(expect) - 1)

static void test_basic_lines(void)
{
    EXPECT(64, 0, "USER bob\r\n", "L8:USER bob;P0");
    EXPECT(64, 0, "USER bob\n", "L8:USER bob;P0");                 /* bare LF tolerated */
    EXPECT(64, 0, "\r\n\n", "L0:;L0:;P0");                          /* empty lines */
    EXPECT(64, 0, "NOOP\r\nPWD\r\nQUIT", "L4:NOOP;L3:PWD;P4");      /* pipelined + partial */
    EXPECT(64, 0, "NOOP\r", "P4");                                  /* CR pending */
    EXPECT(64, 0, "A\r\r\n", "S;P0");                               /* CR CR LF: first CR bare */
    EXPECT(64, 0, "A\rB\r\nC\r\n", "S;L1:C;P0");                    /* bare CR inside */
    EXPECT(64, 0, "\rX\n", "S;P0");
    EXPECT(64, 0, "RETR a\0b\r\nNOOP\r\n", "S;L4:NOOP;P0");         /* NUL */
    EXPECT(64, 0, "\0\n", "S;P0");
    EXPECT(64, 0, "A\xff" "B\r\n", "L3:A\xff" "B;P0");             /* 0xFF is data without telnet */
    EXPECT(64, 0, "tab\there\r\n", "L8:tab\there;P0");
}

static void test_cap(void)
{
    /* exactly the cap fits; one more is too long; the next line is unaffected */
    EXPECT(4, 0, "ABCD\r\nABCDE\r\nXY\r\n", "L4:ABCD;T;L2:XY;P0");
    EXPECT(4, 0, "ABCDEFGHIJKLMNOP\nQ\n", "T;L1:Q;P0");
    /* the CR of CRLF does not count against the cap */
    EXPECT(3, 0, "ABC\r\n", "L3:ABC;P0");
    /* too long wins over syntax: reported once */
    EXPECT(2, 0, "A\0BCDEF\rX\n", "T;P0");
    /* zero cap: only empty lines */
    EXPECT(0, 0, "\r\nA\r\n\n", "L0:;T;L0:;P0");
    /* partial is bounded by the cap while a long line is discarded */
    linebuf_t *lb = linebuf_new(8, 0);
    size_t used;
    const char *line;
    size_t line_len;
    static char big[10000];
    memset(big, 'x', sizeof(big));
    CHECK_EQ_INT(linebuf_take(lb, big, sizeof(big), &used, &line, &line_len), FG_NEED_MORE);
    CHECK_EQ_INT(used, sizeof(big));
    CHECK(linebuf_partial(lb) <= 8);
    CHECK_EQ_INT(linebuf_take(lb, big, sizeof(big), &used, &line, &line_len), FG_NEED_MORE);
    CHECK_EQ_INT(linebuf_take(lb, "x\r\nOK\r\n", 7, &used, &line, &line_len), FG_TOO_LONG);
    CHECK_EQ_INT(used, 3);
    CHECK_EQ_INT(linebuf_take(lb, "OK\r\n", 4, &used, &line, &line_len), FG_OK);
    CHECK_EQ_MEM(line, line_len, "OK");
    linebuf_free(lb);
}

static void test_set_cap(void)
{
    size_t used, line_len;
    const char *line;
    linebuf_t *lb = linebuf_new(16, 0);
    CHECK(lb != NULL);
    linebuf_set_cap(lb, 4);
    CHECK_EQ_INT(linebuf_take(lb, "ABCDE\r\n", 7, &used, &line, &line_len), FG_TOO_LONG);
    CHECK_EQ_INT(linebuf_take(lb, "ABCD\r\n", 6, &used, &line, &line_len), FG_OK);
    /* raising the cap mid-line applies from the next line only */
    CHECK_EQ_INT(linebuf_take(lb, "ABC", 3, &used, &line, &line_len), FG_NEED_MORE);
    linebuf_set_cap(lb, 10);
    CHECK_EQ_INT(linebuf_take(lb, "DEFG\r\n", 6, &used, &line, &line_len), FG_TOO_LONG);
    CHECK_EQ_INT(linebuf_take(lb, "ABCDEFGHIJ\r\n", 12, &used, &line, &line_len), FG_OK);
    CHECK_EQ_MEM(line, line_len, "ABCDEFGHIJ");
    /* clamped to the capacity */
    linebuf_set_cap(lb, 1000);
    CHECK_EQ_INT(linebuf_take(lb, "0123456789ABCDEF\r\n", 18, &used, &line, &line_len), FG_OK);
    CHECK_EQ_INT(line_len, 16);
    CHECK_EQ_INT(linebuf_take(lb, "0123456789ABCDEFG\r\n", 19, &used, &line, &line_len),
                 FG_TOO_LONG);
    linebuf_free(lb);
}

static void test_reset_and_api(void)
{
    size_t used = 99, line_len = 99;
    const char *line = NULL;
    linebuf_t *lb = linebuf_new(16, 1);
    CHECK(lb != NULL);
    CHECK_EQ_INT(linebuf_take(lb, "", 0, &used, &line, &line_len), FG_NEED_MORE);
    CHECK_EQ_INT(used, 0);
    CHECK_EQ_INT(linebuf_take(lb, "AUTH TL\r\xff", 9, &used, &line, &line_len), FG_NEED_MORE);
    CHECK_EQ_INT(linebuf_partial(lb), 7);
    /* reset forgets the partial line, the pending CR and the pending IAC */
    linebuf_reset(lb);
    CHECK_EQ_INT(linebuf_partial(lb), 0);
    /* a fresh IAC takes the next byte as its command ('P' here) */
    CHECK_EQ_INT(linebuf_take(lb, "\xffPBSZ 0\r\n", 9, &used, &line, &line_len), FG_OK);
    CHECK_EQ_MEM(line, line_len, "BSZ 0");
    CHECK_EQ_INT(linebuf_take(lb, "AB\xff", 3, &used, &line, &line_len), FG_NEED_MORE);
    linebuf_reset(lb);
    /* ...but not after a reset: the pending IAC is gone */
    CHECK_EQ_INT(linebuf_take(lb, "PBSZ 0\r\nX", 9, &used, &line, &line_len), FG_OK);
    CHECK_EQ_INT(used, 8);
    CHECK_EQ_MEM(line, line_len, "PBSZ 0");
    linebuf_free(lb);
    linebuf_free(NULL);
}

static void test_telnet(void)
{
    /* IAC IAC: literal 0xFF */
    EXPECT(64, 1, "RETR a\xff\xff" "b\r\n", "L8:RETR a\xff" "b;P0");
    /* IAC IP IAC DM before ABOR (RFC 959 §4.1.3) */
    EXPECT(64, 1, "\xff\xf4\xff\xf2" "ABOR\r\n", "L4:ABOR;P0");
    /* option negotiation removed, option byte included (even if it is LF or IAC) */
    EXPECT(64, 1, "NO\xff\xfb\x01OP\r\n", "L4:NOOP;P0");
    EXPECT(64, 1, "NO\xff\xfd\nOP\r\n", "L4:NOOP;P0");
    EXPECT(64, 1, "NO\xff\xfc\xffOP\r\n", "L4:NOOP;P0");
    EXPECT(64, 1, "\xff\xfe\xff\xff\xff\n", "L1:\xff;P0");
    EXPECT(64, 1, "\xff\xfe\xff\xff\xff\xff\n", "P1"); /* trailing IAC eats the LF */
    /* other commands dropped: NOP (241), AYT (246), SB (250), even IAC CR / IAC LF */
    EXPECT(64, 1, "AB\xff\xf1OR\r\n", "L4:ABOR;P0");
    EXPECT(64, 1, "AB\xff\xf6OR\xff\xfa\r\n", "L4:ABOR;P0");
    EXPECT(64, 1, "A\xff\nB\r\n", "L2:AB;P0");
    /* a CR survives an IAC command in between (commands are out of band) */
    EXPECT(64, 1, "NOOP\r\xff\xf1\n", "L4:NOOP;P0");
    /* a literal 0xFF after CR makes it bare */
    EXPECT(64, 1, "NOOP\r\xff\xff\n", "S;P0");
    /* dangling IAC at the end: pending, nothing buffered for it */
    EXPECT(64, 1, "NOOP\xff", "P4");
    EXPECT(64, 1, "NOOP\xff\xfb", "P4");
    /* IAC IAC counts as one byte against the cap */
    EXPECT(2, 1, "\xff\xff\xff\xff\r\n\xff\xff\xff\xff\xff\xff\r\n", "L2:\xff\xff;T;P0");
    /* NUL via telnet path still rejected */
    EXPECT(64, 1, "A\xff\xf1\0B\r\n", "S;P0");
    /* mixed stream with everything */
    EXPECT(6, 1,
           "USER \xff\xfb\x18" "a\r\nPASS\rq\r\n\xff\xf4\xff\xf2" "ABOR\r\nTOOLONGLINE\n"
           "LIST \xff\xff\r\nQU",
           "L6:USER a;S;L4:ABOR;T;L6:LIST \xff;P2");
}

static void test_alloc_limits(void)
{
    CHECK(linebuf_new((size_t)-1, 0) == NULL);
    CHECK(linebuf_new((size_t)-1 - 8, 1) == NULL);
    linebuf_t *lb = linebuf_new(0, 0);
    CHECK(lb != NULL);
    linebuf_free(lb);
}

int main(void)
{
    test_basic_lines();
    test_cap();
    test_set_cap();
    test_reset_and_api();
    test_telnet();
    test_alloc_limits();
    return check_report();
}
