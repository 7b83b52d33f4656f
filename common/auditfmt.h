#ifndef FTPSGATE_AUDITFMT_H
#define FTPSGATE_AUDITFMT_H
#include <stddef.h>
#include <stdint.h>

/* One transfer of the audit log (log.transfer_log) as one JSON object on one
 * line. Pure: the caller passes the time. The keys, always all present and in
 * this order (README.md, "Audit log"):
 *   ts           when the transfer ended: "2026-11-27T02:43:04.450Z" (UTC, ms)
 *   session      the session id of the log lines
 *   listener     the listener's name
 *   client       "ip:port" of the client (the real one behind a PROXY header)
 *   user         the login name the backend received; null before login
 *   backend      "ip:port" of the backend control connection; null if none
 *   command      RETR STOR STOU APPE LIST NLST MLSD
 *   path         the command's argument as the client sent it; null if none
 *   direction    "download", "upload" or "listing"
 *   bytes        data bytes moved for the transfer (its direction)
 *   duration_ms  from the transfer command to its final reply
 *   reply        the final reply code the client got; null if none (the
 *                session ended first)
 *   tls          null for a clear data connection (PROT C), else
 *                {"version": "TLSv1.3", "cipher": "...", "resumed": true}
 * and "path_truncated": true after them when path was cut (see below).
 *
 * There is no password field: a record cannot carry one. Strings are bytes
 * from peers: printable ASCII and valid UTF-8 text (without C1 controls) are
 * kept, every other byte, and the backslash itself, is written as the four
 * characters \xNN (as the text log does), so the original bytes can be
 * recovered exactly and no byte can break the line or the JSON. A path is cut
 * at AUDITFMT_PATH_MAX characters of output, ending in "..."; every other
 * field is bounded by the configuration (names, addresses, a 255-byte login)
 * so that a line never exceeds AUDITFMT_LINE_MAX. */

#define AUDITFMT_LINE_MAX 8192u
#define AUDITFMT_PATH_MAX 4096u

typedef enum { AUDIT_DOWNLOAD = 0, AUDIT_UPLOAD, AUDIT_LISTING } audit_direction_t;

typedef struct {
    int64_t ts_ms;                /* wall clock, ms since the Unix epoch */
    unsigned long long session;
    const char *listener;         /* NUL-terminated */
    const char *client;           /* NUL-terminated, "ip:port" */
    const char *user;             /* bytes as received; NULL: not logged in */
    size_t user_len;
    const char *backend;          /* NUL-terminated, "ip:port"; NULL: none */
    const char *command;          /* NUL-terminated verb */
    const char *path;             /* bytes as received; NULL: no argument */
    size_t path_len;
    audit_direction_t direction;
    uint64_t bytes;
    uint64_t duration_ms;
    int reply;                    /* 100..599; 0: none */
    int tls;                      /* the data connection was under TLS */
    const char *tls_version;      /* NUL-terminated, e.g. "TLSv1.3"; NULL: unknown */
    const char *tls_cipher;       /* NUL-terminated; NULL: unknown */
    int tls_resumed;
} audit_record_t;

/* Writes the line, '\n' included (not NUL-terminated), into out. Returns its
 * length, or FG_RANGE when cap is below AUDITFMT_LINE_MAX. */
int auditfmt_line(const audit_record_t *r, char *out, size_t cap);

/* The note the audit log writes when records were lost (the buffer was full
 * or a write failed): {"ts":"...","event":"records_dropped","count":N}.
 * Returns its length with '\n', or 0 when cap is too small. */
size_t auditfmt_dropped(int64_t ts_ms, unsigned long long count, char *out, size_t cap);

#endif
