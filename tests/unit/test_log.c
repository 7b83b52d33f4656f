/* log.c: level gating, the text and JSON line formats, escaping of peer bytes
 * (no forged lines, always valid JSON), truncation, one line per event. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

/* Runs the emits between capture_begin() and capture_end() with stderr
 * redirected into a pipe; returns what was written. */
static int saved_fd = -1, pipe_fd[2];
static char captured[65536];

static void capture_begin(void)
{
    fflush(stderr);
    if (pipe(pipe_fd) != 0) {
        perror("pipe");
        exit(1);
    }
    saved_fd = dup(STDERR_FILENO);
    dup2(pipe_fd[1], STDERR_FILENO);
    close(pipe_fd[1]);
}

static size_t capture_end(void)
{
    size_t n = 0;
    ssize_t r;

    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    /* the write end is closed now: read to EOF */
    while (n < sizeof captured - 1 && (r = read(pipe_fd[0], captured + n, sizeof captured - 1 - n)) > 0)
        n += (size_t)r;
    close(pipe_fd[0]);
    captured[n] = '\0';
    return n;
}

static size_t count_char(const char *s, size_t n, char ch)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == ch;
    return k;
}

/* "2026-11-27T02:30:00.123Z" */
static int is_timestamp(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
            return 0;
    }
    return 1;
}

static void test_escape(void)
{
    char out[64];

    CHECK_STR(log_escape("USER bob", 8, out, sizeof out), "USER bob");
    CHECK_STR(log_escape("a\r\nb", 4, out, sizeof out), "a\\x0d\\x0ab");
    CHECK_STR(log_escape("\x00\x7f\xff", 3, out, sizeof out), "\\x00\\x7f\\xff");
    /* the backslash is escaped too, so "\x0a" typed by a peer stays distinguishable */
    CHECK_STR(log_escape("\\x0a", 4, out, sizeof out), "\\x5cx0a");
    CHECK_STR(log_escape("say \"hi\"", 8, out, sizeof out), "say \"hi\"");
    CHECK_STR(log_escape("", 0, out, sizeof out), "");

    /* truncation: "..." and never half an escape */
    CHECK_STR(log_escape("abcdefghij", 10, out, 8), "abcd...");
    CHECK_STR(log_escape("abcdefg", 7, out, 8), "abcdefg");
    CHECK_STR(log_escape("ab\ncdefgh", 9, out, 8), "ab...");
    CHECK_STR(log_escape("\n\n\n", 3, out, 8), "\\x0a...");
    CHECK_STR(log_escape("\n\n\n", 3, out, 7), "...");
    CHECK_STR(log_escape("abcdef", 6, out, 3), "..");
    CHECK_STR(log_escape("abcdef", 6, out, 1), "");
    out[0] = 'x';
    CHECK(log_escape("abc", 3, out, 0) == out && out[0] == 'x');
}

static void test_levels(void)
{
    CHECK_EQ_INT(log_level_parse("error"), LOG_LEVEL_ERROR);
    CHECK_EQ_INT(log_level_parse("warn"), LOG_LEVEL_WARN);
    CHECK_EQ_INT(log_level_parse("info"), LOG_LEVEL_INFO);
    CHECK_EQ_INT(log_level_parse("debug"), LOG_LEVEL_DEBUG);
    CHECK_EQ_INT(log_level_parse("INFO"), -1);
    CHECK_EQ_INT(log_level_parse("warning"), -1);
    CHECK_EQ_INT(log_level_parse(""), -1);
    CHECK_EQ_INT(log_level_parse(NULL), -1);

    log_setup(LOG_LEVEL_WARN, 0);
    CHECK(log_enabled(LOG_LEVEL_ERROR));
    CHECK(log_enabled(LOG_LEVEL_WARN));
    CHECK(!log_enabled(LOG_LEVEL_INFO));
    CHECK(!log_enabled(LOG_LEVEL_DEBUG));

    int evaluated = 0;
    capture_begin();
    LOG_INFO(0, NULL, "hidden %d", ++evaluated);
    LOG_DEBUG(0, NULL, "hidden");
    log_emit(LOG_LEVEL_INFO, 0, NULL, "hidden too");
    LOG_WARN(0, NULL, "shown");
    LOG_ERROR(0, NULL, "shown");
    size_t n = capture_end();
    CHECK_EQ_INT(evaluated, 0); /* arguments of a disabled level are not evaluated */
    CHECK_EQ_INT(count_char(captured, n, '\n'), 2);
    CHECK(strstr(captured, "hidden") == NULL);
    CHECK(strstr(captured, " warn shown\n") != NULL);
    CHECK(strstr(captured, " error shown\n") != NULL);
}

static void test_text(void)
{
    size_t n;

    log_setup(LOG_LEVEL_DEBUG, 0);
    capture_begin();
    LOG_INFO(12, "127.0.0.1:5000", "cmd %s", "RETR a\r\nPASS forged");
    n = capture_end();
    CHECK_EQ_INT(count_char(captured, n, '\n'), 1);
    CHECK(n > 24 && is_timestamp(captured));
    CHECK_STR(captured + 24, " info session=12 client=127.0.0.1:5000 cmd RETR a\\x0d\\x0aPASS forged\n");

    capture_begin();
    LOG_DEBUG(0, NULL, "plain %d%%", 100);
    n = capture_end();
    CHECK_STR(captured + 24, " debug plain 100%\n");

    /* a peer string with a newline cannot split the line either */
    capture_begin();
    LOG_WARN(0, "1.2.3.4:5\nx", "m");
    n = capture_end();
    CHECK_STR(captured + 24, " warn client=1.2.3.4:5\\x0ax m\n");

    /* a huge message: one line, capped, marked truncated */
    static char big[10000];
    memset(big, 'A', sizeof big - 1);
    capture_begin();
    LOG_ERROR(1, NULL, "%s", big);
    n = capture_end();
    CHECK(n <= 4096);
    CHECK_EQ_INT(count_char(captured, n, '\n'), 1);
    CHECK(n > 4000 && memcmp(captured + n - 4, "...\n", 4) == 0);

    /* escapes expand 4x: still capped */
    memset(big, '\x01', sizeof big - 1);
    capture_begin();
    LOG_ERROR(1, NULL, "%s", big);
    n = capture_end();
    CHECK(n <= 4096);
    CHECK_EQ_INT(count_char(captured, n, '\n'), 1);
    CHECK(memcmp(captured + n - 8, "\\x01...\n", 8) == 0);
}

static json_t *parse_line(size_t n)
{
    json_error_t je;
    json_t *j;

    CHECK(n > 0 && captured[n - 1] == '\n');
    CHECK_EQ_INT(count_char(captured, n, '\n'), 1);
    j = json_loadb(captured, n, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL)
        fprintf(stderr, "invalid JSON (%s): %s", je.text, captured);
    CHECK(j != NULL);
    return j;
}

static void test_json(void)
{
    json_t *j;
    size_t n;

    log_setup(LOG_LEVEL_INFO, 1);
    capture_begin();
    LOG_INFO(12, "[::1]:5000", "say \"hi\" \\ tab\there nl\n ctl\x01 hi\xc3\xa9 end");
    n = capture_end();
    j = parse_line(n);
    if (j != NULL) {
        CHECK_EQ_INT(json_object_size(j), 5);
        CHECK(is_timestamp(json_string_value(json_object_get(j, "ts"))));
        CHECK_EQ_INT(strlen(json_string_value(json_object_get(j, "ts"))), 24);
        CHECK_STR(json_string_value(json_object_get(j, "level")), "info");
        CHECK_EQ_INT(json_integer_value(json_object_get(j, "session")), 12);
        CHECK_STR(json_string_value(json_object_get(j, "client")), "[::1]:5000");
        CHECK_STR(json_string_value(json_object_get(j, "msg")),
                  "say \"hi\" \\x5c tab\\x09here nl\\x0a ctl\\x01 hi\\xc3\\xa9 end");
        json_decref(j);
    }
    CHECK(memcmp(captured, "{\"ts\":\"", 7) == 0);

    /* no session, no peer: the keys are left out */
    capture_begin();
    LOG_ERROR(0, NULL, "x");
    n = capture_end();
    j = parse_line(n);
    if (j != NULL) {
        CHECK_EQ_INT(json_object_size(j), 3);
        CHECK(json_object_get(j, "session") == NULL && json_object_get(j, "client") == NULL);
        CHECK_STR(json_string_value(json_object_get(j, "level")), "error");
        json_decref(j);
    }

    /* a peer carrying quotes and control bytes still gives valid JSON */
    capture_begin();
    LOG_WARN(1099511627776ULL, "\"},\"level\":\"x\n", "m");
    n = capture_end();
    j = parse_line(n);
    if (j != NULL) {
        CHECK_STR(json_string_value(json_object_get(j, "level")), "warn");
        CHECK_STR(json_string_value(json_object_get(j, "client")), "\"},\"level\":\"x\\x0a");
        CHECK_EQ_INT(json_integer_value(json_object_get(j, "session")), 1099511627776LL);
        json_decref(j);
    }

    /* worst-case expansion (every byte a quote or an escape) stays valid and capped */
    static char big[10000];
    const char *fill[] = { "\"", "\\", "\x02" };
    for (size_t f = 0; f < 3; f++) {
        memset(big, fill[f][0], sizeof big - 1);
        capture_begin();
        LOG_ERROR(7, "10.0.0.1:1", "%s", big);
        n = capture_end();
        CHECK(n <= 4096);
        j = parse_line(n);
        if (j != NULL) {
            const char *m = json_string_value(json_object_get(j, "msg"));
            CHECK(m != NULL && strlen(m) > 1000 && strcmp(m + strlen(m) - 3, "...") == 0);
            json_decref(j);
        }
    }
}

int main(void)
{
    test_escape();
    test_levels();
    test_text();
    test_json();
    log_setup(LOG_LEVEL_INFO, 0);
    return check_report();
}
