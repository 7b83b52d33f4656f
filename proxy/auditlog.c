#include "auditlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "asyncw.h"
#include "fgerr.h"
#include "log.h"
#include "netaddr.h"

#define AUDITLOG_MODE 0640              /* user names and file paths: not for everyone */
#define AUDITLOG_ERROR_INTERVAL_S 60    /* a failing disk is logged once a minute, not per record */

struct auditlog {
    char *path;
    asyncw_t *w;
    time_t last_error; /* writer thread only */
};

static int open_log(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, AUDITLOG_MODE);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writer thread. */
static size_t on_drop_note(void *ctx, unsigned long long lost, char *buf, size_t cap)
{
    (void)ctx;
    return auditfmt_dropped(now_ms(), lost, buf, cap);
}

/* Writer thread: SIGUSR1's reopen, at its point in the stream. */
static int on_reopen(void *ctx)
{
    auditlog_t *a = ctx;
    int fd = open_log(a->path);
    if (fd < 0)
        LOG_ERROR(0, NULL, "log.transfer_log %s: cannot reopen: %s; still writing to the file it had open", a->path,
                  strerror(errno));
    else
        LOG_INFO(0, NULL, "log.transfer_log %s: reopened", a->path);
    return fd;
}

/* Writer thread. */
static void on_write_failed(void *ctx, int err)
{
    auditlog_t *a = ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (a->last_error != 0 && ts.tv_sec - a->last_error < AUDITLOG_ERROR_INTERVAL_S)
        return;
    a->last_error = ts.tv_sec != 0 ? ts.tv_sec : 1;
    LOG_ERROR(0, NULL, "log.transfer_log %s: write failed: %s; records are lost (counted)", a->path, strerror(err));
}

int auditlog_open(const char *path, size_t capacity, auditlog_t **out, char *err, size_t errlen)
{
    *out = NULL;
    auditlog_t *a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(path))) {
        free(a);
        snprintf(err, errlen, "log.transfer_log %s: out of memory", path);
        return FG_NOMEM;
    }
    int fd = open_log(path);
    if (fd < 0) {
        snprintf(err, errlen, "log.transfer_log %s: cannot open: %s", path, strerror(errno));
        free(a->path);
        free(a);
        return FG_IO;
    }
    asyncw_opts_t o = {
        .capacity = capacity ? capacity : AUDITLOG_DEFAULT_CAPACITY,
        .fd = fd,
        .close_fd = 1,
        .direct_fd = -1, /* a file: O_NONBLOCK means nothing to a disk, so always the thread */
        .drop_note = on_drop_note,
        .reopen = on_reopen,
        .write_failed = on_write_failed,
        .ctx = a,
    };
    int rc = asyncw_start(&o, &a->w);
    if (rc != FG_OK) {
        snprintf(err, errlen, "log.transfer_log %s: cannot start its writer: %s", path, fg_strerror(rc));
        close(fd);
        free(a->path);
        free(a);
        return rc;
    }
    *out = a;
    return FG_OK;
}

void auditlog_write(auditlog_t *a, const audit_record_t *r)
{
    char line[AUDITFMT_LINE_MAX];
    if (!a)
        return;
    int n = auditfmt_line(r, line, sizeof line);
    if (n > 0)
        asyncw_put(a->w, line, (size_t)n); /* a drop is counted there */
}

void auditlog_transfer(auditlog_t *a, const auditlog_who_t *who, const auditlog_transfer_t *t)
{
    if (!a)
        return;
    char backend[72] = "";
    if (who->backend)
        netaddr_format(who->backend, backend, sizeof backend);
    audit_record_t r = {
        .ts_ms = now_ms(),
        .session = who->session,
        .listener = who->listener,
        .client = who->client,
        .user = who->user,
        .user_len = who->user ? who->user_len : 0,
        .backend = who->backend ? backend : NULL,
        .command = t->command,
        .path = t->path,
        .path_len = t->path_len,
        .direction = t->listing ? AUDIT_LISTING : t->upload ? AUDIT_UPLOAD : AUDIT_DOWNLOAD,
        .bytes = t->bytes,
        .duration_ms = t->ended_ms - t->started_ms,
        .reply = t->reply,
        .tls = t->tls,
        .tls_version = t->tls_version,
        .tls_cipher = t->tls_cipher,
        .tls_resumed = t->tls_resumed,
    };
    auditlog_write(a, &r);
}

void auditlog_refused(auditlog_t *a, const auditlog_who_t *who, const ftp_cmd_t *cmd, int code, uint64_t loop_ms)
{
    if (!a || !ftp_cmd_is_transfer(cmd->id))
        return;
    auditlog_transfer_t t = {
        .command = cmd->verb,
        .path = cmd->arg, /* NULL: no argument */
        .path_len = cmd->arg ? cmd->arg_len : 0,
        .upload = ftp_cmd_is_upload(cmd->id),
        .listing = cmd->id == FTP_CMD_LIST || cmd->id == FTP_CMD_NLST || cmd->id == FTP_CMD_MLSD,
        .started_ms = loop_ms,
        .ended_ms = loop_ms,
        .reply = code,
    };
    auditlog_transfer(a, who, &t);
}

void auditlog_reopen(auditlog_t *a)
{
    if (a)
        asyncw_reopen(a->w);
}

unsigned long long auditlog_dropped(auditlog_t *a)
{
    return a ? asyncw_dropped(a->w) : 0;
}

const char *auditlog_path(const auditlog_t *a)
{
    return a ? a->path : NULL;
}

void auditlog_close(auditlog_t *a, unsigned wait_ms)
{
    if (!a)
        return;
    if (asyncw_stop(a->w, wait_ms) != FG_OK) {
        /* the disk is stuck: the writer keeps a (its ctx); the process is ending */
        LOG_ERROR(0, NULL, "log.transfer_log %s: records still queued were given up", a->path);
        return;
    }
    free(a->path);
    free(a);
}
