/* libFuzzer target for common/linebuf.c.
 * Input: byte 0 = cap (0..255), byte 1 bit 0 = telnet mode, bit 1 = lower the
 * cap after the first event; bytes 2..3 = two split points; the rest is the
 * stream. Checks the documented invariants and that feeding the stream in
 * three chunks gives exactly the events of feeding it in one call. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "linebuf.h"

#define EV_MAX 4096

typedef struct {
    int rc[EV_MAX];
    size_t len[EV_MAX];
    uint32_t sum[EV_MAX];
    size_t n;
} events_t;

static uint32_t checksum(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static void feed(linebuf_t *lb, const char *data, size_t len, size_t cap, int lower, events_t *ev)
{
    size_t off = 0;
    while (off < len) {
        size_t used = (size_t)-1;
        const char *line = NULL;
        size_t line_len = (size_t)-1;
        int rc = linebuf_take(lb, data + off, len - off, &used, &line, &line_len);
        if (used > len - off)
            abort();
        off += used;
        if (rc == FG_NEED_MORE) {
            if (off != len)
                abort();
            break;
        }
        if (used == 0)
            abort(); /* an event must consume its LF */
        if (rc == FG_OK) {
            if (line_len > cap || (line_len > 0 && line == NULL))
                abort();
            for (size_t i = 0; i < line_len; i++) {
                if (line[i] == '\n' || line[i] == '\r' || line[i] == '\0')
                    abort();
            }
        } else if (rc != FG_TOO_LONG && rc != FG_SYNTAX) {
            abort();
        }
        if (ev->n < EV_MAX) {
            ev->rc[ev->n] = rc;
            ev->len[ev->n] = rc == FG_OK ? line_len : 0;
            ev->sum[ev->n] = rc == FG_OK ? checksum(line, line_len) : 0;
            ev->n++;
        }
        if (lower && ev->n == 1)
            linebuf_set_cap(lb, cap / 2);
        if (linebuf_partial(lb) != 0)
            abort();
    }
    if (linebuf_partial(lb) > cap)
        abort();
}

static events_t ev1, ev2;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t cap = data[0];
    int telnet = data[1] & 1;
    int lower = (data[1] >> 1) & 1;
    const char *s = (const char *)data + 4;
    size_t n = size - 4;
    size_t a = n ? data[2] % (n + 1) : 0;
    size_t b = n ? data[3] % (n + 1) : 0;
    if (a > b) {
        size_t t = a;
        a = b;
        b = t;
    }

    ev1.n = ev2.n = 0;
    linebuf_t *lb = linebuf_new(cap, telnet);
    if (lb == NULL)
        return 0;
    feed(lb, s, n, cap, lower, &ev1);
    size_t partial1 = linebuf_partial(lb);
    linebuf_free(lb);

    lb = linebuf_new(cap, telnet);
    if (lb == NULL)
        return 0;
    feed(lb, s, a, cap, lower, &ev2);
    feed(lb, s + a, b - a, cap, lower, &ev2);
    feed(lb, s + b, n - b, cap, lower, &ev2);
    size_t partial2 = linebuf_partial(lb);
    /* reset leaves a clean reader */
    linebuf_reset(lb);
    if (linebuf_partial(lb) != 0)
        abort();
    linebuf_free(lb);

    if (ev1.n != ev2.n || partial1 != partial2)
        abort();
    for (size_t i = 0; i < ev1.n; i++) {
        if (ev1.rc[i] != ev2.rc[i] || ev1.len[i] != ev2.len[i] || ev1.sum[i] != ev2.sum[i])
            abort();
    }
    return 0;
}
