/* Bounded streaming line reader (see linebuf.h for the contract).
 *
 * The whole state is a small struct plus one buffer that grows with the
 * longest line seen, never past `capacity`: a peer can make us discard
 * bytes, never grow memory beyond the cap (vsftpd's "every read is bounded
 * and reports too long"), and an idle session holds only a small buffer. The reader is a
 * byte-at-a-time state machine, so a line or Telnet sequence split between two
 * reads at any position gives exactly the result of one read. */
#include "linebuf.h"

#include <stdint.h>
#include <stdlib.h>

#include "fgerr.h"

/* Telnet command bytes (RFC 854). */
enum {
    TN_IAC = 255,
    TN_DONT = 254,
    TN_WILL = 251 /* WILL 251, WONT 252, DO 253, DONT 254: all take an option byte */
};

enum {
    IAC_NONE = 0, /* not inside a Telnet sequence */
    IAC_SEEN,     /* IAC received, command byte next */
    IAC_OPTION    /* IAC WILL/WONT/DO/DONT received, option byte next */
};

struct linebuf {
    size_t capacity; /* size of buf minus the terminating NUL slot */
    size_t cap;      /* cap requested by linebuf_set_cap, applies to the next line */
    size_t line_cap; /* cap of the line in progress (latched when it starts) */
    size_t len;      /* content bytes stored for the line in progress */
    int telnet;
    int started;     /* a line is in progress: at least one byte of it was consumed */
    int pending_cr;  /* the last content byte was a CR; LF next makes it a line end */
    int too_long;    /* the line in progress passed line_cap: being discarded */
    int bad;         /* the line in progress holds a NUL or a bare CR */
    int iac;         /* IAC_* */
    size_t allocated;/* bytes of buf, NUL slot included: grows up to capacity + 1 */
    char *buf;
};

#define LINEBUF_START 128u

linebuf_t *linebuf_new(size_t capacity, int telnet)
{
    /* SECURITY: no size_t wrap in the one allocation we make. */
    if (capacity > SIZE_MAX - sizeof(struct linebuf) - 1)
        return NULL;
    linebuf_t *lb = malloc(sizeof(*lb));
    if (lb == NULL)
        return NULL;
    lb->allocated = capacity + 1 < LINEBUF_START ? capacity + 1 : LINEBUF_START;
    lb->buf = malloc(lb->allocated);
    if (lb->buf == NULL) {
        free(lb);
        return NULL;
    }
    lb->capacity = capacity;
    lb->cap = capacity;
    lb->telnet = telnet ? 1 : 0;
    linebuf_reset(lb);
    return lb;
}

void linebuf_free(linebuf_t *lb)
{
    if (lb)
        free(lb->buf);
    free(lb);
}

void linebuf_set_cap(linebuf_t *lb, size_t cap)
{
    /* SECURITY: the buffer was sized once; a cap can never exceed it. */
    lb->cap = cap < lb->capacity ? cap : lb->capacity;
}

static void line_clear(linebuf_t *lb)
{
    lb->len = 0;
    lb->started = 0;
    lb->pending_cr = 0;
    lb->too_long = 0;
    lb->bad = 0;
    lb->line_cap = lb->cap;
}

void linebuf_reset(linebuf_t *lb)
{
    line_clear(lb);
    lb->iac = IAC_NONE;
    lb->buf[0] = '\0';
}

size_t linebuf_partial(const linebuf_t *lb)
{
    return lb->len;
}

/* Stores one content byte of the current line (CR and LF are handled by the
 * caller). */
static void line_put(linebuf_t *lb, unsigned char c)
{
    if (c == '\0') {
        /* SECURITY: a NUL would truncate the line for any C string consumer
         * downstream (path check vs. what the backend sees). Reject the line. */
        lb->bad = 1;
    }
    if (lb->too_long)
        return;
    if (lb->len >= lb->line_cap) {
        /* SECURITY: over the cap: discard up to the LF, never grow. */
        lb->too_long = 1;
        return;
    }
    if (lb->len + 1 >= lb->allocated) {
        /* Doubling, never past the capacity (+ the NUL slot). */
        size_t want = lb->allocated * 2 < lb->capacity + 1 ? lb->allocated * 2 : lb->capacity + 1;
        char *grown = realloc(lb->buf, want);
        if (grown == NULL) {
            lb->too_long = 1; /* out of memory: the line is discarded, never half kept */
            return;
        }
        lb->buf = grown;
        lb->allocated = want;
    }
    lb->buf[lb->len++] = (char)c;
}

int linebuf_take(linebuf_t *lb, const char *data, size_t len, size_t *used,
                 const char **line, size_t *line_len)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;

    *line = NULL;
    *line_len = 0;
    while (i < len) {
        unsigned char c = p[i++];

        if (!lb->started) {
            /* linebuf_set_cap applies from the next line: latch it here. */
            lb->started = 1;
            lb->line_cap = lb->cap;
        }

        if (lb->telnet) {
            /* RFC 854: Telnet commands are out of band; remove them from the
             * line so that "AB<IAC NOP>OR" cannot hide a verb from the policy
             * while the backend's Telnet layer would see "ABOR". */
            if (lb->iac == IAC_OPTION) {
                lb->iac = IAC_NONE; /* option byte of WILL/WONT/DO/DONT: dropped */
                continue;
            }
            if (lb->iac == IAC_SEEN) {
                lb->iac = IAC_NONE;
                if (c >= TN_WILL && c <= TN_DONT) {
                    lb->iac = IAC_OPTION;
                    continue;
                }
                if (c != TN_IAC)
                    continue; /* IP, DM, NOP, AYT, ...: dropped (IP+DM precede ABOR) */
                /* IAC IAC: a literal 0xFF data byte, handled below. */
            } else if (c == TN_IAC) {
                lb->iac = IAC_SEEN;
                continue;
            }
        }

        if (lb->pending_cr) {
            lb->pending_cr = 0;
            if (c != '\n') {
                /* SECURITY: a bare CR inside a line (RFC 959 §4.1 allows CR only
                 * in CRLF) is how "cmd1\rcmd2" smuggling against CR-splitting
                 * backends works. Reject the whole line. */
                lb->bad = 1;
            }
        }

        if (c == '\n') {
            /* End of line: CRLF, or a bare LF as RFC 959 clients tolerate. */
            int rc = lb->too_long ? FG_TOO_LONG : lb->bad ? FG_SYNTAX : FG_OK;
            if (rc == FG_OK) {
                lb->buf[lb->len] = '\0'; /* convenience for debuggers; len is the truth */
                *line = lb->buf;
                *line_len = lb->len;
            }
            line_clear(lb);
            *used = i;
            return rc;
        }
        if (c == '\r') {
            lb->pending_cr = 1; /* stripped if LF follows */
            continue;
        }
        line_put(lb, c);
    }
    *used = i;
    return FG_NEED_MORE;
}
