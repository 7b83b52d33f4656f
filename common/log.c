#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "asyncw.h"
#include "fgerr.h"

/* One event is one line, and one line is one write(2) of at most LOG_LINE_MAX
 * bytes: writes of up to PIPE_BUF (4096 on Linux) bytes to a pipe are atomic,
 * so lines from different events never interleave even when stderr is a pipe
 * shared with other writers. Longer messages are truncated with "...". */
#define LOG_LINE_MAX 4096

/* Start-up configuration, the only process-wide state (log.h). */
static int log_level_ = LOG_LEVEL_INFO;
static int log_json_ = 0;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_setup(int level, int json)
{
    if (level < LOG_LEVEL_ERROR)
        level = LOG_LEVEL_ERROR;
    if (level > LOG_LEVEL_DEBUG)
        level = LOG_LEVEL_DEBUG;
    log_level_ = level;
    log_json_ = json ? 1 : 0;
}

int log_enabled(int level)
{
    return level <= log_level_;
}

int log_level_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

/* SECURITY: peer bytes cannot forge log lines. Everything outside printable
 * ASCII becomes \xNN, and so does the backslash itself, so that an escaped
 * byte and a peer that literally sent "\x0a" stay distinguishable. */
static int keep_byte(unsigned char c)
{
    return c >= 0x20 && c <= 0x7e && c != '\\';
}

char *log_escape(const char *data, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)data;
    size_t need = 0, n = 0, i;

    if (cap == 0)
        return out;
    for (i = 0; i < len; i++)
        need += keep_byte(p[i]) ? 1 : 4;

    /* Room for the escaped bytes; when everything does not fit, leave room
     * for the "..." marker and never split an escape sequence. */
    size_t room = cap - 1;
    if (need > room)
        room = room >= 3 ? room - 3 : 0;
    for (i = 0; i < len; i++) {
        size_t w = keep_byte(p[i]) ? 1 : 4;
        if (n + w > room)
            break;
        if (w == 1) {
            out[n++] = (char)p[i];
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[p[i] >> 4];
            out[n++] = hex[p[i] & 0x0f];
        }
    }
    if (i < len)
        for (int k = 0; k < 3 && n < cap - 1; k++)
            out[n++] = '.';
    out[n] = '\0';
    return out;
}

/* Appends s as the body of a JSON string. s is log_escape() output, so it is
 * printable ASCII: only '"' and '\\' need escaping. Stops (without splitting
 * an escape) when fewer than `reserve` bytes would remain. */
static size_t json_append(char *line, size_t n, size_t cap, size_t reserve, const char *s)
{
    for (; *s != '\0'; s++) {
        size_t w = (*s == '"' || *s == '\\') ? 2 : 1;
        if (n + w + reserve > cap)
            break;
        if (w == 2)
            line[n++] = '\\';
        line[n++] = *s;
    }
    return n;
}

/* Appends a snprintf() result, keeping n within cap - 1 on truncation. */
static size_t add_fmt(char *line, size_t n, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t add_fmt(char *line, size_t n, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int r;

    if (n >= cap)
        return n;
    va_start(ap, fmt);
    r = vsnprintf(line + n, cap - n, fmt, ap);
    va_end(ap);
    if (r < 0)
        return n;
    n += (size_t)r;
    return n < cap ? n : cap - 1;
}

/* Asynchronous mode (log_start_async): a line is written at once when that
 * cannot block (nothing is waiting, and a non-blocking write takes it all),
 * so lines appear in order and in real time; otherwise it goes into a bounded
 * ring that a thread of its own writes out (asyncw.h), so a stderr that is
 * slow or never read (a stuck pipe, a paused terminal) cannot stall the event
 * loop. A line that does not fit is dropped and counted; the count is written
 * out once the writer catches up. The non-blocking writes use a description
 * of their own (stderr reopened through /proc), or MSG_DONTWAIT on a socket,
 * so the O_NONBLOCK flag never reaches the description other processes
 * share. */
static asyncw_t *writer_;
static int direct_fd_ = -1;

static void write_all(const char *buf, size_t len);

static size_t drop_note(void *ctx, unsigned long long lost, char *buf, size_t cap)
{
    (void)ctx;
    int m = snprintf(buf, cap, "log: %llu lines dropped: stderr was not read fast enough (ftpsgate never waits for it)\n",
                     lost);
    return m > 0 && (size_t)m < cap ? (size_t)m : 0;
}

int log_start_async(size_t capacity)
{
    if (writer_)
        return 0;
    struct stat st;
    int sock = fstat(STDERR_FILENO, &st) == 0 && S_ISSOCK(st.st_mode);
    direct_fd_ = sock ? STDERR_FILENO : open("/proc/self/fd/2", O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
    asyncw_opts_t o = {
        .capacity = capacity,
        .fd = STDERR_FILENO,
        .direct_fd = direct_fd_,
        .direct_socket = sock,
        .drop_note = drop_note,
    };
    asyncw_t *w;
    if (asyncw_start(&o, &w) != FG_OK) {
        if (direct_fd_ > STDERR_FILENO)
            close(direct_fd_);
        direct_fd_ = -1;
        return -1;
    }
    writer_ = w;
    return 0;
}

void log_stop_async(unsigned wait_ms)
{
    asyncw_t *w = writer_;
    if (!w)
        return;
    writer_ = NULL; /* from now on lines are written directly */
    if (asyncw_stop(w, wait_ms) != FG_OK)
        return; /* stderr is stuck: the rest is given up; the process is ending */
    if (direct_fd_ > STDERR_FILENO)
        close(direct_fd_);
    direct_fd_ = -1;
}

unsigned long long log_dropped(void)
{
    return writer_ ? asyncw_dropped(writer_) : 0;
}

static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        buf += w;
        len -= (size_t)w;
    }
}

void log_emit(int level, unsigned long long session, const char *peer, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX + 1]; /* longer than any line: truncation shows as "..." */
    char esc[LOG_LINE_MAX];
    char epeer[128];
    char ts[96]; /* more than the 24 used: the compiler cannot bound struct tm */
    char line[LOG_LINE_MAX];
    size_t n = 0, mlen;
    struct timespec now;
    struct tm tm;
    va_list ap;
    int r;

    if (!log_enabled(level))
        return;
    if (level < LOG_LEVEL_ERROR)
        level = LOG_LEVEL_ERROR;
    if (level > LOG_LEVEL_DEBUG)
        level = LOG_LEVEL_DEBUG;

    va_start(ap, fmt);
    r = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r < 0) {
        snprintf(msg, sizeof msg, "(bad log format)");
        r = (int)strlen(msg);
    }
    mlen = (size_t)r < sizeof msg ? (size_t)r : sizeof msg - 1;

    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || gmtime_r(&now.tv_sec, &tm) == NULL) {
        memset(&tm, 0, sizeof tm);
        now.tv_nsec = 0;
    }
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(now.tv_nsec / 1000000));
    if (peer != NULL)
        log_escape(peer, strlen(peer), epeer, sizeof epeer);

    if (!log_json_) {
        n = add_fmt(line, n, sizeof line, "%s %s", ts, level_names[level]);
        if (session != 0)
            n = add_fmt(line, n, sizeof line, " session=%llu", session);
        if (peer != NULL)
            n = add_fmt(line, n, sizeof line, " client=%s", epeer);
        n = add_fmt(line, n, sizeof line, " ");
        /* the rest of the line, minus the '\n' */
        log_escape(msg, mlen, line + n, sizeof line - n - 1);
        n += strlen(line + n);
    } else {
        n = add_fmt(line, n, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_names[level]);
        if (session != 0)
            n = add_fmt(line, n, sizeof line, ",\"session\":%llu", session);
        if (peer != NULL) {
            n = add_fmt(line, n, sizeof line, ",\"client\":\"");
            n = json_append(line, n, sizeof line, 0, epeer);
            n = add_fmt(line, n, sizeof line, "\"");
        }
        n = add_fmt(line, n, sizeof line, ",\"msg\":\"");
        /* JSON escaping at most doubles the escaped text; keep 3 bytes for
         * the closing "}\n. */
        size_t avail = sizeof line - n - 3;
        log_escape(msg, mlen, esc, avail / 2 + 1 < sizeof esc ? avail / 2 + 1 : sizeof esc);
        n = json_append(line, n, sizeof line, 3, esc);
        line[n++] = '"';
        line[n++] = '}';
    }
    line[n++] = '\n';
    asyncw_t *w = writer_;
    if (w)
        asyncw_put(w, line, n);
    else
        write_all(line, n);
}
