/* Unit tests for common/ftp_reply.c: streaming reply classification. */
#include "check.h"
#include "fgerr.h"
#include "ftp_reply.h"

static ftp_reply_state_t st;
static ftp_reply_line_t rl;

static int feed(const char *s)
{
    return ftp_reply_feed(&st, s, strlen(s), &rl);
}

static void test_single(void)
{
    ftp_reply_init(&st);
    CHECK_EQ_INT(feed("220 Welcome"), FG_OK);
    CHECK_EQ_INT(rl.code, 220);
    CHECK(rl.first && rl.last);
    CHECK_EQ_MEM(rl.text, rl.text_len, "Welcome");
    CHECK(!st.in_multiline);

    CHECK_EQ_INT(feed("331"), FG_OK); /* bare code taken as "331 " */
    CHECK_EQ_INT(rl.code, 331);
    CHECK(rl.first && rl.last);
    CHECK_EQ_INT(rl.text_len, 0);

    CHECK_EQ_INT(feed("200 "), FG_OK);
    CHECK_EQ_INT(rl.text_len, 0);
    CHECK(rl.first && rl.last);

    CHECK_EQ_INT(feed("100 x"), FG_OK);
    CHECK_EQ_INT(rl.code, 100);
    CHECK_EQ_INT(feed("599 x"), FG_OK);
    CHECK_EQ_INT(rl.code, 599);
    CHECK_EQ_INT(feed("226 two  spaces "), FG_OK);
    CHECK_EQ_MEM(rl.text, rl.text_len, "two  spaces ");
}

static void test_bad_start(void)
{
    static const char *bad[] = {"", "2", "22", "22 x", "020 x", "600 x", "999 x", "abc",
                                "22a x", "2a0 x", "220x", "220\tx", "220_x", " 220 x",
                                "-220 x", "220\r", "Welcome"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ftp_reply_init(&st);
        int rc = feed(bad[i]);
        CHECK_EQ_INT(rc, FG_SYNTAX);
        if (rc != FG_SYNTAX)
            fprintf(stderr, "  input \"%s\"\n", bad[i]);
        CHECK(!st.in_multiline);
    }
    /* after a syntax error the parser still accepts a good reply */
    ftp_reply_init(&st);
    CHECK_EQ_INT(feed("garbage"), FG_SYNTAX);
    CHECK_EQ_INT(feed("220 ok"), FG_OK);
    CHECK_EQ_INT(ftp_reply_feed(&st, NULL, 0, &rl), FG_SYNTAX);
    CHECK_EQ_INT(ftp_reply_feed(&st, "220 ok", 2, &rl), FG_SYNTAX); /* the slice, not the string */
}

static void test_multiline(void)
{
    ftp_reply_init(&st);
    CHECK_EQ_INT(feed("211-Features:"), FG_OK);
    CHECK_EQ_INT(rl.code, 211);
    CHECK(rl.first && !rl.last);
    CHECK_EQ_MEM(rl.text, rl.text_len, "Features:");
    CHECK(st.in_multiline);

    CHECK_EQ_INT(feed(" MDTM"), FG_OK);
    CHECK(!rl.first && !rl.last);
    CHECK_EQ_INT(rl.code, 211);
    CHECK_EQ_MEM(rl.text, rl.text_len, " MDTM"); /* middle lines: the whole line */

    /* RFC 959 §4.2: an embedded "ddd-" line, even with the same code, is text */
    CHECK_EQ_INT(feed("211-not the end"), FG_OK);
    CHECK(!rl.first && !rl.last);
    CHECK_EQ_MEM(rl.text, rl.text_len, "211-not the end");
    /* another code with a space is text too */
    CHECK_EQ_INT(feed("226 Transfer complete"), FG_OK);
    CHECK(!rl.last);
    CHECK_EQ_INT(rl.code, 211);
    /* junk that would be a syntax error at the start is fine in the middle */
    CHECK_EQ_INT(feed(""), FG_OK);
    CHECK_EQ_INT(feed("garbage \xff"), FG_OK);
    CHECK_EQ_INT(feed("211"), FG_OK); /* not "211 " */
    CHECK(!rl.last);
    CHECK_EQ_INT(feed("21 x"), FG_OK);
    CHECK(!rl.last);
    CHECK_EQ_INT(feed(" 211 x"), FG_OK);
    CHECK(!rl.last);

    CHECK_EQ_INT(feed("211 End"), FG_OK);
    CHECK(!rl.first && rl.last);
    CHECK_EQ_INT(rl.code, 211);
    CHECK_EQ_MEM(rl.text, rl.text_len, "End");
    CHECK(!st.in_multiline);

    /* the next line must start a new reply again */
    CHECK_EQ_INT(feed(" MDTM"), FG_SYNTAX);
    CHECK_EQ_INT(feed("150-Opening"), FG_OK);
    CHECK(rl.first && !rl.last);
    CHECK_EQ_INT(feed("150 "), FG_OK);
    CHECK(rl.last);
    CHECK_EQ_INT(rl.text_len, 0);

    /* a multi-line reply whose first line is just "ddd-" */
    CHECK_EQ_INT(feed("230-"), FG_OK);
    CHECK_EQ_INT(rl.text_len, 0);
    CHECK(st.in_multiline);
    CHECK_EQ_INT(feed("230-Welcome"), FG_OK);
    CHECK(!rl.last);
    CHECK_EQ_INT(feed("230 Login successful."), FG_OK);
    CHECK(rl.last);

    /* a long multi-line reply costs nothing: stream 100000 middle lines */
    CHECK_EQ_INT(feed("214-help"), FG_OK);
    int ok = 1;
    for (int i = 0; i < 100000; i++)
        ok = ok && feed("214-more") == FG_OK && !rl.last;
    CHECK(ok);
    CHECK_EQ_INT(feed("214 done"), FG_OK);
    CHECK(rl.last);
}

int main(void)
{
    test_single();
    test_bad_start();
    test_multiline();
    return check_report();
}
