#include "jsonout.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsonout_init(jsonout_t *o, size_t max)
{
    memset(o, 0, sizeof *o);
    o->max = max;
}

void jsonout_free(jsonout_t *o)
{
    free(o->buf);
    jsonout_init(o, o->max);
}

/* Room for n more bytes and the NUL; 0 or -1 (failed). */
static int reserve(jsonout_t *o, size_t n)
{
    if (o->failed)
        return -1;
    if (n > o->max || o->len > o->max - n) {
        o->failed = 1;
        return -1;
    }
    if (o->len + n + 1 <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n + 1)
        cap *= 2;
    if (cap > o->max + 1)
        cap = o->max + 1;
    char *b = realloc(o->buf, cap);
    if (b == NULL) {
        o->failed = 1;
        return -1;
    }
    o->buf = b;
    o->cap = cap;
    return 0;
}

static void put(jsonout_t *o, const char *s, size_t n)
{
    if (reserve(o, n) != 0)
        return;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

void jsonout_raw(jsonout_t *o, const char *text)
{
    put(o, text, strlen(text));
}

void jsonout_fmt(jsonout_t *o, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof small) { /* our own short pieces only */
        o->failed = 1;
        return;
    }
    put(o, small, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s[0..n) (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t k;
    unsigned lo = 0x80, hi = 0xbf;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        k = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        k = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        k = 4;
    else
        return 0;
    if (s[0] == 0xe0)
        lo = 0xa0;
    else if (s[0] == 0xed)
        hi = 0x9f; /* U+D800..U+DFFF */
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f;
    if (n < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return k;
}

void jsonout_str(jsonout_t *o, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    put(o, "\"", 1);
    for (size_t i = 0; i < len && !o->failed;) {
        unsigned char c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(o, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&') {
            /* SECURITY: no control byte, and no markup character as itself. */
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            put(o, esc, 6);
            i++;
        } else if (c < 0x80) {
            put(o, (const char *)u + i, 1);
            i++;
        } else {
            size_t k = utf8_len(u + i, len - i);
            if (k == 0) {
                put(o, "\\ufffd", 6); /* not UTF-8: the replacement character */
                i++;
            } else if (k == 3 && u[i] == 0xe2 && u[i + 1] == 0x80 && (u[i + 2] == 0xa8 || u[i + 2] == 0xa9)) {
                put(o, u[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
                i += 3;
            } else {
                put(o, (const char *)u + i, k);
                i += k;
            }
        }
    }
    put(o, "\"", 1);
}

void jsonout_cstr(jsonout_t *o, const char *s)
{
    if (s == NULL)
        put(o, "null", 4);
    else
        jsonout_str(o, s, strlen(s));
}

char *jsonout_take(jsonout_t *o, size_t *len)
{
    char *b = o->buf;
    int failed = o->failed;
    *len = 0;
    o->buf = NULL;
    o->len = o->cap = 0;
    o->failed = 0;
    if (failed) {
        free(b);
        return NULL;
    }
    if (b == NULL)
        return calloc(1, 1); /* nothing was written: "" */
    *len = strlen(b);
    return b;
}
