#include "auditfmt.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fgerr.h"

/* Caps of the escaped fields other than path (bytes of output): generous for
 * what the configuration and the session allow (a 64-byte listener name, an
 * address, a 255-byte login at six bytes per byte at worst). */
#define CAP_NAME 256u
#define CAP_USER 1600u

typedef struct {
    char *p;
    size_t n, cap;
} out_t;

static void put(out_t *o, const char *s, size_t len)
{
    if (len > o->cap - o->n)
        len = o->cap - o->n;
    memcpy(o->p + o->n, s, len);
    o->n += len;
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void putf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out_t *o, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(o, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Length of the valid UTF-8 sequence at s (2..4, not a C1 control, no
 * surrogate, no overlong form, at most U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        if (c == 0xc2)
            lo = 0xa0; /* U+0080..U+009F are the C1 controls */
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (len < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return need;
}

/* One item of a JSON string of peer bytes at data[i]: what to write (*src,
 * *w bytes) and how many input bytes it stands for (returned). */
static size_t json_item(const char *data, size_t len, size_t i, char esc[8], const char **src, size_t *w)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)data;
    size_t seq = s[i] >= 0x80 ? utf8_seq(s + i, len - i) : 0;

    if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && s[i] != '"') {
        *src = data + i;
        *w = 1;
        return 1;
    }
    if (s[i] == '"') {
        *src = "\\\"";
        *w = 2;
        return 1;
    }
    if (seq > 0) {
        *src = data + i;
        *w = seq;
        return seq;
    }
    /* SECURITY: a control byte, an invalid byte or the backslash becomes
     * \xNN, so that it can neither end the line nor forge JSON; in the JSON
     * text the backslash of \xNN is itself escaped: "\\xNN". */
    esc[0] = '\\';
    esc[1] = '\\';
    esc[2] = 'x';
    esc[3] = hex[s[i] >> 4];
    esc[4] = hex[s[i] & 0x0f];
    *src = esc;
    *w = 5;
    return 1;
}

/* A JSON string of peer bytes, at most cap bytes of output between the
 * quotes; returns 1 when it had to be cut (it then ends in "..."). */
static int put_json_str(out_t *o, const char *data, size_t len, size_t cap)
{
    char esc[8];
    const char *src;
    size_t w, total = 0, used = 0;

    for (size_t i = 0; i < len;) {
        i += json_item(data, len, i, esc, &src, &w);
        total += w;
    }
    size_t limit = total <= cap ? total : cap - 3;
    puts_(o, "\"");
    for (size_t i = 0; i < len;) {
        size_t adv = json_item(data, len, i, esc, &src, &w);
        if (used + w > limit)
            break; /* never half an escape or half a character */
        put(o, src, w);
        used += w;
        i += adv;
    }
    if (total > cap)
        puts_(o, "...");
    puts_(o, "\"");
    return total > cap;
}

static void put_opt_str(out_t *o, const char *s, size_t len, size_t cap)
{
    if (s == NULL)
        puts_(o, "null");
    else
        put_json_str(o, s, len, cap);
}

static void put_ts(out_t *o, int64_t ts_ms)
{
    struct tm tm;
    time_t secs = (time_t)(ts_ms / 1000);
    int ms = (int)(ts_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs--;
    }
    if (gmtime_r(&secs, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    char buf[96]; /* more than needed: the compiler cannot bound struct tm */
    snprintf(buf, sizeof buf, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    puts_(o, buf);
}

int auditfmt_line(const audit_record_t *r, char *out, size_t cap)
{
    static const char *const directions[] = { "download", "upload", "listing" };
    out_t o = { out, 0, cap };
    int cut;

    if (cap < AUDITFMT_LINE_MAX)
        return FG_RANGE;
    puts_(&o, "{\"ts\":");
    put_ts(&o, r->ts_ms);
    putf(&o, ",\"session\":%llu,\"listener\":", r->session);
    put_opt_str(&o, r->listener, r->listener ? strlen(r->listener) : 0, CAP_NAME);
    puts_(&o, ",\"client\":");
    put_opt_str(&o, r->client, r->client ? strlen(r->client) : 0, CAP_NAME);
    puts_(&o, ",\"user\":");
    put_opt_str(&o, r->user, r->user_len, CAP_USER);
    puts_(&o, ",\"backend\":");
    put_opt_str(&o, r->backend, r->backend ? strlen(r->backend) : 0, CAP_NAME);
    puts_(&o, ",\"command\":");
    put_opt_str(&o, r->command, r->command ? strlen(r->command) : 0, CAP_NAME);
    puts_(&o, ",\"path\":");
    cut = r->path != NULL && put_json_str(&o, r->path, r->path_len, AUDITFMT_PATH_MAX);
    if (r->path == NULL)
        puts_(&o, "null");
    putf(&o, ",\"direction\":\"%s\"", (unsigned)r->direction < 3 ? directions[r->direction] : "download");
    putf(&o, ",\"bytes\":%" PRIu64 ",\"duration_ms\":%" PRIu64, r->bytes, r->duration_ms);
    if (r->reply >= 100 && r->reply <= 599)
        putf(&o, ",\"reply\":%d", r->reply);
    else
        puts_(&o, ",\"reply\":null");
    if (!r->tls) {
        puts_(&o, ",\"tls\":null");
    } else {
        puts_(&o, ",\"tls\":{\"version\":");
        put_opt_str(&o, r->tls_version, r->tls_version ? strlen(r->tls_version) : 0, CAP_NAME);
        puts_(&o, ",\"cipher\":");
        put_opt_str(&o, r->tls_cipher, r->tls_cipher ? strlen(r->tls_cipher) : 0, CAP_NAME);
        puts_(&o, r->tls_resumed ? ",\"resumed\":true}" : ",\"resumed\":false}");
    }
    if (cut)
        puts_(&o, ",\"path_truncated\":true");
    puts_(&o, "}\n");
    return (int)o.n;
}

size_t auditfmt_dropped(int64_t ts_ms, unsigned long long count, char *out, size_t cap)
{
    char buf[160];
    out_t o = { buf, 0, sizeof buf };
    puts_(&o, "{\"ts\":");
    put_ts(&o, ts_ms);
    putf(&o, ",\"event\":\"records_dropped\",\"count\":%llu}\n", count);
    if (o.n > cap)
        return 0;
    memcpy(out, buf, o.n);
    return o.n;
}
