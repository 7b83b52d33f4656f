/* Unit tests for common/auditfmt.c: the audit log's JSON line. The exact line
 * of a typical record (key order, types, ts), nulls, the escaping of peer
 * bytes (quotes, backslash, control bytes, invalid and valid UTF-8, C1),
 * a long path cut with path_truncated, the worst case within
 * AUDITFMT_LINE_MAX, and every line parsed back by jansson. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "auditfmt.h"
#include "check.h"
#include "fgerr.h"

static audit_record_t typical(void)
{
    audit_record_t r;
    memset(&r, 0, sizeof r);
    r.ts_ms = 1795747384450LL; /* 2026-11-27T02:43:04.450Z */
    r.session = 12;
    r.listener = "ftps-explicit";
    r.client = "203.0.113.5:50123";
    r.user = "alice";
    r.user_len = 5;
    r.backend = "10.0.0.5:21";
    r.command = "RETR";
    r.path = "/pub/report.pdf";
    r.path_len = 15;
    r.direction = AUDIT_DOWNLOAD;
    r.bytes = 1048576;
    r.duration_ms = 153;
    r.reply = 226;
    r.tls = 1;
    r.tls_version = "TLSv1.3";
    r.tls_cipher = "TLS_AES_256_GCM_SHA384";
    r.tls_resumed = 1;
    return r;
}

static char line[AUDITFMT_LINE_MAX];

/* Formats, checks the framing (one line, '\n' last) and that it parses. */
static json_t *fmt(const audit_record_t *r, int *len)
{
    *len = auditfmt_line(r, line, sizeof line);
    CHECK(*len > 0 && (size_t)*len <= AUDITFMT_LINE_MAX);
    if (*len <= 0)
        return NULL;
    CHECK(line[*len - 1] == '\n');
    CHECK(memchr(line, '\n', (size_t)*len - 1) == NULL);
    CHECK(memchr(line, '\r', (size_t)*len) == NULL);
    json_error_t e;
    json_t *j = json_loadb(line, (size_t)*len, JSON_REJECT_DUPLICATES, &e);
    if (!j)
        fprintf(stderr, "  not JSON (%s): %.*s", e.text, *len, line);
    CHECK(j != NULL);
    return j;
}

static void test_typical(void)
{
    audit_record_t r = typical();
    int n;
    json_t *j = fmt(&r, &n);
    CHECK_EQ_MEM(line, (size_t)n,
                 "{\"ts\":\"2026-11-27T02:43:04.450Z\",\"session\":12,\"listener\":\"ftps-explicit\","
                 "\"client\":\"203.0.113.5:50123\",\"user\":\"alice\",\"backend\":\"10.0.0.5:21\",\"command\":\"RETR\","
                 "\"path\":\"/pub/report.pdf\",\"direction\":\"download\",\"bytes\":1048576,\"duration_ms\":153,"
                 "\"reply\":226,\"tls\":{\"version\":\"TLSv1.3\",\"cipher\":\"TLS_AES_256_GCM_SHA384\","
                 "\"resumed\":true}}\n");
    CHECK(json_object_get(j, "password") == NULL && json_object_get(j, "pass") == NULL);
    json_decref(j);

    /* an upload refused before it began: no TLS, no path, no reply yet */
    r.command = "STOR";
    r.direction = AUDIT_UPLOAD;
    r.tls = 0;
    r.path = NULL;
    r.reply = 0;
    r.user = NULL;
    r.backend = NULL;
    r.bytes = 0;
    r.ts_ms = 0;
    j = fmt(&r, &n);
    CHECK_EQ_MEM(line, (size_t)n,
                 "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"session\":12,\"listener\":\"ftps-explicit\","
                 "\"client\":\"203.0.113.5:50123\",\"user\":null,\"backend\":null,\"command\":\"STOR\",\"path\":null,"
                 "\"direction\":\"upload\",\"bytes\":0,\"duration_ms\":153,\"reply\":null,\"tls\":null}\n");
    json_decref(j);

    r.direction = AUDIT_LISTING;
    r.command = "MLSD";
    r.tls = 1;
    r.tls_version = NULL;
    r.tls_cipher = NULL;
    r.tls_resumed = 0;
    r.reply = 426;
    r.bytes = 9007199254740993ull; /* past 2^53: written exactly */
    j = fmt(&r, &n);
    CHECK_STR(json_string_value(json_object_get(j, "direction")), "listing");
    CHECK(json_is_null(json_object_get(json_object_get(j, "tls"), "version")));
    CHECK(json_is_false(json_object_get(json_object_get(j, "tls"), "resumed")));
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "reply")), 426);
    CHECK(strstr(line, "\"bytes\":9007199254740993,") != NULL);
    json_decref(j);

    CHECK_EQ_INT(auditfmt_line(&r, line, AUDITFMT_LINE_MAX - 1), FG_RANGE);
}

/* The path's JSON value as written, between its quotes. */
static void expect_path(const char *path, size_t len, const char *want_json, const char *want_decoded)
{
    audit_record_t r = typical();
    r.path = path;
    r.path_len = len;
    int n;
    json_t *j = fmt(&r, &n);
    const char *p = strstr(line, "\"path\":\"");
    const char *end = strstr(line, "\",\"direction\"");
    CHECK(p != NULL && end != NULL);
    if (p && end)
        CHECK_EQ_MEM(p + 8, (size_t)(end - p - 8), want_json);
    CHECK_STR(json_string_value(json_object_get(j, "path")), want_decoded);
    json_decref(j);
}

static void test_escaping(void)
{
    expect_path("a\"b", 3, "a\\\"b", "a\"b");
    expect_path("a\\b", 3, "a\\\\x5cb", "a\\x5cb"); /* the backslash itself: \x5c, so escapes stay unambiguous */
    expect_path("a\\x41", 5, "a\\\\x5cx41", "a\\x5cx41");
    expect_path("x\r\n220 forged\"}", 15, "x\\\\x0d\\\\x0a220 forged\\\"}", "x\\x0d\\x0a220 forged\"}");
    expect_path("nul\0byte", 8, "nul\\\\x00byte", "nul\\x00byte");
    expect_path("tab\tdel\x7f", 8, "tab\\\\x09del\\\\x7f", "tab\\x09del\\x7f");
    /* UTF-8 text is kept; Latin-1 bytes of a legacy server are not UTF-8 */
    expect_path("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x81", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x81",
                "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x81");
    expect_path("caf\xe9.txt", 8, "caf\\\\xe9.txt", "caf\\xe9.txt");
    /* C1 controls (CSI), overlong forms, surrogates, beyond U+10FFFF, cut sequences */
    expect_path("\xc2\x9b" "31m", 5, "\\\\xc2\\\\x9b31m", "\\xc2\\x9b31m");
    expect_path("\xc0\xaf", 2, "\\\\xc0\\\\xaf", "\\xc0\\xaf");
    expect_path("\xe0\x80\xaf", 3, "\\\\xe0\\\\x80\\\\xaf", "\\xe0\\x80\\xaf");
    expect_path("\xed\xa0\x80", 3, "\\\\xed\\\\xa0\\\\x80", "\\xed\\xa0\\x80");
    expect_path("\xf4\x90\x80\x80", 4, "\\\\xf4\\\\x90\\\\x80\\\\x80", "\\xf4\\x90\\x80\\x80");
    expect_path("\xe2\x82", 2, "\\\\xe2\\\\x82", "\\xe2\\x82");
    expect_path("\xc2\xa0", 2, "\xc2\xa0", "\xc2\xa0"); /* U+00A0, the first after C1 */

    /* a user name from the client is escaped the same way */
    audit_record_t r = typical();
    r.user = "bob\n{\"x\":1}";
    r.user_len = 11;
    int n;
    json_t *j = fmt(&r, &n);
    CHECK_STR(json_string_value(json_object_get(j, "user")), "bob\\x0a{\"x\":1}");
    CHECK(json_object_get(j, "x") == NULL);
    json_decref(j);
}

static void test_truncation(void)
{
    static char big[70000];
    audit_record_t r = typical();
    int n;

    /* exactly the cap: whole, not truncated */
    memset(big, 'p', AUDITFMT_PATH_MAX);
    r.path = big;
    r.path_len = AUDITFMT_PATH_MAX;
    json_t *j = fmt(&r, &n);
    CHECK_EQ_INT(strlen(json_string_value(json_object_get(j, "path"))), AUDITFMT_PATH_MAX);
    CHECK(json_object_get(j, "path_truncated") == NULL);
    json_decref(j);

    /* one more: cut to the cap with "...", and said so */
    r.path_len = AUDITFMT_PATH_MAX + 1;
    j = fmt(&r, &n);
    const char *p = json_string_value(json_object_get(j, "path"));
    CHECK_EQ_INT(strlen(p), AUDITFMT_PATH_MAX);
    CHECK(strcmp(p + AUDITFMT_PATH_MAX - 3, "...") == 0);
    CHECK(json_is_true(json_object_get(j, "path_truncated")));
    json_decref(j);

    /* the worst case: a 65 KB path of bytes that all need \xNN and a
     * 255-byte login of control bytes still make one line within the max,
     * and no escape is cut in half */
    memset(big, '\x01', sizeof big);
    r.path_len = sizeof big;
    r.user = big;
    r.user_len = 255;
    j = fmt(&r, &n);
    p = json_string_value(json_object_get(j, "path"));
    CHECK(p != NULL && strlen(p) <= AUDITFMT_PATH_MAX);
    CHECK(p != NULL && strlen(p) % 4 == 3); /* whole "\x01" escapes, then "..." */
    CHECK_EQ_INT(strlen(json_string_value(json_object_get(j, "user"))), 255 * 4);
    json_decref(j);

    /* a multi-byte character is never cut in half either */
    for (size_t i = 0; i + 3 <= sizeof big; i += 3)
        memcpy(big + i, "\xe2\x82\xac", 3);
    r.path_len = sizeof big - sizeof big % 3;
    r.user = "u";
    r.user_len = 1;
    j = fmt(&r, &n);
    p = json_string_value(json_object_get(j, "path")); /* jansson refuses broken UTF-8 */
    CHECK(p != NULL && strlen(p) == (AUDITFMT_PATH_MAX - 3) / 3 * 3 + 3);
    json_decref(j);
}

static void test_dropped(void)
{
    char buf[160];
    size_t n = auditfmt_dropped(1795747384450LL, 17, buf, sizeof buf);
    CHECK_EQ_MEM(buf, n, "{\"ts\":\"2026-11-27T02:43:04.450Z\",\"event\":\"records_dropped\",\"count\":17}\n");
    CHECK_EQ_INT(auditfmt_dropped(0, 1, buf, 20), 0);
}

int main(void)
{
    test_typical();
    test_escaping();
    test_truncation();
    test_dropped();
    return check_report();
}
