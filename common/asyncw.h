#ifndef FTPSGATE_ASYNCW_H
#define FTPSGATE_ASYNCW_H
#include <stddef.h>

/* Lines written to a file descriptor by a thread of its own, through a
 * bounded ring, so that whoever produces them (the event loop) never waits
 * for the output: a line that does not fit is dropped and counted, and the
 * thread writes a note saying how many once it has caught up. The log
 * (stderr, log.c) and the transfer audit log (a file, proxy/auditlog.c) are
 * its two users.
 *
 * Order: lines come out in the order they were put, each whole (a line is
 * queued entirely or not at all). With a direct fd, a line is written at once
 * when nothing is queued and a non-blocking write takes it, so lines appear
 * in real time; otherwise it joins the ring behind the others. */

typedef struct asyncw asyncw_t;

typedef struct {
    size_t capacity; /* bytes the ring holds (> 0) */
    int fd;          /* where the thread writes, with blocking writes */
    int close_fd;    /* 1: fd is the writer's (closed when replaced by reopen and at stop) */
    /* >= 0: try a line here first with a write that cannot block (a
     * description of its own with O_NONBLOCK, or a socket with
     * MSG_DONTWAIT when direct_socket); -1: every line goes through the
     * thread (a regular file: O_NONBLOCK means nothing to a disk). */
    int direct_fd;
    int direct_socket;
    /* Optional, on the writer thread once it has caught up after drops:
     * formats a note about `lost` lines into buf (cap bytes), returns its
     * length (0: no note). */
    size_t (*drop_note)(void *ctx, unsigned long long lost, char *buf, size_t cap);
    /* Optional, on the writer thread at the point asyncw_reopen marked: the
     * new fd, or -1 to keep writing to the old one (the callback reports
     * why). */
    int (*reopen)(void *ctx);
    /* Optional, on the writer thread: a write failed with errno err; the
     * lines it carried are counted as dropped. */
    void (*write_failed)(void *ctx, int err);
    void *ctx;
} asyncw_opts_t;

/* Starts the thread. FG_OK, FG_NOMEM, or FG_IO (no thread). */
int asyncw_start(const asyncw_opts_t *opts, asyncw_t **out);

/* Queues n bytes (one or more whole lines, '\n' included). Never waits for
 * the output; thread-safe. FG_OK, or FG_TOO_LONG when they did not fit: then
 * dropped and counted (one line per '\n' in them). */
int asyncw_put(asyncw_t *w, const char *line, size_t n);

/* Asks the thread to call opts.reopen once every byte queued so far is
 * written (to the old fd): what was put before this call goes to the old
 * file, what is put after it to the new one. For log rotation (SIGUSR1). */
void asyncw_reopen(asyncw_t *w);

/* Lines dropped so far (ring full, or a failed write). */
unsigned long long asyncw_dropped(asyncw_t *w);

/* Writes what is queued, waiting up to wait_ms, ends the thread, closes fd
 * (close_fd) and frees w. FG_OK; FG_IO when the output stayed stuck: the
 * rest is given up and the thread left detached with its memory (only at the
 * end of the process). NULL is fine. Nobody may put lines during or after. */
int asyncw_stop(asyncw_t *w, unsigned wait_ms);

#endif
