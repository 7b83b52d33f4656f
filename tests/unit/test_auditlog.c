/* Unit tests for proxy/auditlog.c, the audit log writer, with real files:
 * records appended as JSON lines in order; logrotate's rename then reopen
 * puts the records made before into the renamed file and the later ones
 * into a new file at the path (mode 0640); a reopen that fails keeps the old
 * file; an open that fails names the path; no record carries a password. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auditlog.h"
#include "check.h"
#include "fgerr.h"
#include "log.h"

static char dir[] = "/tmp/test_auditlog.XXXXXX";

static void record(auditlog_t *a, unsigned long long session, const char *path)
{
    audit_record_t r;
    memset(&r, 0, sizeof r);
    r.ts_ms = 1795747384450LL;
    r.session = session;
    r.listener = "l1";
    r.client = "127.0.0.1:40000";
    r.user = "alice";
    r.user_len = 5;
    r.backend = "127.0.0.1:2121";
    r.command = "STOR";
    r.path = path;
    r.path_len = strlen(path);
    r.direction = AUDIT_UPLOAD;
    r.bytes = 100 + session;
    r.duration_ms = 7;
    r.reply = 226;
    auditlog_write(a, &r);
}

/* The file's records: their session numbers, in order, as JSON says. */
static int sessions_of(const char *path, unsigned long long *out, int max)
{
    FILE *f = fopen(path, "r");
    char buf[9000];
    int n = 0;
    if (!f)
        return -1;
    while (fgets(buf, sizeof buf, f)) {
        json_error_t e;
        json_t *j = json_loads(buf, JSON_REJECT_DUPLICATES, &e);
        CHECK(j != NULL);
        if (!j)
            continue;
        CHECK(json_object_get(j, "password") == NULL);
        if (n < max)
            out[n] = (unsigned long long)json_integer_value(json_object_get(j, "session"));
        n++;
        json_decref(j);
    }
    fclose(f);
    return n;
}

static void expect_sessions(const char *path, unsigned long long first, unsigned long long last)
{
    unsigned long long got[64];
    int n = sessions_of(path, got, 64);
    if (n != (int)(last - first + 1))
        fprintf(stderr, "  %s: %d records, expected %llu\n", path, n, last - first + 1);
    CHECK_EQ_INT(n, last - first + 1);
    for (int i = 0; i < n && i < 64; i++)
        CHECK_EQ_INT(got[i], first + (unsigned long long)i);
}

static void test_rotate(void)
{
    char path[96], rotated[96], err[256] = "";
    snprintf(path, sizeof path, "%s/transfers.log", dir);
    snprintf(rotated, sizeof rotated, "%s/transfers.log.1", dir);
    auditlog_t *a = NULL;
    CHECK_EQ_INT(auditlog_open(path, 0, &a, err, sizeof err), FG_OK);
    if (!a)
        return;
    CHECK_STR(auditlog_path(a), path);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);

    for (unsigned long long s = 1; s <= 3; s++)
        record(a, s, "/up/a.bin");
    CHECK_EQ_INT(rename(path, rotated), 0); /* logrotate: rename ... */
    auditlog_reopen(a);                     /* ... postrotate: SIGUSR1 */
    for (unsigned long long s = 4; s <= 5; s++)
        record(a, s, "/up/b.bin");
    CHECK_EQ_INT(auditlog_dropped(a), 0);
    auditlog_close(a, 5000);

    expect_sessions(rotated, 1, 3);
    expect_sessions(path, 4, 5);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);

    /* appending: a second open adds to the file */
    CHECK_EQ_INT(auditlog_open(path, 0, &a, err, sizeof err), FG_OK);
    record(a, 6, "/up/c.bin");
    auditlog_close(a, 5000);
    expect_sessions(path, 4, 6);
    unlink(path);
    unlink(rotated);
}

static void test_reopen_fails(void)
{
    char sub[64], path[128], moved[96], err[256] = "";
    snprintf(sub, sizeof sub, "%s/gone", dir);
    snprintf(path, sizeof path, "%s/transfers.log", sub);
    snprintf(moved, sizeof moved, "%s/kept.log", dir);
    CHECK_EQ_INT(mkdir(sub, 0700), 0);
    auditlog_t *a = NULL;
    CHECK_EQ_INT(auditlog_open(path, 0, &a, err, sizeof err), FG_OK);
    if (!a)
        return;
    record(a, 1, "/x");
    CHECK_EQ_INT(rename(path, moved), 0);
    CHECK_EQ_INT(rmdir(sub), 0); /* the path cannot be created again */
    auditlog_reopen(a);          /* logged; the old file stays in use */
    record(a, 2, "/y");
    auditlog_close(a, 5000);
    expect_sessions(moved, 1, 2);
    unlink(moved);
}

static void test_open_fails(void)
{
    char err[256] = "";
    auditlog_t *a = (auditlog_t *)1;
    CHECK_EQ_INT(auditlog_open("/nonexistent-ftpsgate-dir/transfers.log", 0, &a, err, sizeof err), FG_IO);
    CHECK(a == NULL);
    CHECK_STR(err, "log.transfer_log /nonexistent-ftpsgate-dir/transfers.log: cannot open: No such file or directory");
    /* NULL is "no audit log": every call is a no-op */
    auditlog_write(NULL, NULL);
    auditlog_reopen(NULL);
    CHECK_EQ_INT(auditlog_dropped(NULL), 0);
    auditlog_close(NULL, 0);
}

int main(void)
{
    umask(022);
    log_setup(LOG_LEVEL_ERROR, 0);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_rotate();
    test_reopen_fails();
    test_open_fails();
    rmdir(dir);
    return check_report();
}
