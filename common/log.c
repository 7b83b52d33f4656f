#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
 * ring that a thread of its own writes out, so a stderr that is slow or never
 * read (a stuck pipe, a paused terminal) cannot stall the event loop. A line
 * that does not fit is dropped and counted; the count is written out once
 * the writer catches up. The non-blocking writes use a description of their
 * own (stderr reopened through /proc), or MSG_DONTWAIT on a socket, so the
 * O_NONBLOCK flag never reaches the description other processes share. */
#define LOG_WRITER_CHUNK (64u * 1024u)

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    char *ring;
    size_t cap, head, len; /* bytes [head, head+len) modulo cap */
    unsigned long long dropped, dropped_unreported;
    int running, stopping, writer_busy;
    int direct_fd, direct_socket; /* -1: every line through the ring */
} async_ = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .direct_fd = -1};

static void write_all(const char *buf, size_t len);

static void *writer_main(void *arg)
{
    (void)arg;
    char *out = malloc(LOG_WRITER_CHUNK);
    if (!out)
        return NULL;
    pthread_mutex_lock(&async_.lock);
    for (;;) {
        while (async_.len == 0 && !async_.dropped_unreported && !async_.stopping)
            pthread_cond_wait(&async_.wake, &async_.lock);
        if (async_.len == 0 && !async_.dropped_unreported)
            break; /* stopping, all written */
        size_t n = 0;
        while (n < LOG_WRITER_CHUNK && async_.len > 0) {
            size_t run = async_.cap - async_.head;
            if (run > async_.len)
                run = async_.len;
            if (run > LOG_WRITER_CHUNK - n)
                run = LOG_WRITER_CHUNK - n;
            memcpy(out + n, async_.ring + async_.head, run);
            n += run;
            async_.head = (async_.head + run) % async_.cap;
            async_.len -= run;
        }
        unsigned long long lost = async_.len == 0 ? async_.dropped_unreported : 0;
        if (lost)
            async_.dropped_unreported = 0;
        async_.writer_busy = 1;
        pthread_mutex_unlock(&async_.lock);
        write_all(out, n);
        if (lost) {
            char note[160];
            int m = snprintf(note, sizeof note,
                             "log: %llu lines dropped: stderr was not read fast enough (ftpsgate never waits for it)\n",
                             lost);
            write_all(note, (size_t)m);
        }
        pthread_mutex_lock(&async_.lock);
        async_.writer_busy = 0;
    }
    pthread_mutex_unlock(&async_.lock);
    free(out);
    return NULL;
}

int log_start_async(size_t capacity)
{
    if (async_.running)
        return 0;
    async_.ring = malloc(capacity);
    if (!async_.ring)
        return -1;
    async_.cap = capacity;
    async_.head = async_.len = 0;
    async_.stopping = 0;
    struct stat st;
    async_.direct_socket = fstat(STDERR_FILENO, &st) == 0 && S_ISSOCK(st.st_mode);
    async_.direct_fd = async_.direct_socket
                           ? STDERR_FILENO
                           : open("/proc/self/fd/2", O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
    if (pthread_create(&async_.thread, NULL, writer_main, NULL) != 0) {
        free(async_.ring);
        async_.ring = NULL;
        return -1;
    }
    async_.running = 1;
    return 0;
}

void log_stop_async(unsigned wait_ms)
{
    if (!async_.running)
        return;
    pthread_mutex_lock(&async_.lock);
    async_.stopping = 1;
    pthread_cond_signal(&async_.wake);
    pthread_mutex_unlock(&async_.lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_timedjoin_np(async_.thread, NULL, &until) != 0) {
        /* stderr is stuck: what is left is given up; the process is ending. */
        pthread_detach(async_.thread);
        return;
    }
    async_.running = 0;
    free(async_.ring);
    async_.ring = NULL;
    if (async_.direct_fd > STDERR_FILENO)
        close(async_.direct_fd);
    async_.direct_fd = -1;
}

unsigned long long log_dropped(void)
{
    pthread_mutex_lock(&async_.lock);
    unsigned long long n = async_.dropped;
    pthread_mutex_unlock(&async_.lock);
    return n;
}

/* Writes one whole line now if that cannot block, else queues it (what a
 * partial write left), or counts it dropped; never waits for stderr. */
static void enqueue(const char *line, size_t n)
{
    pthread_mutex_lock(&async_.lock);
    if (async_.len == 0 && !async_.writer_busy && async_.direct_fd >= 0) {
        ssize_t w = async_.direct_socket ? send(async_.direct_fd, line, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                                         : write(async_.direct_fd, line, n);
        if (w > 0) {
            line += w;
            n -= (size_t)w;
        }
        if (n == 0) {
            pthread_mutex_unlock(&async_.lock);
            return;
        }
    }
    if (async_.len + n > async_.cap) {
        async_.dropped++;
        async_.dropped_unreported++;
    } else {
        size_t tail = (async_.head + async_.len) % async_.cap, run = async_.cap - tail;
        if (run > n)
            run = n;
        memcpy(async_.ring + tail, line, run);
        memcpy(async_.ring, line + run, n - run);
        async_.len += n;
        pthread_cond_signal(&async_.wake);
    }
    pthread_mutex_unlock(&async_.lock);
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
    if (async_.running && !async_.stopping)
        enqueue(line, n);
    else
        write_all(line, n);
}
