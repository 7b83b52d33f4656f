/* Unit tests for common/feat.c: FEAT reply merging. */
#include "check.h"
#include "feat.h"
#include "fgerr.h"

static int keep(const char *s)
{
    return feat_keep_line(s, strlen(s));
}

static void test_keep(void)
{
    /* the proxy decides these */
    static const char *dropped[] = {
        " AUTH TLS", " AUTH SSL", " AUTH TLS;SSL", " auth tls", " AUTH", " PBSZ", " PROT",
        " PROT C;P", " CCC", " EPSV", " EPRT", " ePrT", "AUTH TLS", "   PBSZ", "PBSZ",
    };
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
        CHECK_EQ_INT(keep(dropped[i]), 0);
        if (keep(dropped[i]) != 0)
            fprintf(stderr, "  kept \"%s\"\n", dropped[i]);
    }
    /* everything else passes */
    static const char *kept[] = {
        " MDTM", " SIZE", " REST STREAM", " MLST type*;size*;modify*;", " UTF8", " TVFS",
        " LANG EN*", " EPSVX", " AUTHX TLS", " CC", " PROTO", " SITE AUTH", " MFMT", "",
        "   ", " HOST", " EPS", " PASV",
    };
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        CHECK_EQ_INT(keep(kept[i]), 1);
        if (keep(kept[i]) != 1)
            fprintf(stderr, "  dropped \"%s\"\n", kept[i]);
    }
    /* the slice, not the C string */
    CHECK_EQ_INT(feat_keep_line(" EPSVX", 5), 0);
    CHECK_EQ_INT(feat_keep_line(NULL, 0), 0);
}

static void test_own(void)
{
    char out[256];
    feat_policy_t p;

    memset(&p, 0, sizeof(p));
    int n = feat_own_lines(&p, out, sizeof(out));
    CHECK_STR(out, " EPSV\r\n");
    CHECK_EQ_INT(n, (int)strlen(out));

    p.tls_available = 1;
    p.eprt_allowed = 1;
    n = feat_own_lines(&p, out, sizeof(out));
    CHECK_STR(out, " AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n EPSV\r\n EPRT\r\n");
    CHECK_EQ_INT(n, (int)strlen(out));

    /* RFC 4217 §5: AUTH, PBSZ and PROT are listed in every state (after AUTH
     * too, and on implicit sessions, as MS-FTPS lists them). */
    p.ccc_allowed = 1;
    n = feat_own_lines(&p, out, sizeof(out));
    CHECK_STR(out, " AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n CCC\r\n EPSV\r\n EPRT\r\n");
    CHECK_EQ_INT(n, (int)strlen(out));

    /* every line the proxy writes is one the merge would drop from the backend */
    n = feat_own_lines(&p, out, sizeof(out));
    CHECK(n > 0);
    const char *s = out;
    int lines = 0;
    while (*s) {
        const char *e = strstr(s, "\r\n");
        CHECK(e != NULL);
        if (e == NULL)
            break;
        CHECK_EQ_INT(s[0], ' ');
        CHECK_EQ_INT(feat_keep_line(s, (size_t)(e - s)), 0);
        lines++;
        s = e + 2;
    }
    CHECK_EQ_INT(lines, 7);

    /* cap: exact fit, one short, tiny, zero */
    size_t full = strlen(out);
    CHECK_EQ_INT(feat_own_lines(&p, out, full + 1), (int)full);
    CHECK_EQ_INT(feat_own_lines(&p, out, full), FG_RANGE);
    CHECK_EQ_INT(out[0], '\0');
    CHECK_EQ_INT(feat_own_lines(&p, out, 3), FG_RANGE);
    CHECK_EQ_INT(feat_own_lines(&p, out, 0), FG_RANGE);
    CHECK_EQ_INT(feat_own_lines(&p, NULL, 10), FG_RANGE);
    /* NULL policy: only what is always there */
    n = feat_own_lines(NULL, out, sizeof(out));
    CHECK_STR(out, " EPSV\r\n");
}

/* Feeds reply lines ("211-..." first, "211 ..." last) through the merger. */
static void merge(const char *const *lines, size_t n, const feat_policy_t *own, const char *want)
{
    feat_merge_t m;
    char all[2048] = "", out[1024];
    size_t pos = 0;
    int done = 0;
    feat_merge_begin(&m);
    for (size_t i = 0; i < n; i++) {
        int first = i == 0, last = i + 1 == n;
        int code = (lines[i][0] - '0') * 100 + (lines[i][1] - '0') * 10 + (lines[i][2] - '0');
        if (!first && !last)
            code = 211;
        int k = feat_merge_line(&m, own, code, first, last, lines[i], strlen(lines[i]), out, sizeof out, &done);
        CHECK(k >= 0);
        CHECK_EQ_INT(done, last);
        if (k > 0 && pos + (size_t)k < sizeof all) {
            memcpy(all + pos, out, (size_t)k);
            pos += (size_t)k;
        }
    }
    all[pos] = '\0';
    CHECK_STR(all, want);
}

static void test_merge(void)
{
    feat_policy_t own;
    memset(&own, 0, sizeof own);
    own.tls_available = 1;
    /* The backend's own AUTH/PROT/EPSV lines go; ours come before its last line. */
    static const char *const vs[] = {"211-Features:", " MDTM", " AUTH TLS", " PROT", " EPSV", " SIZE", "211 End"};
    merge(vs, 7, &own,
          "211-Features:\r\n MDTM\r\n SIZE\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n EPSV\r\n211 End\r\n");
    /* No FEAT at the backend (500): ours alone, framed. */
    static const char *const none[] = {"500 Unknown command"};
    merge(none, 1, &own, "211-Features:\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n EPSV\r\n211 End\r\n");
    /* A single-line 211 ("211 no features"): ours alone too. */
    static const char *const single[] = {"211 No features"};
    merge(single, 1, &own, "211-Features:\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n EPSV\r\n211 End\r\n");
    /* Without routes the backend's HOST passes (HOST is forwarded to it); with
     * routes ftpsgate answers HOST: one HOST line, ours. */
    static const char *const host[] = {"211-Features:", " HOST", " host", " SIZE", "211 End"};
    merge(host, 5, &own,
          "211-Features:\r\n HOST\r\n host\r\n SIZE\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n EPSV\r\n"
          "211 End\r\n");
    own.host_answered = 1;
    merge(host, 5, &own,
          "211-Features:\r\n SIZE\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n EPSV\r\n HOST\r\n211 End\r\n");
    merge(none, 1, &own,
          "211-Features:\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n EPSV\r\n HOST\r\n211 End\r\n");
    own.host_answered = 0;
    /* Too small an output buffer: FG_RANGE, never an overflow. */
    feat_merge_t m;
    char tiny[8];
    int done = 0;
    feat_merge_begin(&m);
    CHECK_EQ_INT(feat_merge_line(&m, &own, 500, 1, 1, "500 x", 5, tiny, sizeof tiny, &done), FG_RANGE);
}

int main(void)
{
    test_keep();
    test_own();
    test_merge();
    return check_report();
}
