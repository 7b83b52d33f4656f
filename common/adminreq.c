#include "adminreq.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "fgerr.h"
#include "numparse.h"

#define AUTH_VALUE_MAX 4096u /* decoded Basic credentials: a token is at most 1024 */

static int is_token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c);
}

/* One header line [p, end): its name and trimmed value. */
static void header_value(const char *p, const char *end, const char **v, size_t *vlen)
{
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *s = colon + 1;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *v = s;
    *vlen = (size_t)(end - s);
}

int adminreq_parse(const char *head, size_t len, adminreq_t *out)
{
    memset(out, 0, sizeof *out);
    const char *end = head + len;
    const char *eol = NULL;
    for (const char *q = head; q + 1 < end; q++)
        if (q[0] == '\r' && q[1] == '\n') {
            eol = q;
            break;
        }
    if (eol == NULL)
        return FG_SYNTAX;
    const char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    if (sp1 == NULL || sp1 == head)
        return FG_SYNTAX;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    if (sp2 == NULL || sp2 == target || *target != '/' || (size_t)(eol - sp2 - 1) != 8 ||
        memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return FG_SYNTAX;
    for (const char *q = head; q < sp1; q++)
        if (!is_token_char(*q))
            return FG_SYNTAX;
    out->method = head;
    out->method_len = (size_t)(sp1 - head);
    out->path = target;
    const char *qm = memchr(target, '?', (size_t)(sp2 - target));
    out->path_len = (size_t)((qm ? qm : sp2) - target);
    if (qm) {
        out->query = qm + 1;
        out->query_len = (size_t)(sp2 - qm - 1);
    }
    /* Header lines, up to the blank line. */
    for (const char *p = eol + 2; p + 1 < end;) {
        const char *e = NULL;
        for (const char *q = p; q + 1 < end; q++)
            if (q[0] == '\r' && q[1] == '\n') {
                e = q;
                break;
            }
        if (e == NULL || e == p)
            break;
        if ((size_t)(e - p) > 14 && strncasecmp(p, "authorization:", 14) == 0) {
            /* SECURITY: two of them could be read differently by a proxy in front. */
            if (out->auth_seen)
                return FG_SYNTAX;
            out->auth_seen = 1;
            header_value(p, e, &out->auth, &out->auth_len);
        }
        p = e + 2;
    }
    return FG_OK;
}

int adminreq_query_uint(const adminreq_t *r, const char *key, unsigned long max, unsigned long *val)
{
    if (r->query == NULL)
        return FG_NEED_MORE; /* no query: the key is absent (and NULL + 0 is undefined) */
    size_t klen = strlen(key);
    const char *p = r->query, *end = r->query + r->query_len;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > klen && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            uint64_t v;
            int rc = num_parse_u64(p + klen + 1, (size_t)(stop - p - klen - 1), max, &v);
            if (rc == FG_OK)
                *val = (unsigned long)v;
            return rc;
        }
        p = amp ? amp + 1 : NULL;
    }
    return FG_NEED_MORE;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64 (RFC 4648 §4, padding required); returns the decoded length or -1. */
static long b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + (size_t)k];
            if (c == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad || (v[k] = b64_value(c)) < 0) {
                return -1;
            }
        }
        unsigned long w = (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12 | (unsigned long)v[2] << 6 |
                          (unsigned long)v[3];
        if (n + 3u - (size_t)pad > cap)
            return -1;
        out[n++] = (unsigned char)(w >> 16);
        if (pad < 2)
            out[n++] = (unsigned char)(w >> 8);
        if (pad < 1)
            out[n++] = (unsigned char)w;
    }
    return (long)n;
}

static int same_secret(const void *a, size_t alen, const char *token)
{
    unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
    SHA256(a, alen, da);
    SHA256((const unsigned char *)token, strlen(token), db);
    return CRYPTO_memcmp(da, db, sizeof da) == 0;
}

int adminreq_authorized(const adminreq_t *r, const char *token)
{
    if (!r->auth_seen || token == NULL)
        return 0;
    const char *v = r->auth, *sp = memchr(v, ' ', r->auth_len);
    if (sp == NULL)
        return 0;
    size_t scheme = (size_t)(sp - v);
    const char *cred = sp + 1;
    size_t clen = r->auth_len - scheme - 1;
    while (clen > 0 && *cred == ' ') {
        cred++;
        clen--;
    }
    if (scheme == 6 && strncasecmp(v, "Bearer", 6) == 0)
        return same_secret(cred, clen, token);
    if (scheme != 5 || strncasecmp(v, "Basic", 5) != 0)
        return 0;
    unsigned char plain[AUTH_VALUE_MAX];
    long n = b64_decode(cred, clen, plain, sizeof plain);
    const unsigned char *colon = n > 0 ? memchr(plain, ':', (size_t)n) : NULL;
    int ok = colon != NULL && same_secret(colon + 1, (size_t)(plain + n - colon - 1), token);
    OPENSSL_cleanse(plain, sizeof plain);
    return ok;
}
