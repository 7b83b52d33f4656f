#include "intake.h"

#include <stdlib.h>

#include "fgerr.h"
#include "log.h"

void intake_init(intake_t *in, client_t *client, size_t held_max, size_t max_line, const intake_cbs_t *cbs,
                 void *owner)
{
    in->client = client;
    in->cbs = cbs;
    in->owner = owner;
    in->max_line = max_line;
    linequeue_init(&in->held, held_max);
}

void intake_log_to(intake_t *in, metrics_t *metrics, unsigned long long sid, const char *peer)
{
    in->metrics = metrics;
    in->sid = sid;
    in->peer = peer;
}

void intake_set_cap(intake_t *in, size_t cap)
{
    in->cap = cap;
    client_set_line_cap(in->client, cap);
}

size_t intake_clear(intake_t *in)
{
    size_t held = in->held.len;
    linequeue_clear(&in->held);
    return held;
}

/* The oldest command held during a transfer, now that the session is ready. */
static int run_held(intake_t *in)
{
    size_t len = 0;
    char *line = malloc(in->max_line + 1);
    if (!line || linequeue_pop(&in->held, line, in->max_line, &len) != FG_OK) {
        free(line);
        in->cbs->failed(in->owner);
        return -1;
    }
    in->cbs->command(in->owner, line, len);
    free(line);
    return 0;
}

/* A line the reader discarded: answered, and the session goes on. */
static void rejected(intake_t *in, int rc)
{
    if (rc == FG_TOO_LONG) {
        LOG_INFO(in->sid, in->peer, "command line over the %zu byte cap discarded", in->cap);
        METRIC_INC(in->metrics, lines_too_long);
        client_reply(in->client, 500, "Command line too long");
    } else {
        client_reply(in->client, 500, "Invalid character in command line");
    }
}

/* A line during a transfer: urgent ones now, the others held in order. */
static int during_transfer(intake_t *in, const char *line, size_t len)
{
    ftp_cmd_t cmd;
    if (ftp_cmd_parse(line, len, &cmd) == FG_OK && in->cbs->urgent(in->owner, &cmd))
        return 0;
    if (linequeue_push(&in->held, line, len) != FG_OK) {
        in->cbs->failed(in->owner);
        return -1;
    }
    return 0;
}

void intake_run(intake_t *in)
{
    intake_mode_t mode;
    while ((mode = in->cbs->mode(in->owner)) == INTAKE_ONE && !linequeue_empty(&in->held))
        if (run_held(in) != 0)
            return;
    while ((mode = in->cbs->mode(in->owner)) != INTAKE_NONE) {
        if (mode == INTAKE_ONE && !linequeue_empty(&in->held))
            break; /* held commands first: the next intake_run takes them */
        if (mode == INTAKE_TRANSFER && linequeue_full(&in->held))
            break; /* bounded: the client's further lines wait in its buffer */
        const char *line = NULL;
        size_t len = 0;
        int rc = client_take_line(in->client, &line, &len);
        if (rc == FG_NEED_MORE)
            break;
        if (rc != FG_OK) {
            rejected(in, rc);
            continue;
        }
        if (mode == INTAKE_TRANSFER) {
            if (during_transfer(in, line, len) != 0)
                return;
            continue;
        }
        in->cbs->command(in->owner, line, len);
    }
}
