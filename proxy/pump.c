#include "pump.h"

#include <stdlib.h>
#include <string.h>

#include "fgerr.h"

static void on_rate_timer(uv_timer_t *t);

void pump_init(pump_t *p, uv_loop_t *loop, void *owner)
{
    memset(p, 0, sizeof *p);
    p->owner = owner;
    uv_timer_init(loop, &p->rate_timer);
    p->rate_timer.data = p;
}

static void on_rate_timer_closed(uv_handle_t *h)
{
    pump_t *p = h->data;
    p->closed(p->owner);
}

void pump_close(pump_t *p, void (*closed)(void *owner))
{
    if (uv_is_closing((uv_handle_t *)&p->rate_timer))
        return;
    p->closed = closed;
    uv_close((uv_handle_t *)&p->rate_timer, on_rate_timer_closed);
}

void pump_release(pump_t *p)
{
    free(p->kept);
    p->kept = NULL;
    p->kept_len = 0;
}

void pump_set_source(pump_t *p, tstream_t *source)
{
    p->source = source;
}

void pump_stream_gone(pump_t *p, const tstream_t *s)
{
    if (p->source == s)
        p->source = NULL;
    if (p->sink == s)
        p->sink = NULL;
}

static void pump_pause_if_full(pump_t *p)
{
    if (p->source && p->sink && tstream_queued(p->sink) > TSTREAM_HIGH_MARK)
        tstream_pause(p->source);
}

void pump_set_limits(pump_t *p, uint64_t rate, uint64_t max_bytes)
{
    ratelimit_init(&p->rate, rate, uv_hrtime());
    p->rate_bps = rate;
    p->max_bytes = max_bytes;
}

/* The source is paused for the rate: the timer runs until tokens are there. */
static void pump_rate_wait(pump_t *p, uint64_t now_ns)
{
    uv_handle_t *h = (uv_handle_t *)&p->rate_timer;
    if (!p->rate_paused || uv_is_active(h) || uv_is_closing(h))
        return;
    /* Always a timer while paused: only it resumes a rate-paused source. The
     * tokens earned since the pause may already pay the debt (ns 0); without
     * a timer then, the source stayed paused for good (a limited transfer
     * stalled after a few MiB: test_rate_limit). */
    uint64_t ns = ratelimit_wait_ns(&p->rate, now_ns, 1);
    uv_timer_start(&p->rate_timer, on_rate_timer, (ns + 999999) / 1000000, 0);
}

static void on_rate_timer(uv_timer_t *t)
{
    pump_t *p = t->data;
    uint64_t now = uv_hrtime();
    if (ratelimit_available(&p->rate, now) == 0) {
        pump_rate_wait(p, now);
        return;
    }
    p->rate_paused = 0;
    if (p->source && !p->ended && (!p->sink || tstream_queued(p->sink) <= TSTREAM_HIGH_MARK))
        tstream_resume(p->source);
}

/* The bucket is empty (or in debt after a read larger than the tokens):
 * the source waits; nothing more is read, so memory stays flat. */
static void pump_charge(pump_t *p, size_t len, uint64_t now_ns)
{
    if (p->rate_bps == 0)
        return;
    ratelimit_consume(&p->rate, now_ns, len);
    if (ratelimit_available(&p->rate, now_ns) == 0 && p->source) {
        p->rate_paused = 1;
        tstream_pause(p->source);
    }
}

int pump_push(pump_t *p, const char *buf, size_t len)
{
    /* SECURITY: policy.max_upload_bytes: not a byte past the cap reaches the sink. */
    if (p->max_bytes && p->bytes + len > p->max_bytes)
        return FG_RANGE;
    p->bytes += len;
    pump_charge(p, len, uv_hrtime());
    if (!p->sink) {
        /* One read's worth at most: the source pauses until the sink comes. */
        char *grown = realloc(p->kept, p->kept_len + len);
        if (!grown)
            return FG_NOMEM;
        memcpy(grown + p->kept_len, buf, len);
        p->kept = grown;
        p->kept_len += len;
        if (p->source)
            tstream_pause(p->source);
        pump_rate_wait(p, uv_hrtime());
        return FG_OK;
    }
    int rc = tstream_write(p->sink, buf, len);
    if (rc != FG_OK)
        return rc;
    pump_pause_if_full(p);
    pump_rate_wait(p, uv_hrtime());
    return FG_OK;
}

int pump_attach_sink(pump_t *p, tstream_t *sink)
{
    p->sink = sink;
    if (p->kept_len) {
        int rc = tstream_write(sink, p->kept, p->kept_len);
        pump_release(p);
        if (rc != FG_OK)
            return rc; /* never a transfer that ends "clean" without these bytes */
    }
    if (p->ended && p->clean)
        tstream_shutdown(sink);
    else if (p->source && !p->rate_paused && tstream_queued(sink) <= TSTREAM_HIGH_MARK)
        tstream_resume(p->source);
    return FG_OK;
}

void pump_sink_drained(pump_t *p)
{
    if (p->source && !p->ended && !p->rate_paused)
        tstream_resume(p->source);
}

void pump_source_ended(pump_t *p, tstream_end_t how)
{
    p->ended = 1;
    p->clean = how == TSTREAM_END_CLEAN;
    if (p->clean && p->sink && !p->kept_len)
        tstream_shutdown(p->sink);
}

void pump_sink_shut(pump_t *p)
{
    p->sink_shut = 1;
}

int pump_complete(const pump_t *p)
{
    return p->ended && p->clean && p->sink_shut;
}
