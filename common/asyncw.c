#include "asyncw.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fgerr.h"

#define ASYNCW_CHUNK (64u * 1024u) /* bytes the thread takes out of the ring per write */
#define ASYNCW_NOTE_MAX 512u

struct asyncw {
    asyncw_opts_t o;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    char *ring;
    size_t head, len;             /* bytes [head, head+len) modulo capacity */
    uint64_t queued, taken;       /* bytes ever queued / taken out by the thread */
    uint64_t reopen_at;           /* reopen once taken reaches this */
    int reopen_pending;
    unsigned long long dropped, dropped_unreported;
    int stopping, writer_busy;
};

/* 0, or errno of the write that failed. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno != 0 ? errno : EIO;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static unsigned long long count_lines(const char *p, size_t n)
{
    unsigned long long k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] == '\n';
    return k ? k : (n ? 1 : 0);
}

/* A failed write loses the lines it carried: counted as dropped. */
static void write_out(asyncw_t *w, const char *buf, size_t n)
{
    int err = write_all(w->o.fd, buf, n);
    if (err == 0)
        return;
    pthread_mutex_lock(&w->lock);
    unsigned long long lost = count_lines(buf, n);
    w->dropped += lost;
    w->dropped_unreported += lost;
    pthread_mutex_unlock(&w->lock);
    if (w->o.write_failed)
        w->o.write_failed(w->o.ctx, err);
}

static void do_reopen(asyncw_t *w)
{
    int fd = w->o.reopen ? w->o.reopen(w->o.ctx) : -1;
    if (fd < 0)
        return;
    if (w->o.close_fd && w->o.fd >= 0 && w->o.fd != fd)
        close(w->o.fd);
    w->o.fd = fd;
}

static void *writer_main(void *arg)
{
    asyncw_t *w = arg;
    char *out = malloc(ASYNCW_CHUNK), note[ASYNCW_NOTE_MAX];
    if (!out)
        return NULL;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        int reopen_now = w->reopen_pending && w->taken == w->reopen_at;
        while (w->len == 0 && !w->dropped_unreported && !w->stopping && !reopen_now) {
            pthread_cond_wait(&w->wake, &w->lock);
            reopen_now = w->reopen_pending && w->taken == w->reopen_at;
        }
        if (reopen_now) {
            w->reopen_pending = 0;
            w->writer_busy = 1;
            pthread_mutex_unlock(&w->lock);
            do_reopen(w);
            pthread_mutex_lock(&w->lock);
            w->writer_busy = 0;
            continue;
        }
        if (w->len == 0 && !w->dropped_unreported)
            break; /* stopping, all written */
        /* Up to a chunk, but never past a pending reopen point. */
        size_t limit = ASYNCW_CHUNK;
        if (w->reopen_pending && w->reopen_at - w->taken < limit)
            limit = (size_t)(w->reopen_at - w->taken);
        size_t n = 0;
        while (n < limit && w->len > 0) {
            size_t run = w->o.capacity - w->head;
            if (run > w->len)
                run = w->len;
            if (run > limit - n)
                run = limit - n;
            memcpy(out + n, w->ring + w->head, run);
            n += run;
            w->head = (w->head + run) % w->o.capacity;
            w->len -= run;
        }
        w->taken += n;
        unsigned long long lost = w->len == 0 ? w->dropped_unreported : 0;
        if (lost)
            w->dropped_unreported = 0;
        w->writer_busy = 1;
        pthread_mutex_unlock(&w->lock);
        if (n > 0)
            write_out(w, out, n);
        if (lost && w->o.drop_note) {
            size_t m = w->o.drop_note(w->o.ctx, lost, note, sizeof note);
            if (m > 0 && m <= sizeof note) {
                int err = write_all(w->o.fd, note, m);
                if (err && w->o.write_failed)
                    w->o.write_failed(w->o.ctx, err);
            }
        }
        pthread_mutex_lock(&w->lock);
        w->writer_busy = 0;
    }
    pthread_mutex_unlock(&w->lock);
    free(out);
    return NULL;
}

int asyncw_start(const asyncw_opts_t *opts, asyncw_t **out)
{
    *out = NULL;
    if (opts == NULL || opts->capacity == 0)
        return FG_STATE;
    asyncw_t *w = calloc(1, sizeof *w);
    if (!w)
        return FG_NOMEM;
    w->o = *opts;
    w->ring = malloc(opts->capacity);
    if (!w->ring) {
        free(w);
        return FG_NOMEM;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w->ring);
        free(w);
        return FG_IO;
    }
    *out = w;
    return FG_OK;
}

int asyncw_put(asyncw_t *w, const char *line, size_t n)
{
    int rc = FG_OK;
    pthread_mutex_lock(&w->lock);
    if (w->len == 0 && !w->writer_busy && w->o.direct_fd >= 0) {
        ssize_t k = w->o.direct_socket ? send(w->o.direct_fd, line, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                                       : write(w->o.direct_fd, line, n);
        if (k > 0) {
            line += k;
            n -= (size_t)k;
        }
        if (n == 0) {
            pthread_mutex_unlock(&w->lock);
            return FG_OK;
        }
    }
    if (w->len + n > w->o.capacity) {
        unsigned long long lost = count_lines(line, n);
        w->dropped += lost;
        w->dropped_unreported += lost;
        rc = FG_TOO_LONG;
    } else {
        size_t tail = (w->head + w->len) % w->o.capacity, run = w->o.capacity - tail;
        if (run > n)
            run = n;
        memcpy(w->ring + tail, line, run);
        memcpy(w->ring, line + run, n - run);
        w->len += n;
        w->queued += n;
    }
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void asyncw_reopen(asyncw_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->reopen_at = w->queued;
    w->reopen_pending = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

unsigned long long asyncw_dropped(asyncw_t *w)
{
    pthread_mutex_lock(&w->lock);
    unsigned long long n = w->dropped;
    pthread_mutex_unlock(&w->lock);
    return n;
}

int asyncw_stop(asyncw_t *w, unsigned wait_ms)
{
    if (!w)
        return FG_OK;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_timedjoin_np(w->thread, NULL, &until) != 0) {
        /* The output is stuck: what is left is given up; the process is ending. */
        pthread_detach(w->thread);
        return FG_IO;
    }
    if (w->o.close_fd && w->o.fd >= 0)
        close(w->o.fd);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w->ring);
    free(w);
    return FG_OK;
}
