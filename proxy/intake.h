#ifndef FTPSGATE_INTAKE_H
#define FTPSGATE_INTAKE_H
#include <stddef.h>

#include "client.h"
#include "ftp_cmd.h"
#include "linequeue.h"
#include "metrics.h"

/* Which client command line is taken when (RFC 959 §4.1, §4.1.3): one command
 * at a time, so the proxy's own replies never overtake the backend's to
 * pipelined commands; while a transfer runs, the urgent ones (ABOR, STAT,
 * NOOP) are taken at once and the others wait in order, bounded, behind it
 * (an ABOR sent after them is still seen). The owner says what it can take
 * now and runs the commands; the intake reads the lines from the client,
 * under the line cap it sets, and answers the ones the reader discards. */

typedef enum {
    INTAKE_NONE = 0, /* take nothing now (a reply or the backend is awaited, the client does not read) */
    INTAKE_ONE,      /* ready for the next command */
    INTAKE_TRANSFER  /* a transfer runs: urgent commands now, others held */
} intake_mode_t;

typedef struct {
    intake_mode_t (*mode)(void *owner);
    void (*command)(void *owner, const char *line, size_t len);
    /* During a transfer: 1 when the owner took cmd now (ABOR, STAT, NOOP). */
    int (*urgent)(void *owner, const ftp_cmd_t *cmd);
    void (*failed)(void *owner); /* out of memory */
} intake_cbs_t;

typedef struct {
    client_t *client;
    const intake_cbs_t *cbs;
    void *owner;
    linequeue_t held;
    size_t max_line;     /* the longest line held */
    size_t cap;          /* the line cap now */
    metrics_t *metrics;  /* lines_too_long */
    unsigned long long sid;
    const char *peer;    /* for the log (borrowed) */
} intake_t;

void intake_init(intake_t *in, client_t *client, size_t held_max, size_t max_line, const intake_cbs_t *cbs,
                 void *owner);
/* Where discarded lines are logged and counted (borrowed). */
void intake_log_to(intake_t *in, metrics_t *metrics, unsigned long long sid, const char *peer);
/* The line cap from now on (lower before login, client_set_line_cap). */
void intake_set_cap(intake_t *in, size_t cap);
/* Takes and hands out lines for as long as the owner's mode allows. */
void intake_run(intake_t *in);
/* Forgets the held commands (REIN, AUTH, the end); returns their bytes. */
size_t intake_clear(intake_t *in);

#endif
