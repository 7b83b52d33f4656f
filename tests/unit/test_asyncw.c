/* Unit tests for common/asyncw.c, the bounded line writer of the log and the
 * audit log: order and completeness, drops counted and noted when the output
 * is stuck (a pipe nobody reads), reopen at the exact point it was asked for
 * (log rotation: rename, reopen), a failed reopen keeps the old file, and
 * failed writes (/dev/full) reported and counted. Real files and pipes. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "asyncw.h"
#include "check.h"
#include "fgerr.h"

static char dir[] = "/tmp/test_asyncw.XXXXXX";

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(8 << 20);
    size_t n = buf ? fread(buf, 1, (8 << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

/* "line 000000\n" ... for first..last-1 */
static int expect_lines(const char *text, size_t len, int first, int last)
{
    char want[32];
    size_t off = 0;
    for (int i = first; i < last; i++) {
        int n = snprintf(want, sizeof want, "line %06d\n", i);
        if (off + (size_t)n > len || memcmp(text + off, want, (size_t)n) != 0) {
            fprintf(stderr, "  line %d missing or wrong at offset %zu\n", i, off);
            return 0;
        }
        off += (size_t)n;
    }
    if (off != len)
        fprintf(stderr, "  %zu bytes after line %d\n", len - off, last - 1);
    return off == len;
}

static void put_lines(asyncw_t *w, int first, int last)
{
    char line[32];
    for (int i = first; i < last; i++) {
        int n = snprintf(line, sizeof line, "line %06d\n", i);
        CHECK_EQ_INT(asyncw_put(w, line, (size_t)n), FG_OK);
    }
}

static void test_order(void)
{
    char path[64];
    snprintf(path, sizeof path, "%s/order", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    asyncw_opts_t o = {.capacity = 1 << 20, .fd = fd, .close_fd = 1, .direct_fd = -1};
    asyncw_t *w;
    CHECK_EQ_INT(asyncw_start(&o, &w), FG_OK);
    put_lines(w, 0, 20000); /* 240 KB through a 1 MiB ring */
    CHECK_EQ_INT(asyncw_dropped(w), 0);
    CHECK_EQ_INT(asyncw_stop(w, 5000), FG_OK);
    size_t len;
    char *text = slurp(path, &len);
    CHECK(text != NULL && expect_lines(text, len, 0, 20000));
    free(text);
    CHECK_EQ_INT(asyncw_stop(NULL, 0), FG_OK);
}

/* Reads a pipe to its end, into a buffer. */
typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} drain_t;

static void *drain_main(void *arg)
{
    drain_t *d = arg;
    for (;;) {
        if (d->len == d->cap)
            return NULL;
        ssize_t n = read(d->fd, d->buf + d->len, d->cap - d->len);
        if (n <= 0)
            return NULL;
        d->len += (size_t)n;
    }
}

static size_t note(void *ctx, unsigned long long lost, char *buf, size_t cap)
{
    (void)ctx;
    int n = snprintf(buf, cap, "dropped %llu\n", lost);
    return n > 0 ? (size_t)n : 0;
}

static void test_drops(void)
{
    int p[2];
    CHECK_EQ_INT(pipe(p), 0);
    asyncw_opts_t o = {.capacity = 4096, .fd = p[1], .close_fd = 1, .direct_fd = -1, .drop_note = note};
    asyncw_t *w;
    CHECK_EQ_INT(asyncw_start(&o, &w), FG_OK);
    /* Nobody reads: the pipe (64 KiB) and the ring (4 KiB) fill, then lines
     * are dropped without the caller ever waiting. */
    char line[32];
    int put = 0, refused = 0;
    for (int i = 0; i < 100000 && refused < 100; i++, put++) {
        int n = snprintf(line, sizeof line, "line %06d\n", i);
        if (asyncw_put(w, line, (size_t)n) == FG_TOO_LONG)
            refused++;
    }
    CHECK_EQ_INT(refused, 100);
    CHECK_EQ_INT(asyncw_dropped(w), 100);
    drain_t d = {.fd = p[0], .cap = 4 << 20};
    d.buf = malloc(d.cap);
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, drain_main, &d), 0);
    CHECK_EQ_INT(asyncw_stop(w, 10000), FG_OK); /* closes p[1]: the drain sees the end */
    pthread_join(t, NULL);
    close(p[0]);

    /* every line that was kept is whole and in order; the notes add up */
    int kept = 0, last = -1, ordered = 1;
    unsigned long long noted = 0;
    for (char *s = d.buf, *e; s < d.buf + d.len; s = e + 1) {
        e = memchr(s, '\n', (size_t)(d.buf + d.len - s));
        if (!e) {
            ordered = 0;
            break;
        }
        unsigned long long k;
        int num;
        if (sscanf(s, "dropped %llu", &k) == 1) {
            noted += k;
        } else if (sscanf(s, "line %d", &num) == 1 && e - s == 11 && num > last) {
            last = num;
            kept++;
        } else {
            ordered = 0;
        }
    }
    CHECK(ordered);
    CHECK_EQ_INT(kept + 100, put);
    CHECK_EQ_INT(noted, 100);
    free(d.buf);
}

typedef struct {
    const char *path;
    int calls, fail;
} reopen_ctx_t;

static int reopen_cb(void *ctx)
{
    reopen_ctx_t *r = ctx;
    r->calls++;
    return r->fail ? -1 : open(r->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

static void test_reopen(void)
{
    char path[64], rotated[64];
    snprintf(path, sizeof path, "%s/audit.log", dir);
    snprintf(rotated, sizeof rotated, "%s/audit.log.1", dir);
    reopen_ctx_t r = {.path = path};
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    asyncw_opts_t o = {.capacity = 1 << 16, .fd = fd, .close_fd = 1, .direct_fd = -1, .reopen = reopen_cb, .ctx = &r};
    asyncw_t *w;
    CHECK_EQ_INT(asyncw_start(&o, &w), FG_OK);
    put_lines(w, 0, 3000);
    CHECK_EQ_INT(rename(path, rotated), 0); /* logrotate renames ... */
    asyncw_reopen(w);                       /* ... then signals */
    put_lines(w, 3000, 5000);
    r.fail = 0;
    CHECK_EQ_INT(asyncw_stop(w, 5000), FG_OK);
    CHECK_EQ_INT(r.calls, 1);
    size_t len;
    char *text = slurp(rotated, &len);
    CHECK(text != NULL && expect_lines(text, len, 0, 3000)); /* everything put before the reopen */
    free(text);
    text = slurp(path, &len);
    CHECK(text != NULL && expect_lines(text, len, 3000, 5000)); /* everything after */
    free(text);

    /* a reopen that fails keeps the old file: nothing is lost */
    unlink(rotated);
    r.calls = 0;
    r.fail = 1;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    o.fd = fd;
    CHECK_EQ_INT(asyncw_start(&o, &w), FG_OK);
    put_lines(w, 0, 10);
    CHECK_EQ_INT(rename(path, rotated), 0);
    asyncw_reopen(w);
    put_lines(w, 10, 20);
    CHECK_EQ_INT(asyncw_stop(w, 5000), FG_OK);
    CHECK_EQ_INT(r.calls, 1);
    text = slurp(rotated, &len);
    CHECK(text != NULL && expect_lines(text, len, 0, 20));
    free(text);
    unlink(rotated);
    unlink(path);
}

static int failures, last_err;
static void on_fail(void *ctx, int err)
{
    (void)ctx;
    failures++;
    last_err = err;
}

static void test_write_failure(void)
{
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    asyncw_opts_t o = {.capacity = 1 << 16, .fd = fd, .close_fd = 1, .direct_fd = -1, .write_failed = on_fail};
    asyncw_t *w;
    CHECK_EQ_INT(asyncw_start(&o, &w), FG_OK);
    put_lines(w, 0, 5);
    for (int i = 0; i < 5000 && asyncw_dropped(w) < 5; i++) /* the writer's time: 5 s at most */
        usleep(1000);
    CHECK_EQ_INT(asyncw_dropped(w), 5); /* the lines a failed write carried are dropped */
    CHECK_EQ_INT(asyncw_stop(w, 5000), FG_OK);
    CHECK(failures >= 1);
    CHECK_EQ_INT(last_err, ENOSPC);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_order();
    test_drops();
    test_reopen();
    test_write_failure();
    char path[64];
    snprintf(path, sizeof path, "%s/order", dir);
    unlink(path);
    rmdir(dir);
    return check_report();
}
