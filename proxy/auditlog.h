#ifndef FTPSGATE_AUDITLOG_H
#define FTPSGATE_AUDITLOG_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auditfmt.h"
#include "ftp_cmd.h"

/* The transfer audit log (log.transfer_log): one JSON line per transfer
 * (auditfmt.h), appended to a file by a writer thread of its own through a
 * bounded buffer (asyncw.h), so that writing never blocks the event loop,
 * not even on a slow disk. A record that does not fit is dropped and counted
 * (auditlog_dropped, for the metrics), and once the writer catches up the
 * file gets {"ts":...,"event":"records_dropped","count":N}, so that a reader
 * of the file sees the gap. Write errors (a full disk) count as drops and
 * are logged, at most once a minute.
 *
 * Rotation (logrotate): the file is renamed, then SIGUSR1 calls
 * auditlog_reopen; records made before go to the renamed file, records made
 * after to a new file opened by the same path (append, created 0640). A
 * reopen that fails is logged with the path and the old file stays in use,
 * so nothing is lost.
 *
 * Threads: auditlog_write may be called from any thread; the others from
 * the one that opened it. Close it before log_stop_async (the writer thread
 * logs its errors through log.h). */

#define AUDITLOG_DEFAULT_CAPACITY (1024u * 1024u) /* a few thousand records */

typedef struct auditlog auditlog_t;

/* Opens path now (append; created with mode 0640), in the caller's thread:
 * at start-up, so that a path that cannot be opened stops the start with
 * err = "log.transfer_log PATH: cannot open: REASON". FG_OK, FG_IO, FG_NOMEM. */
int auditlog_open(const char *path, size_t capacity, auditlog_t **out, char *err, size_t errlen);

/* Formats r and queues the line; never waits. NULL a is fine (no log). */
void auditlog_write(auditlog_t *a, const audit_record_t *r);

/* One transfer as it ended (the data plan's report, dataplan.h): the command,
 * its path, which way the bytes went and how many, when it started, the final
 * reply code the client got, and the data connection's TLS. */
typedef struct {
    const char *command;          /* "RETR", "STOR", "LIST", ... */
    const char *path;             /* the argument as the client sent it; "" when none */
    size_t path_len;
    int upload, listing;
    uint64_t bytes;
    uint64_t started_ms, ended_ms; /* loop time (uv_now) */
    int reply;
    int tls, tls_resumed;         /* tls 0: clear (or no data connection) */
    const char *tls_version, *tls_cipher;
} auditlog_transfer_t;

/* Whose transfer it was: the session's side of the record (borrowed). */
typedef struct {
    unsigned long long session;
    const char *listener, *client; /* the listener's name; "ip:port" of the real client */
    const char *user;              /* the name the backend received, raw; NULL before login */
    size_t user_len;
    const struct sockaddr *backend; /* the backend control peer; NULL when none is connected */
} auditlog_who_t;

/* The record of transfer t of who, queued as auditlog_write does. NULL a is fine. */
void auditlog_transfer(auditlog_t *a, const auditlog_who_t *who, const auditlog_transfer_t *t);

/* A transfer command refused before it reached the backend (521, read-only
 * ...), recorded too: reply code, no bytes. loop_ms: uv_now. Other
 * commands are not recorded. NULL a is fine. */
void auditlog_refused(auditlog_t *a, const auditlog_who_t *who, const ftp_cmd_t *cmd, int code, uint64_t loop_ms);

/* SIGUSR1: reopen by path after what is queued now (see above). */
void auditlog_reopen(auditlog_t *a);

/* Records dropped so far. */
unsigned long long auditlog_dropped(auditlog_t *a);

/* The configured path. */
const char *auditlog_path(const auditlog_t *a);

/* Writes what is queued (waiting up to wait_ms), closes the file, frees a.
 * NULL is fine. */
void auditlog_close(auditlog_t *a, unsigned wait_ms);

#endif
