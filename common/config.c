#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "hostname.h"
#include "log.h"
#include "ratelimit.h"

/* Validation stops at the first problem, in a fixed order: unknown keys of an
 * object first (in document order), then its keys in schema order, then the
 * cross-checks between listeners. The message is one line "path: problem". */

#define CONFIG_FILE_MAX (1024 * 1024) /* a config file is small; refuse anything huge */
#define PATH_MAX_LEN 256
#define NAME_MAX_LEN 64

typedef struct {
    char *err;
    size_t errlen;
} ctx_t;

static int fail(ctx_t *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(ctx_t *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (c->errlen == 0)
        return FG_CONFIG;
    n = path != NULL ? snprintf(c->err, c->errlen, "%s: ", path) : 0;
    if (n < 0)
        n = 0;
    if ((size_t)n < c->errlen) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return FG_CONFIG;
}

static int fail_nomem(ctx_t *c)
{
    if (c->errlen > 0)
        snprintf(c->err, c->errlen, "out of memory");
    return FG_NOMEM;
}

/* Config values and unknown keys are echoed in messages: escape them (one
 * line, no control bytes) and keep them short. */
typedef struct {
    char s[100];
} shown_t;

static shown_t show(const char *s)
{
    shown_t r;
    log_escape(s, strlen(s), r.s, sizeof r.s);
    return r;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* Appends pieces to a path, truncating (never overflowing) at PATH_MAX_LEN. */
static void path_cat(char *out, const char *a, const char *b, const char *c3)
{
    const char *parts[3] = { a, b, c3 };
    size_t n = 0;

    for (int i = 0; i < 3; i++) {
        size_t l = parts[i] != NULL ? strlen(parts[i]) : 0;
        if (l > PATH_MAX_LEN - 1 - n)
            l = PATH_MAX_LEN - 1 - n;
        memmove(out + n, parts[i] != NULL ? parts[i] : "", l);
        n += l;
    }
    out[n] = '\0';
}

/* key may come from the document (an object's member names): escaped like
 * every other peer-supplied byte, so an error stays one line. */
static void subpath(char *out, const char *path, const char *key)
{
    path_cat(out, path, path[0] != '\0' ? "." : NULL, show(key).s);
}

static void subindex(char *out, const char *path, size_t i)
{
    char idx[32];
    snprintf(idx, sizeof idx, "[%zu]", i);
    path_cat(out, path, idx, NULL);
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

/* Strict unsigned decimal: digits only, value <= max. */
static int parse_dec(const char *s, size_t len, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;

    if (len == 0)
        return FG_SYNTAX;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return FG_SYNTAX;
        if (v > (max - (unsigned long)(s[i] - '0')) / 10) {
            /* keep checking syntax so "99999x" is a syntax error */
            for (size_t j = i + 1; j < len; j++)
                if (s[j] < '0' || s[j] > '9')
                    return FG_SYNTAX;
            return FG_RANGE;
        }
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    *out = v;
    return FG_OK;
}

/* ---- pure address helpers (config.h) ---------------------------------- */

static int is_literal_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* RFC 1123 host name syntax (underscores tolerated, as resolvers do). A name
 * made only of digits and dots must be a valid IPv4 address instead, so a
 * typo such as "10.0.0.256" is not taken for a name. */
static int valid_host_name(const char *h, size_t len)
{
    size_t label = 0, i;
    int only_digits = 1;

    if (len == 0 || len > 253)
        return 0;
    for (i = 0; i < len; i++) {
        char ch = h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return 0;
        if (ch < '0' || ch > '9')
            only_digits = 0;
        if (ch == '-' && label == 0)
            return 0;
        if (++label > 63)
            return 0;
    }
    if (label == 0 && h[len - 1] != '.')
        return 0;
    if (h[len - 1] == '-')
        return 0;
    if (only_digits) {
        char tmp[254];
        unsigned char buf[4];
        memcpy(tmp, h, len);
        tmp[len] = '\0';
        return inet_pton(AF_INET, tmp, buf) == 1;
    }
    return 1;
}

int config_parse_hostport(const char *s, config_hostport_t *out)
{
    const char *host, *colon;
    size_t hlen;
    unsigned long port;
    char *copy;
    int rc;

    if (s == NULL || out == NULL)
        return FG_SYNTAX;
    out->host = NULL;
    out->port = 0;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return FG_SYNTAX;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return FG_SYNTAX; /* a bare IPv6 address needs brackets */
        host = s;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen > 253)
        return FG_SYNTAX;
    rc = parse_dec(colon + 1, strlen(colon + 1), 65535, &port);
    if (rc != FG_OK)
        return rc;
    if (port == 0)
        return FG_RANGE;

    copy = malloc(hlen + 1);
    if (copy == NULL)
        return FG_NOMEM;
    memcpy(copy, host, hlen);
    copy[hlen] = '\0';
    if (s[0] == '[') {
        unsigned char buf[16];
        if (inet_pton(AF_INET6, copy, buf) != 1) {
            free(copy);
            return FG_SYNTAX;
        }
    } else if (!valid_host_name(copy, hlen)) {
        free(copy);
        return FG_SYNTAX;
    }
    out->host = copy;
    out->port = (uint16_t)port;
    return FG_OK;
}

int config_parse_cidr(const char *s, config_cidr_t *out)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash;
    size_t alen;
    unsigned long prefix;
    config_cidr_t r;

    if (s == NULL || out == NULL)
        return FG_SYNTAX;
    memset(&r, 0, sizeof r);
    slash = strchr(s, '/');
    alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof addr)
        return FG_SYNTAX;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, r.addr) == 1)
        r.family = AF_INET;
    else if (inet_pton(AF_INET6, addr, r.addr) == 1)
        r.family = AF_INET6;
    else
        return FG_SYNTAX;
    r.prefix = r.family == AF_INET ? 32 : 128;
    if (slash != NULL) {
        int rc = parse_dec(slash + 1, strlen(slash + 1), 255, &prefix);
        if (rc != FG_OK)
            return rc;
        if (prefix > r.prefix)
            return FG_RANGE;
        r.prefix = (unsigned)prefix;
    }
    *out = r;
    return FG_OK;
}

static int prefix_match(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned bytes = prefix / 8, bits = prefix % 8;

    if (memcmp(a, b, bytes) != 0)
        return 0;
    if (bits == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - bits));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int config_cidr_match(const config_cidr_t *cidr, const struct sockaddr *addr)
{
    uint8_t a[16];

    if (cidr == NULL || addr == NULL)
        return 0;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;
        if (cidr->family == AF_INET)
            return prefix_match(cidr->addr, (const uint8_t *)&sin->sin_addr, cidr->prefix);
        if (cidr->family == AF_INET6) {
            /* an IPv4 peer is inside ::ffff:0:0/96-style prefixes */
            memcpy(a, v4mapped_prefix, 12);
            memcpy(a + 12, &sin->sin_addr, 4);
            return prefix_match(cidr->addr, a, cidr->prefix);
        }
        return 0;
    }
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)addr;
        memcpy(a, &sin6->sin6_addr, 16);
        if (cidr->family == AF_INET6)
            return prefix_match(cidr->addr, a, cidr->prefix);
        if (cidr->family == AF_INET && memcmp(a, v4mapped_prefix, 12) == 0)
            return prefix_match(cidr->addr, a + 12, cidr->prefix);
        return 0;
    }
    return 0;
}

int config_cidr_any(const config_cidr_t *list, size_t n, const struct sockaddr *addr)
{
    for (size_t i = 0; i < n; i++)
        if (config_cidr_match(&list[i], addr))
            return 1;
    return 0;
}

int config_listener_source_client(const config_listener_t *l)
{
    if (l->has_backend && l->backend.source_client)
        return 1;
    for (size_t i = 0; i < l->n_routes; i++)
        if (l->routes[i].backend.source_client)
            return 1;
    return 0;
}

/* ---- typed getters ---------------------------------------------------- */

typedef struct {
    const char *name;
    const char *unsupported; /* non-NULL: a known key this version rejects */
} keydef_t;

/* SECURITY: unknown keys are errors, so a misspelled security setting
 * ("login_require_tls") can never silently fall back to its default. */
static int check_keys(ctx_t *c, const json_t *obj, const char *path, const keydef_t *keys)
{
    const char *k;
    json_t *v;
    char p[PATH_MAX_LEN];

    json_object_foreach((json_t *)obj, k, v) {
        const keydef_t *kd;
        for (kd = keys; kd->name != NULL; kd++)
            if (strcmp(kd->name, k) == 0)
                break;
        subpath(p, path, k);
        if (kd->name == NULL)
            return fail(c, p, "unknown key");
        if (kd->unsupported != NULL)
            return fail(c, p, "%s", kd->unsupported);
    }
    return FG_OK;
}

static int expect_type(ctx_t *c, const char *path, const json_t *v, json_type t, const char *what)
{
    int ok = json_typeof(v) == t || (t == JSON_TRUE && json_typeof(v) == JSON_FALSE);
    if (!ok)
        return fail(c, path, "expected %s, got %s", what, type_name(v));
    return FG_OK;
}

/* *out: the member or NULL when absent and optional. */
static int get_member(ctx_t *c, const json_t *obj, const char *path, const char *key, int required,
                      json_type t, const char *what, json_t **out)
{
    char p[PATH_MAX_LEN];
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    subpath(p, path, key);
    if (v == NULL)
        return required ? fail(c, p, "required") : FG_OK;
    if (expect_type(c, p, v, t, what) != FG_OK)
        return FG_CONFIG;
    *out = v;
    return FG_OK;
}

/* A non-empty string; *out borrowed from the document, NULL when absent. */
static int get_str(ctx_t *c, const json_t *obj, const char *path, const char *key, int required,
                   const char **out)
{
    char p[PATH_MAX_LEN];
    json_t *v;

    *out = NULL;
    if (get_member(c, obj, path, key, required, JSON_STRING, "string", &v) != FG_OK)
        return FG_CONFIG;
    if (v == NULL)
        return FG_OK;
    if (json_string_length(v) == 0) {
        subpath(p, path, key);
        return fail(c, p, "must not be empty");
    }
    *out = json_string_value(v);
    return FG_OK;
}

/* Optional non-empty string, copied into *dst (left NULL when absent). */
static int dup_str(ctx_t *c, const json_t *obj, const char *path, const char *key, int required,
                   char **dst)
{
    const char *s;
    if (get_str(c, obj, path, key, required, &s) != FG_OK)
        return FG_CONFIG;
    if (s == NULL)
        return FG_OK;
    if ((*dst = xstrdup(s)) == NULL)
        return fail_nomem(c);
    return FG_OK;
}

static int get_bool(ctx_t *c, const json_t *obj, const char *path, const char *key, int *out)
{
    json_t *v;
    if (get_member(c, obj, path, key, 0, JSON_TRUE, "boolean", &v) != FG_OK)
        return FG_CONFIG;
    if (v != NULL)
        *out = json_is_true(v);
    return FG_OK;
}

/* A JSON integer min..max (both within 0..INT64_MAX, jansson's range). */
static int get_u64(ctx_t *c, const json_t *obj, const char *path, const char *key, uint64_t min, uint64_t max,
                   uint64_t *out)
{
    char p[PATH_MAX_LEN];
    json_t *v;
    json_int_t n;

    if (get_member(c, obj, path, key, 0, JSON_INTEGER, "integer", &v) != FG_OK)
        return FG_CONFIG;
    if (v == NULL)
        return FG_OK;
    n = json_integer_value(v);
    if (n < 0 || (uint64_t)n < min || (uint64_t)n > max) {
        subpath(p, path, key);
        return fail(c, p, "%" JSON_INTEGER_FORMAT " is out of range (%" PRIu64 "..%" PRIu64 ")", n, min, max);
    }
    *out = (uint64_t)n;
    return FG_OK;
}

/* Integers must be JSON integers: "30", 30.0 and true are refused. */
static int get_uint(ctx_t *c, const json_t *obj, const char *path, const char *key, unsigned min,
                    unsigned max, unsigned *out)
{
    uint64_t v = *out;
    if (get_u64(c, obj, path, key, min, max, &v) != FG_OK)
        return FG_CONFIG;
    *out = (unsigned)v;
    return FG_OK;
}

/* One of names[] (NULL-terminated); *out is its index. */
static int get_enum(ctx_t *c, const json_t *obj, const char *path, const char *key,
                    const char *const *names, int *out)
{
    char p[PATH_MAX_LEN], choices[200];
    const char *s;
    json_t *v;
    size_t n = 0, count = 0, i;

    if (get_member(c, obj, path, key, 0, JSON_STRING, "string", &v) != FG_OK)
        return FG_CONFIG;
    if (v == NULL)
        return FG_OK;
    s = json_string_value(v);
    for (i = 0; names[i] != NULL; i++)
        if (strcmp(names[i], s) == 0) {
            *out = (int)i;
            return FG_OK;
        }
    count = i;
    choices[0] = '\0';
    for (i = 0; i < count && n < sizeof choices; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == count ? " or " : ", ");
        int w = snprintf(choices + n, sizeof choices - n, "%s\"%s\"", sep, names[i]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    subpath(p, path, key);
    return fail(c, p, "must be %s, got \"%s\"", choices, show(s).s);
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

/* "host:port" whose host must be a literal address (we bind to it). */
static int get_hostport(ctx_t *c, const json_t *obj, const char *path, const char *key,
                        int literal_only, config_hostport_t *out)
{
    char p[PATH_MAX_LEN];
    const char *s;
    int rc;

    if (get_str(c, obj, path, key, 1, &s) != FG_OK)
        return FG_CONFIG;
    subpath(p, path, key);
    rc = config_parse_hostport(s, out);
    if (rc == FG_NOMEM)
        return fail_nomem(c);
    if (rc == FG_RANGE)
        return fail(c, p, "\"%s\": port must be 1..65535", show(s).s);
    if (rc != FG_OK)
        return fail(c, p, "\"%s\": expected host:port or [IPv6]:port", show(s).s);
    if (literal_only && !is_literal_ip(out->host))
        return fail(c, p, "\"%s\": host must be a literal IP address, not a name", show(s).s);
    return FG_OK;
}

/* ---- sections --------------------------------------------------------- */

static const char *const tls_versions[] = { "1.2", "1.3", NULL };
static const char *const client_cert_names[] = { "none", "optional", "required", NULL };

static int parse_tls_identity(ctx_t *c, const char *id, const json_t *obj, config_tls_t *t)
{
    static const keydef_t keys[] = {
        { "cert", NULL },    { "key", NULL },         { "min_version", NULL },
        { "max_version", NULL }, { "ciphers", NULL }, { "ciphersuites", NULL },
        { "groups", NULL },  { "client_ca", NULL },   { "client_cert", NULL },
        { NULL, NULL },
    };
    char path[PATH_MAX_LEN], p[PATH_MAX_LEN];
    int minv = 0, maxv = -1, cc = -1, rc;

    subpath(path, "tls", id);
    if (expect_type(c, path, obj, JSON_OBJECT, "object") != FG_OK)
        return FG_CONFIG;
    if (check_keys(c, obj, path, keys) != FG_OK)
        return FG_CONFIG;
    if ((t->id = xstrdup(id)) == NULL)
        return fail_nomem(c);
    if ((rc = dup_str(c, obj, path, "cert", 1, &t->cert)) != FG_OK ||
        (rc = dup_str(c, obj, path, "key", 1, &t->key)) != FG_OK)
        return rc;
    if (get_enum(c, obj, path, "min_version", tls_versions, &minv) != FG_OK ||
        get_enum(c, obj, path, "max_version", tls_versions, &maxv) != FG_OK)
        return FG_CONFIG;
    if (maxv >= 0 && maxv < minv) {
        subpath(p, path, "max_version");
        return fail(c, p, "\"%s\" is below min_version \"%s\"", tls_versions[maxv],
                    tls_versions[minv]);
    }
    if ((t->min_version = xstrdup(tls_versions[minv])) == NULL)
        return fail_nomem(c);
    if (maxv >= 0 && (t->max_version = xstrdup(tls_versions[maxv])) == NULL)
        return fail_nomem(c);
    if ((rc = dup_str(c, obj, path, "ciphers", 0, &t->ciphers)) != FG_OK ||
        (rc = dup_str(c, obj, path, "ciphersuites", 0, &t->ciphersuites)) != FG_OK ||
        (rc = dup_str(c, obj, path, "groups", 0, &t->groups)) != FG_OK ||
        (rc = dup_str(c, obj, path, "client_ca", 0, &t->client_ca)) != FG_OK)
        return rc;
    if (get_enum(c, obj, path, "client_cert", client_cert_names, &cc) != FG_OK)
        return FG_CONFIG;
    subpath(p, path, "client_cert");
    if (cc < 0) {
        /* SECURITY: a CA given without client_cert means "verify clients";
         * silently accepting anyone would be the surprising reading. */
        t->client_cert = t->client_ca != NULL ? CLIENT_CERT_REQUIRED : CLIENT_CERT_NONE;
    } else if (cc == CLIENT_CERT_NONE && t->client_ca != NULL) {
        return fail(c, p, "\"none\" contradicts client_ca; remove one of them");
    } else if (cc != CLIENT_CERT_NONE && t->client_ca == NULL) {
        return fail(c, p, "\"%s\" needs %s.client_ca", client_cert_names[cc], path);
    } else {
        t->client_cert = (client_cert_t)cc;
    }
    return FG_OK;
}

static int parse_tls(ctx_t *c, const json_t *root, config_t *cfg)
{
    json_t *tls, *v;
    const char *id;
    size_t i = 0;
    int rc;

    if (get_member(c, root, "", "tls", 1, JSON_OBJECT, "object", &tls) != FG_OK)
        return FG_CONFIG;
    if (json_object_size(tls) == 0)
        return fail(c, "tls", "must contain at least one identity");
    cfg->tls = calloc(json_object_size(tls), sizeof *cfg->tls);
    if (cfg->tls == NULL)
        return fail_nomem(c);
    json_object_foreach(tls, id, v) {
        if (!valid_name(id))
            return fail(c, "tls", "\"%s\": identity names must match [A-Za-z0-9_.-]{1,64}",
                        show(id).s);
        cfg->n_tls = i + 1; /* so config_free sees what was filled */
        if ((rc = parse_tls_identity(c, id, v, &cfg->tls[i])) != FG_OK)
            return rc;
        i++;
    }
    return FG_OK;
}

static int parse_ports(ctx_t *c, const char *path, const char *s, uint16_t *first, uint16_t *last)
{
    const char *dash = strchr(s, '-');
    unsigned long a = 0, b = 0;
    int ra, rb;

    if (dash == NULL)
        return fail(c, path, "\"%s\": expected \"first-last\", e.g. \"50000-50099\"", show(s).s);
    ra = parse_dec(s, (size_t)(dash - s), 65535, &a);
    rb = parse_dec(dash + 1, strlen(dash + 1), 65535, &b);
    if (ra == FG_SYNTAX || rb == FG_SYNTAX)
        return fail(c, path, "\"%s\": expected \"first-last\", e.g. \"50000-50099\"", show(s).s);
    if (ra != FG_OK || rb != FG_OK || a < 1024 || b < 1024)
        return fail(c, path, "\"%s\": ports must be 1024..65535", show(s).s);
    if (a > b)
        return fail(c, path, "\"%s\": first port is above last", show(s).s);
    *first = (uint16_t)a;
    *last = (uint16_t)b;
    return FG_OK;
}

/* Host bits set under the prefix ("10.0.0.1/8") are almost always a typo. */
static int cidr_has_host_bits(const config_cidr_t *r)
{
    unsigned total = r->family == AF_INET ? 32 : 128;
    for (unsigned bit = r->prefix; bit < total; bit++)
        if (r->addr[bit / 8] & (0x80 >> (bit % 8)))
            return 1;
    return 0;
}

/* A JSON array of CIDRs at path p (the caller checked it is a non-empty
 * array): every entry a CIDR without host bits below its prefix, so that a
 * typo like "10.0.0.1/8" on a security list is an error, not 10.0.0.0/8. */
static int parse_cidr_list(ctx_t *c, const char *p, const json_t *arr, config_cidr_t **out, size_t *n)
{
    *out = calloc(json_array_size(arr), sizeof **out);
    if (*out == NULL)
        return fail_nomem(c);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char ep[PATH_MAX_LEN];
        const json_t *e = json_array_get(arr, i);
        subindex(ep, p, i);
        if (!json_is_string(e))
            return fail(c, ep, "expected string (a CIDR), got %s", type_name(e));
        if (config_parse_cidr(json_string_value(e), &(*out)[i]) != FG_OK)
            return fail(c, ep, "\"%s\": expected a CIDR (\"10.0.0.0/8\", \"2001:db8::/32\")",
                        show(json_string_value(e)).s);
        if (cidr_has_host_bits(&(*out)[i]))
            return fail(c, ep, "\"%s\": host bits set below the prefix length", show(json_string_value(e)).s);
        *n = i + 1;
    }
    return FG_OK;
}

static int parse_announce_entry(ctx_t *c, const char *path, const json_t *e, config_announce_t *a)
{
    static const keydef_t keys[] = { { "clients", NULL }, { "address", NULL }, { NULL, NULL } };
    char p[PATH_MAX_LEN];
    const char *clients, *addr;
    int rc;

    if (expect_type(c, path, e, JSON_OBJECT, "object") != FG_OK ||
        check_keys(c, e, path, keys) != FG_OK || get_str(c, e, path, "clients", 1, &clients) != FG_OK ||
        get_str(c, e, path, "address", 1, &addr) != FG_OK)
        return FG_CONFIG;
    subpath(p, path, "clients");
    if (strcmp(clients, "default") == 0) {
        a->match_all = 1;
        a->clients.family = AF_INET;
    } else {
        rc = config_parse_cidr(clients, &a->clients);
        if (rc == FG_RANGE)
            return fail(c, p, "\"%s\": prefix length too long", show(clients).s);
        if (rc != FG_OK)
            return fail(c, p, "\"%s\": expected a CIDR (\"10.0.0.0/8\", \"2001:db8::/32\") or \"default\"",
                        show(clients).s);
        if (cidr_has_host_bits(&a->clients))
            return fail(c, p, "\"%s\": host bits set below the prefix length", show(clients).s);
    }
    subpath(p, path, "address");
    if (!is_literal_ip(addr))
        return fail(c, p, "\"%s\": must be a literal IP address", show(addr).s);
    if ((a->address = xstrdup(addr)) == NULL)
        return fail_nomem(c);
    return FG_OK;
}

static int parse_passive(ctx_t *c, const char *lpath, const json_t *l, config_listener_t *li)
{
    static const keydef_t keys[] = {
        { "ports", NULL }, { "announce", NULL }, { "check_peer_ip", NULL },
        { "announce_ports", NULL }, { NULL, NULL },
    };
    char path[PATH_MAX_LEN], p[PATH_MAX_LEN];
    json_t *pas, *ann;
    const char *ports;
    int rc;

    if (get_member(c, l, lpath, "passive", 1, JSON_OBJECT, "object", &pas) != FG_OK)
        return FG_CONFIG;
    subpath(path, lpath, "passive");
    if (check_keys(c, pas, path, keys) != FG_OK || get_str(c, pas, path, "ports", 1, &ports) != FG_OK)
        return FG_CONFIG;
    subpath(p, path, "ports");
    if (parse_ports(c, p, ports, &li->passive.first, &li->passive.last) != FG_OK)
        return FG_CONFIG;

    subpath(p, path, "announce");
    ann = json_object_get(pas, "announce");
    if (ann != NULL && json_is_string(ann)) {
        const char *s = json_string_value(ann);
        if (!is_literal_ip(s))
            return fail(c, p, "\"%s\": must be a literal IP address", show(s).s);
        li->passive.announce = calloc(1, sizeof *li->passive.announce);
        if (li->passive.announce == NULL)
            return fail_nomem(c);
        li->passive.n_announce = 1;
        li->passive.announce[0].match_all = 1;
        li->passive.announce[0].clients.family = AF_INET;
        if ((li->passive.announce[0].address = xstrdup(s)) == NULL)
            return fail_nomem(c);
    } else if (ann != NULL && json_is_array(ann)) {
        size_t n = json_array_size(ann), i, dflt = (size_t)-1;
        if (n == 0)
            return fail(c, p, "must not be empty (leave it out to announce the local address)");
        li->passive.announce = calloc(n, sizeof *li->passive.announce);
        if (li->passive.announce == NULL)
            return fail_nomem(c);
        for (i = 0; i < n; i++) {
            char ep[PATH_MAX_LEN];
            subindex(ep, p, i);
            if (dflt != (size_t)-1)
                return fail(c, ep, "unreachable: follows the \"default\" entry %s[%zu]", p, dflt);
            li->passive.n_announce = i + 1;
            if ((rc = parse_announce_entry(c, ep, json_array_get(ann, i),
                                           &li->passive.announce[i])) != FG_OK)
                return rc;
            if (li->passive.announce[i].match_all)
                dflt = i;
        }
    } else if (ann != NULL) {
        return fail(c, p, "expected string or array, got %s", type_name(ann));
    }
    const char *aports = NULL;
    if (get_str(c, pas, path, "announce_ports", 0, &aports) != FG_OK)
        return FG_CONFIG;
    if (aports != NULL) {
        uint16_t afirst, alast;
        subpath(p, path, "announce_ports");
        if (parse_ports(c, p, aports, &afirst, &alast) != FG_OK)
            return FG_CONFIG;
        /* Docker's -p 31000-31099:50000-50099 maps ranges one to one. */
        if ((unsigned)(alast - afirst) != (unsigned)(li->passive.last - li->passive.first))
            return fail(c, p, "\"%s\": must hold as many ports as passive.ports (%u)", show(aports).s,
                        (unsigned)(li->passive.last - li->passive.first) + 1);
        li->passive.announce_first = afirst;
    }
    return get_bool(c, pas, path, "check_peer_ip", &li->passive.check_peer_ip);
}

static const char *const data_peer_names[] = { "client", "balancer", NULL };

static int parse_proxy_protocol(ctx_t *c, const char *lpath, const json_t *l, config_listener_t *li)
{
    static const keydef_t keys[] = { { "trusted", NULL }, { "data_peer", NULL }, { NULL, NULL } };
    char path[PATH_MAX_LEN], p[PATH_MAX_LEN];
    json_t *pp, *trusted;
    int data_peer = 0;

    if (get_member(c, l, lpath, "proxy_protocol", 0, JSON_OBJECT, "object", &pp) != FG_OK)
        return FG_CONFIG;
    if (pp == NULL)
        return FG_OK;
    subpath(path, lpath, "proxy_protocol");
    if (check_keys(c, pp, path, keys) != FG_OK ||
        get_member(c, pp, path, "trusted", 1, JSON_ARRAY, "array", &trusted) != FG_OK ||
        get_enum(c, pp, path, "data_peer", data_peer_names, &data_peer) != FG_OK)
        return FG_CONFIG;
    subpath(p, path, "trusted");
    size_t n = json_array_size(trusted);
    /* SECURITY: a PROXY header rewrites who the client is; without a list of
     * trusted senders anyone could claim any address. */
    if (n == 0)
        return fail(c, p, "must list at least one trusted network (the load balancers)");
    if (parse_cidr_list(c, p, trusted, &li->proxy_protocol.trusted, &li->proxy_protocol.n_trusted) != FG_OK)
        return FG_CONFIG;
    li->proxy_protocol.enabled = 1;
    li->proxy_protocol.data_peer_balancer = data_peer == 1;
    return FG_OK;
}

static int parse_active(ctx_t *c, const char *lpath, const json_t *l, config_listener_t *li)
{
    static const keydef_t keys[] = {
        { "enabled", NULL }, { "allow_low_ports", NULL }, { "source_port", NULL }, { NULL, NULL },
    };
    char path[PATH_MAX_LEN];
    json_t *act;

    li->active.enabled = 1;
    if (get_member(c, l, lpath, "active", 0, JSON_OBJECT, "object", &act) != FG_OK)
        return FG_CONFIG;
    if (act == NULL)
        return FG_OK;
    subpath(path, lpath, "active");
    if (check_keys(c, act, path, keys) != FG_OK ||
        get_bool(c, act, path, "enabled", &li->active.enabled) != FG_OK ||
        get_bool(c, act, path, "allow_low_ports", &li->active.allow_low_ports) != FG_OK ||
        get_uint(c, act, path, "source_port", 0, 65535, &li->active.source_port) != FG_OK)
        return FG_CONFIG;
    return FG_OK;
}

static const char *const mode_names[] = { "explicit", "implicit", NULL };
static const char *const data_mode_names[] = { "passive", "active", "client", NULL };
static const char *const protection_names[] = { "private", "any", "clear", NULL };

/* A backend object at path: the listener's own (the default route; intercept
 * allowed) or a route's. */
static int parse_backend_obj(ctx_t *c, const char *path, const json_t *be, int allow_intercept,
                             config_backend_t *b)
{
    static const keydef_t keys[] = {
        { "address", NULL }, { "data_mode", NULL }, { "allow", NULL },
        { "port", NULL },    { "source", NULL },    { NULL, NULL },
    };
    static const char *const source_names[] = { "proxy", "client", NULL };
    char p[PATH_MAX_LEN];
    const char *s;
    int dm = DATA_MODE_PASSIVE;

    if (check_keys(c, be, path, keys) != FG_OK || get_str(c, be, path, "address", 1, &s) != FG_OK)
        return FG_CONFIG;
    subpath(p, path, "address");
    json_t *allow = json_object_get(be, "allow");
    if (strcmp(s, "original-destination") == 0) {
        /* An intercepted client's server is the one it dialled: that is not a
         * choice a route can make, so only the default route may say so. */
        if (!allow_intercept)
            return fail(c, p, "\"original-destination\" only in the listener's own backend (the default route)");
        /* Interception: the destination the client dialled is the backend. */
        b->intercept = 1;
        if ((b->address.host = xstrdup(s)) == NULL)
            return fail_nomem(c);
        subpath(p, path, "allow");
        /* SECURITY: never a proxy to arbitrary destinations. */
        if (allow == NULL)
            return fail(c, p, "required with \"original-destination\" (the networks the servers are in)");
        if (!json_is_array(allow) || json_array_size(allow) == 0)
            return fail(c, p, "expected a non-empty array of CIDRs");
        if (parse_cidr_list(c, p, allow, &b->allow, &b->n_allow) != FG_OK)
            return FG_CONFIG;
        unsigned port = 0;
        if (get_uint(c, be, path, "port", 1, 65535, &port) != FG_OK)
            return FG_CONFIG;
        b->port = (uint16_t)port;
    } else {
        if (allow != NULL || json_object_get(be, "port") != NULL) {
            subpath(p, path, allow != NULL ? "allow" : "port");
            return fail(c, p, "only with \"address\": \"original-destination\"");
        }
        if (get_hostport(c, be, path, "address", 0, &b->address) != FG_OK)
            return FG_CONFIG;
    }
    int source = 0;
    if (get_enum(c, be, path, "data_mode", data_mode_names, &dm) != FG_OK ||
        get_enum(c, be, path, "source", source_names, &source) != FG_OK)
        return FG_CONFIG;
    b->data_mode = (data_mode_t)dm;
    b->source_client = source == 1;
    return FG_OK;
}

/* "backend": required unless the listener has routes (then it is the route
 * of the sessions no route matches, and without it those get a 5xx). */
static int parse_backend(ctx_t *c, const char *lpath, const json_t *l, config_listener_t *li)
{
    char path[PATH_MAX_LEN];
    json_t *be;

    if (get_member(c, l, lpath, "backend", 0, JSON_OBJECT, "object", &be) != FG_OK)
        return FG_CONFIG;
    subpath(path, lpath, "backend");
    if (be == NULL)
        return json_object_get(l, "routes") != NULL ? FG_OK : fail(c, path, "required");
    li->has_backend = 1;
    return parse_backend_obj(c, path, be, 1, &li->backend);
}

/* A route's user name is matched byte for byte against the USER argument:
 * anything but control bytes, at most CONFIG_ROUTE_USER_MAX bytes. */
static int valid_route_user(const char *s)
{
    size_t n = strlen(s);
    if (n > CONFIG_ROUTE_USER_MAX)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* The alias of USER name@alias stands for a host (the proxy convention), so
 * it has a host name's characters; never an '@' (the split is at the last). */
static int valid_route_alias(const char *s)
{
    size_t n = strlen(s);
    if (n > 253)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static const char *const route_keys[] = { "sni", "host", "user", "user_at", NULL }; /* config_route_kind_t order */

/* Would route a (earlier) take every session route b could match? */
static int route_covers(const config_route_t *a, const config_route_t *b)
{
    if (a->kind != b->kind)
        return 0;
    switch (a->kind) {
    case CONFIG_ROUTE_SNI:
    case CONFIG_ROUTE_HOST:
        return hostname_match(a->value, b->value, strlen(b->value));
    case CONFIG_ROUTE_USER:
        return strcmp(a->value, b->value) == 0;
    case CONFIG_ROUTE_USER_AT:
        return hostname_equal(a->value, strlen(a->value), b->value, strlen(b->value));
    }
    return 0;
}

static int parse_route(ctx_t *c, const char *path, const json_t *e, config_listener_t *li, config_route_t *r)
{
    static const keydef_t keys[] = {
        { "sni", NULL }, { "host", NULL }, { "user", NULL }, { "user_at", NULL }, { "backend", NULL }, { NULL, NULL },
    };
    char p[PATH_MAX_LEN], bp[PATH_MAX_LEN];
    const char *value = NULL;
    int kind = -1;
    json_t *be;

    if (expect_type(c, path, e, JSON_OBJECT, "object") != FG_OK || check_keys(c, e, path, keys) != FG_OK)
        return FG_CONFIG;
    for (int k = 0; route_keys[k] != NULL; k++) {
        if (json_object_get(e, route_keys[k]) == NULL)
            continue;
        if (kind >= 0) {
            subpath(p, path, route_keys[k]);
            return fail(c, p, "a route matches on one key; this one has \"%s\" already", route_keys[kind]);
        }
        kind = k;
    }
    if (kind < 0)
        return fail(c, path, "needs one of \"sni\", \"host\", \"user\" or \"user_at\"");
    if (get_str(c, e, path, route_keys[kind], 1, &value) != FG_OK)
        return FG_CONFIG;
    subpath(p, path, route_keys[kind]);
    r->kind = (config_route_kind_t)kind;
    switch (r->kind) {
    case CONFIG_ROUTE_SNI:
    case CONFIG_ROUTE_HOST:
        if (!hostname_pattern_valid(value))
            return fail(c, p, "\"%s\": not a server name (letters, digits, '-', '.', optional leading \"*.\")",
                        show(value).s);
        break;
    case CONFIG_ROUTE_USER:
        if (!valid_route_user(value))
            return fail(c, p, "\"%s\": a user name without control characters, at most %u bytes", show(value).s,
                        CONFIG_ROUTE_USER_MAX);
        break;
    case CONFIG_ROUTE_USER_AT:
        if (!valid_route_alias(value))
            return fail(c, p, "\"%s\": an alias of letters, digits, '-', '_' and '.', at most 253 bytes",
                        show(value).s);
        break;
    }
    if ((r->value = xstrdup(value)) == NULL)
        return fail_nomem(c);
    /* First match wins: a route that an earlier one always takes first is a
     * mistake in the table (a duplicate, or a name under an earlier "*."). */
    for (size_t i = 0; li->routes + i != r; i++) {
        const config_route_t *o = &li->routes[i];
        if (!route_covers(o, r))
            continue;
        if (strlen(o->value) == strlen(r->value) && route_covers(r, o))
            return fail(c, p, "\"%s\" is listed twice: also routes[%zu]", show(value).s, i);
        return fail(c, p, "\"%s\" can never match: routes[%zu] \"%s\" takes it first", show(value).s, i,
                    show(o->value).s);
    }
    if (get_member(c, e, path, "backend", 1, JSON_OBJECT, "object", &be) != FG_OK)
        return FG_CONFIG;
    subpath(bp, path, "backend");
    return parse_backend_obj(c, bp, be, 0, &r->backend);
}

static int parse_routes(ctx_t *c, const char *lpath, const json_t *l, config_listener_t *li)
{
    char path[PATH_MAX_LEN];
    json_t *arr;
    size_t n;
    int rc;

    if (get_member(c, l, lpath, "routes", 0, JSON_ARRAY, "array", &arr) != FG_OK)
        return FG_CONFIG;
    if (arr == NULL)
        return FG_OK;
    subpath(path, lpath, "routes");
    n = json_array_size(arr);
    if (n == 0)
        return fail(c, path, "must not be empty (leave it out: the backend then serves every session)");
    if (n > CONFIG_ROUTES_MAX)
        return fail(c, path, "%zu routes: at most %u", n, CONFIG_ROUTES_MAX);
    li->routes = calloc(n, sizeof *li->routes);
    if (li->routes == NULL)
        return fail_nomem(c);
    for (size_t i = 0; i < n; i++) {
        char ep[PATH_MAX_LEN];
        subindex(ep, path, i);
        li->n_routes = i + 1;
        if ((rc = parse_route(c, ep, json_array_get(arr, i), li, &li->routes[i])) != FG_OK)
            return rc;
    }
    return FG_OK;
}

/* ftpsgate's own 220 line: printable ASCII only, so that it can neither
 * break the reply line (CR/LF) nor carry a terminal escape to the client. */
static int parse_greeting(ctx_t *c, const char *lpath, const json_t *l, config_listener_t *li)
{
    char p[PATH_MAX_LEN];
    const char *s;

    if (get_str(c, l, lpath, "greeting", 0, &s) != FG_OK)
        return FG_CONFIG;
    if (s == NULL)
        s = CONFIG_DEFAULT_GREETING;
    subpath(p, lpath, "greeting");
    if (strlen(s) > CONFIG_GREETING_MAX)
        return fail(c, p, "%zu bytes: at most %u", strlen(s), CONFIG_GREETING_MAX);
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
            return fail(c, p, "\"%s\": printable ASCII only (no line breaks or control characters)", show(s).s);
    if ((li->greeting = xstrdup(s)) == NULL)
        return fail_nomem(c);
    return FG_OK;
}

static int parse_sni(ctx_t *c, const char *path, const json_t *l, const config_t *cfg,
                     config_listener_t *li)
{
    char p[PATH_MAX_LEN], kp[PATH_MAX_LEN];
    json_t *sni;
    const char *name;
    json_t *v;
    size_t i;

    if (get_member(c, l, path, "sni", 0, JSON_OBJECT, "object", &sni) != FG_OK)
        return FG_CONFIG;
    if (sni == NULL || json_object_size(sni) == 0)
        return FG_OK;
    subpath(p, path, "sni");
    li->sni = calloc(json_object_size(sni), sizeof *li->sni);
    if (li->sni == NULL)
        return fail_nomem(c);
    json_object_foreach(sni, name, v) {
        subpath(kp, p, name);
        if (!hostname_pattern_valid(name))
            return fail(c, kp, "not a server name (letters, digits, '-', '.', optional leading \"*.\")");
        if (!json_is_string(v))
            return fail(c, kp, "expected string (a key of tls)");
        for (i = 0; i < cfg->n_tls; i++)
            if (strcmp(cfg->tls[i].id, json_string_value(v)) == 0)
                break;
        if (i == cfg->n_tls)
            return fail(c, kp, "\"%s\" is not an identity under tls", show(json_string_value(v)).s);
        config_sni_t *e = &li->sni[li->n_sni];
        if ((e->name = xstrdup(name)) == NULL)
            return fail_nomem(c);
        e->tls_index = i;
        li->n_sni++;
    }
    return FG_OK;
}

/* policy.deny_commands: verbs refused with 502 and never forwarded. Any verb
 * of 3 or 4 letters, known to ftpsgate or not (a backend's own extensions
 * too), stored upper-case as ftp_cmd_parse gives it. */
static int parse_deny_commands(ctx_t *c, const char *pp, const json_t *pol, config_listener_t *li)
{
    static const struct {
        const char *verb, *why;
    } needed[] = {
        /* SECURITY: the proxy's own TLS set-up and the way out are never
         * subject to a deny list: denying them would leave clients unable to
         * protect the session (RFC 4217) or to end it (RFC 959 §4.1.1). */
        { "AUTH", "ftpsgate needs it to start TLS on the control connection (RFC 4217 §4)" },
        { "PBSZ", "ftpsgate needs it before PROT (RFC 4217 §8)" },
        { "PROT", "ftpsgate needs it to protect data connections (RFC 4217 §9)" },
        { "QUIT", "a client must always be able to end its session (RFC 959 §4.1.1)" },
    };
    char p[PATH_MAX_LEN];
    json_t *arr;
    size_t n;

    if (get_member(c, pol, pp, "deny_commands", 0, JSON_ARRAY, "array", &arr) != FG_OK)
        return FG_CONFIG;
    if (arr == NULL)
        return FG_OK;
    subpath(p, pp, "deny_commands");
    n = json_array_size(arr);
    if (n > CONFIG_DENY_MAX)
        return fail(c, p, "%zu verbs: at most %u", n, CONFIG_DENY_MAX);
    if (n == 0)
        return FG_OK;
    li->policy.deny_commands = calloc(n, sizeof *li->policy.deny_commands);
    if (li->policy.deny_commands == NULL)
        return fail_nomem(c);
    for (size_t i = 0; i < n; i++) {
        char ep[PATH_MAX_LEN], verb[5];
        const json_t *e = json_array_get(arr, i);
        const char *s;
        size_t len;

        subindex(ep, p, i);
        if (!json_is_string(e))
            return fail(c, ep, "expected string (a command verb), got %s", type_name(e));
        s = json_string_value(e);
        len = strlen(s);
        if (len < 3 || len > 4)
            return fail(c, ep, "\"%s\": not a command verb (3 or 4 letters)", show(s).s);
        for (size_t k = 0; k < len; k++) {
            char ch = s[k];
            if (ch >= 'a' && ch <= 'z')
                ch = (char)(ch - 'a' + 'A');
            if (ch < 'A' || ch > 'Z')
                return fail(c, ep, "\"%s\": not a command verb (3 or 4 letters)", show(s).s);
            verb[k] = ch;
        }
        verb[len] = '\0';
        for (size_t k = 0; k < sizeof needed / sizeof needed[0]; k++)
            if (strcmp(verb, needed[k].verb) == 0)
                return fail(c, ep, "\"%s\" cannot be denied: %s", verb, needed[k].why);
        for (size_t k = 0; k < li->policy.n_deny_commands; k++)
            if (strcmp(verb, li->policy.deny_commands[k]) == 0)
                return fail(c, ep, "\"%s\" is listed twice: also %s[%zu]", verb, p, k);
        memcpy(li->policy.deny_commands[li->policy.n_deny_commands++], verb, len + 1);
    }
    return FG_OK;
}

/* "require_session_reuse": true (this control connection's sessions only),
 * "client" (also sessions issued to the same address and login on its other
 * control connections), or false. */
static int get_session_reuse(ctx_t *c, const json_t *pol, const char *path, session_reuse_t *out)
{
    char p[PATH_MAX_LEN];
    const json_t *v = json_object_get(pol, "require_session_reuse");
    if (v == NULL)
        return FG_OK;
    if (json_is_boolean(v)) {
        *out = json_is_true(v) ? SESSION_REUSE_CONNECTION : SESSION_REUSE_OFF;
        return FG_OK;
    }
    if (json_is_string(v) && strcmp(json_string_value(v), "client") == 0) {
        *out = SESSION_REUSE_CLIENT;
        return FG_OK;
    }
    subpath(p, path, "require_session_reuse");
    return fail(c, p, "must be true, false or \"client\"");
}

static int parse_listener(ctx_t *c, const char *path, const json_t *l, config_t *cfg,
                          config_listener_t *li)
{
    static const keydef_t keys[] = {
        { "name", NULL },    { "bind", NULL },    { "mode", NULL },
        { "tls", NULL },     { "backend", NULL }, { "passive", NULL },
        { "policy", NULL },  { "proxy_protocol", NULL },
        { "sni", NULL },     { "active", NULL },  { "transparent", NULL },
        { "routes", NULL },  { "greeting", NULL }, { NULL, NULL },
    };
    static const keydef_t policy_keys[] = {
        { "login_requires_tls", NULL }, { "data_protection", NULL },
        { "listing_protection", NULL }, { "ccc", NULL },
        { "require_session_reuse", NULL }, { "upload_requires_close_notify", NULL },
        { "read_only", NULL }, { "deny_commands", NULL }, { "max_upload_bytes", NULL },
        { "rate_limit", NULL }, { NULL, NULL },
    };
    char p[PATH_MAX_LEN], pp[PATH_MAX_LEN];
    const char *s;
    json_t *pol;
    int mode = -1, prot = PROTECT_PRIVATE, listing = -1, rc;
    size_t i;

    li->passive.check_peer_ip = 1;
    li->policy.login_requires_tls = 1;
    li->policy.data_protection = PROTECT_PRIVATE;
    li->policy.listing_protection = PROTECT_PRIVATE;
    li->policy.require_session_reuse = SESSION_REUSE_CONNECTION;
    li->policy.upload_requires_close_notify = 1;

    if (expect_type(c, path, l, JSON_OBJECT, "object") != FG_OK || check_keys(c, l, path, keys) != FG_OK)
        return FG_CONFIG;

    if (get_str(c, l, path, "name", 1, &s) != FG_OK)
        return FG_CONFIG;
    subpath(p, path, "name");
    if (!valid_name(s))
        return fail(c, p, "\"%s\": must match [A-Za-z0-9_.-]{1,64}", show(s).s);
    for (i = 0; cfg->listeners + i != li; i++)
        if (strcmp(cfg->listeners[i].name, s) == 0)
            return fail(c, p, "\"%s\" is already the name of listeners[%zu]", s, i);
    if ((li->name = xstrdup(s)) == NULL)
        return fail_nomem(c);

    if ((rc = get_hostport(c, l, path, "bind", 1, &li->bind)) != FG_OK)
        return rc;

    subpath(p, path, "mode");
    if (get_enum(c, l, path, "mode", mode_names, &mode) != FG_OK)
        return FG_CONFIG;
    if (mode < 0)
        return fail(c, p, "required");
    li->mode = (listen_mode_t)mode;

    if (get_str(c, l, path, "tls", 1, &s) != FG_OK)
        return FG_CONFIG;
    for (i = 0; i < cfg->n_tls; i++)
        if (strcmp(cfg->tls[i].id, s) == 0)
            break;
    subpath(p, path, "tls");
    if (i == cfg->n_tls)
        return fail(c, p, "\"%s\" is not an identity under tls", show(s).s);
    li->tls_index = i;

    if (get_bool(c, l, path, "transparent", &li->transparent) != FG_OK)
        return FG_CONFIG;
    if ((rc = parse_sni(c, path, l, cfg, li)) != FG_OK || (rc = parse_active(c, path, l, li)) != FG_OK ||
        (rc = parse_proxy_protocol(c, path, l, li)) != FG_OK)
        return rc;
    if ((rc = parse_greeting(c, path, l, li)) != FG_OK || (rc = parse_backend(c, path, l, li)) != FG_OK ||
        (rc = parse_routes(c, path, l, li)) != FG_OK || (rc = parse_passive(c, path, l, li)) != FG_OK)
        return rc;

    if (get_member(c, l, path, "policy", 0, JSON_OBJECT, "object", &pol) != FG_OK)
        return FG_CONFIG;
    if (pol != NULL) {
        subpath(pp, path, "policy");
        if (check_keys(c, pol, pp, policy_keys) != FG_OK ||
            get_bool(c, pol, pp, "login_requires_tls", &li->policy.login_requires_tls) != FG_OK ||
            get_enum(c, pol, pp, "data_protection", protection_names, &prot) != FG_OK ||
            get_enum(c, pol, pp, "listing_protection", protection_names, &listing) != FG_OK ||
            get_bool(c, pol, pp, "ccc", &li->policy.ccc_allowed) != FG_OK ||
            get_session_reuse(c, pol, pp, &li->policy.require_session_reuse) != FG_OK ||
            get_bool(c, pol, pp, "upload_requires_close_notify", &li->policy.upload_requires_close_notify) != FG_OK ||
            get_bool(c, pol, pp, "read_only", &li->policy.read_only) != FG_OK ||
            (rc = parse_deny_commands(c, pp, pol, li)) != FG_OK ||
            get_u64(c, pol, pp, "max_upload_bytes", 0, INT64_MAX, &li->policy.max_upload_bytes) != FG_OK ||
            get_u64(c, pol, pp, "rate_limit", 0, INT64_MAX, &li->policy.rate_limit) != FG_OK)
            return rc != FG_OK ? rc : FG_CONFIG;
        if (li->policy.rate_limit != 0 &&
            (li->policy.rate_limit < RATELIMIT_MIN_RATE || li->policy.rate_limit > RATELIMIT_MAX_RATE)) {
            subpath(p, pp, "rate_limit");
            /* Below the minimum, the pause after one TLS record (16 KiB) nears
             * transfer_stall_timeout; above the maximum (beyond what one
             * connection carries) the bucket's arithmetic could overflow. */
            return fail(c, p, "%" PRIu64 " is out of range (0 for none, or %llu..%llu bytes/s)", li->policy.rate_limit,
                        (unsigned long long)RATELIMIT_MIN_RATE, (unsigned long long)RATELIMIT_MAX_RATE);
        }
        li->policy.data_protection = (data_protection_t)prot;
        /* Listings follow the file rule unless set on their own. */
        li->policy.listing_protection = listing < 0 ? li->policy.data_protection : (data_protection_t)listing;
        if (li->policy.ccc_allowed && li->mode == LISTEN_IMPLICIT) {
            subpath(p, pp, "ccc");
            return fail(c, p, "CCC is not available on implicit listeners (MS-FTPS)");
        }
    }
    /* HOST routes need the HOST command: denying it leaves them unreachable. */
    for (i = 0; i < li->policy.n_deny_commands; i++) {
        if (strcmp(li->policy.deny_commands[i], "HOST") != 0)
            continue;
        for (size_t j = 0; j < li->n_routes; j++)
            if (li->routes[j].kind == CONFIG_ROUTE_HOST) {
                char dp[PATH_MAX_LEN];
                subpath(dp, path, "policy.deny_commands");
                subindex(p, dp, i);
                return fail(c, p, "\"HOST\" cannot be denied: routes[%zu] matches on HOST", j);
            }
    }
    return FG_OK;
}

static int parse_listeners(ctx_t *c, const json_t *root, config_t *cfg)
{
    json_t *arr;
    size_t n, i;
    int rc;

    if (get_member(c, root, "", "listeners", 1, JSON_ARRAY, "array", &arr) != FG_OK)
        return FG_CONFIG;
    n = json_array_size(arr);
    if (n == 0)
        return fail(c, "listeners", "must contain at least one listener");
    cfg->listeners = calloc(n, sizeof *cfg->listeners);
    if (cfg->listeners == NULL)
        return fail_nomem(c);
    for (i = 0; i < n; i++) {
        char path[PATH_MAX_LEN];
        subindex(path, "listeners", i);
        cfg->n_listeners = i + 1;
        if ((rc = parse_listener(c, path, json_array_get(arr, i), cfg, &cfg->listeners[i])) != FG_OK)
            return rc;
    }
    return FG_OK;
}

/* log.transfer_log: the audit log file. Absolute, because SIGUSR1 reopens it
 * by this name for log rotation and nobody should have to know ftpsgate's
 * working directory to find it. */
static int parse_transfer_log(ctx_t *c, const json_t *lg, config_t *cfg)
{
    const char *s;

    if (get_str(c, lg, "log", "transfer_log", 0, &s) != FG_OK)
        return FG_CONFIG;
    if (s == NULL)
        return FG_OK;
    if (s[0] != '/')
        return fail(c, "log.transfer_log", "\"%s\": must be an absolute path", show(s).s);
    if (strlen(s) >= 4096)
        return fail(c, "log.transfer_log", "longer than 4095 bytes");
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            return fail(c, "log.transfer_log", "\"%s\": control characters in a path", show(s).s);
    if ((cfg->log.transfer_log = xstrdup(s)) == NULL)
        return fail_nomem(c);
    return FG_OK;
}

static int parse_log(ctx_t *c, const json_t *root, config_t *cfg)
{
    static const keydef_t keys[] = {
        { "level", NULL }, { "format", NULL }, { "transfer_log", NULL }, { NULL, NULL },
    };
    static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
    static const char *const formats[] = { "text", "json", NULL };
    json_t *lg;
    int level = LOG_LEVEL_INFO, fmt = LOGFMT_TEXT;

    if (get_member(c, root, "", "log", 0, JSON_OBJECT, "object", &lg) != FG_OK)
        return FG_CONFIG;
    if (lg != NULL && (check_keys(c, lg, "log", keys) != FG_OK ||
                       get_enum(c, lg, "log", "level", levels, &level) != FG_OK ||
                       get_enum(c, lg, "log", "format", formats, &fmt) != FG_OK))
        return FG_CONFIG;
    cfg->log.level = level;
    cfg->log.format = (log_format_t)fmt;
    return lg != NULL ? parse_transfer_log(c, lg, cfg) : FG_OK;
}

/* SECURITY: admin.token is a secret: its errors name the rule broken, never
 * the value. Printable ASCII without spaces (what a Bearer token and a Basic
 * password can carry unchanged), long enough not to be guessed. */
static int check_token(ctx_t *c, const char *path, const char *s, size_t len)
{
    if (len < CONFIG_TOKEN_MIN || len > CONFIG_TOKEN_MAX)
        return fail(c, path, "must be %u to %u characters long", CONFIG_TOKEN_MIN, CONFIG_TOKEN_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return fail(c, path, "only printable ASCII characters without spaces are allowed");
    return FG_OK;
}

/* admin.token_file: an absolute path whose content (one trailing newline
 * dropped) is the token; read once, at load (a reload reads it again). */
static int read_token_file(ctx_t *c, const char *path, config_t *cfg)
{
    char buf[CONFIG_TOKEN_MAX + 2];
    if (path[0] != '/')
        return fail(c, "admin.token_file", "\"%s\": must be an absolute path", show(path).s);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return fail(c, "admin.token_file", "\"%s\": cannot open: %s", show(path).s, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf, f);
    int err = ferror(f);
    fclose(f);
    if (err)
        return fail(c, "admin.token_file", "\"%s\": cannot read", show(path).s);
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    int rc = check_token(c, "admin.token_file", buf, n);
    if (rc == FG_OK && (cfg->admin.token = malloc(n + 1)) == NULL)
        rc = fail_nomem(c);
    if (rc == FG_OK) {
        memcpy(cfg->admin.token, buf, n);
        cfg->admin.token[n] = '\0';
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

static int parse_admin_token(ctx_t *c, const json_t *ad, config_t *cfg)
{
    json_t *tok, *file;
    if (get_member(c, ad, "admin", "token", 0, JSON_STRING, "string", &tok) != FG_OK ||
        get_member(c, ad, "admin", "token_file", 0, JSON_STRING, "string", &file) != FG_OK)
        return FG_CONFIG;
    if (tok != NULL && file != NULL)
        return fail(c, "admin.token_file", "give admin.token or admin.token_file, not both");
    if (file != NULL)
        return read_token_file(c, json_string_value(file), cfg);
    if (tok == NULL)
        return FG_OK;
    const char *s = json_string_value(tok);
    size_t len = json_string_length(tok);
    if (strlen(s) != len)
        return fail(c, "admin.token", "only printable ASCII characters without spaces are allowed");
    if (check_token(c, "admin.token", s, len) != FG_OK)
        return FG_CONFIG;
    if ((cfg->admin.token = xstrdup(s)) == NULL)
        return fail_nomem(c);
    return FG_OK;
}

static int parse_admin(ctx_t *c, const json_t *root, config_t *cfg)
{
    static const keydef_t keys[] = {
        { "bind", NULL }, { "token", NULL }, { "token_file", NULL }, { NULL, NULL },
    };
    json_t *ad;
    int rc;

    if (get_member(c, root, "", "admin", 0, JSON_OBJECT, "object", &ad) != FG_OK)
        return FG_CONFIG;
    if (ad == NULL)
        return FG_OK;
    if (check_keys(c, ad, "admin", keys) != FG_OK)
        return FG_CONFIG;
    if ((rc = get_hostport(c, ad, "admin", "bind", 1, &cfg->admin.bind)) != FG_OK)
        return rc;
    if ((rc = parse_admin_token(c, ad, cfg)) != FG_OK)
        return rc;
    cfg->admin.enabled = 1;
    return FG_OK;
}

static int parse_user(ctx_t *c, const json_t *root, config_t *cfg)
{
    const char *s;

    if (get_str(c, root, "", "user", 0, &s) != FG_OK)
        return FG_CONFIG;
    if (s == NULL)
        return FG_OK;
    for (const char *q = s; *q != '\0'; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == ':' || *q == '/')
            return fail(c, "user", "\"%s\": not a valid user name", show(s).s);
    if ((cfg->user = xstrdup(s)) == NULL)
        return fail_nomem(c);
    return FG_OK;
}

static int parse_limits(ctx_t *c, const json_t *root, config_t *cfg)
{
    static const keydef_t keys[] = {
        { "max_sessions", NULL },   { "max_sessions_per_ip", NULL },  { "max_line", NULL },
        { "max_line_prelogin", NULL }, { "login_timeout", NULL },     { "idle_timeout", NULL },
        { "data_connect_timeout", NULL }, { "transfer_stall_timeout", NULL },
        { "backend_connect_timeout", NULL }, { "tcp_keepalive", NULL }, { NULL, NULL },
    };
    config_limits_t *lim = &cfg->limits;
    json_t *o;

    lim->max_sessions = 1000;
    lim->max_sessions_per_ip = 50;
    lim->max_line = 4096;
    lim->max_line_prelogin = 1024;
    lim->login_timeout_s = 60;
    lim->idle_timeout_s = 600;
    lim->data_connect_timeout_s = 30;
    lim->transfer_stall_timeout_s = 300;
    lim->backend_connect_timeout_s = 10;
    lim->tcp_keepalive_s = 60;

    if (get_member(c, root, "", "limits", 0, JSON_OBJECT, "object", &o) != FG_OK)
        return FG_CONFIG;
    if (o == NULL)
        return FG_OK;
    if (check_keys(c, o, "limits", keys) != FG_OK ||
        get_uint(c, o, "limits", "max_sessions", 0, 1000000, &lim->max_sessions) != FG_OK ||
        get_uint(c, o, "limits", "max_sessions_per_ip", 0, 1000000, &lim->max_sessions_per_ip) != FG_OK ||
        get_uint(c, o, "limits", "max_line", 512, 65536, &lim->max_line) != FG_OK ||
        get_uint(c, o, "limits", "max_line_prelogin", 512, 65536, &lim->max_line_prelogin) != FG_OK ||
        get_uint(c, o, "limits", "login_timeout", 1, 86400, &lim->login_timeout_s) != FG_OK ||
        get_uint(c, o, "limits", "idle_timeout", 1, 86400, &lim->idle_timeout_s) != FG_OK ||
        get_uint(c, o, "limits", "data_connect_timeout", 1, 86400, &lim->data_connect_timeout_s) != FG_OK ||
        get_uint(c, o, "limits", "transfer_stall_timeout", 1, 86400, &lim->transfer_stall_timeout_s) != FG_OK ||
        get_uint(c, o, "limits", "backend_connect_timeout", 1, 3600, &lim->backend_connect_timeout_s) != FG_OK ||
        get_uint(c, o, "limits", "tcp_keepalive", 0, 7200, &lim->tcp_keepalive_s) != FG_OK)
        return FG_CONFIG;
    /* A small max_line without max_line_prelogin lowers the default
     * pre-login cap with it instead of failing the check below. */
    if (json_object_get(o, "max_line_prelogin") == NULL && lim->max_line < lim->max_line_prelogin)
        lim->max_line_prelogin = lim->max_line;
    /* the pre-login cap exists to be the stricter one */
    if (lim->max_line_prelogin > lim->max_line)
        return fail(c, "limits.max_line_prelogin", "%u is above limits.max_line (%u)",
                    lim->max_line_prelogin, lim->max_line);
    return FG_OK;
}

/* ---- cross-checks ----------------------------------------------------- */

typedef struct {
    int family;
    uint8_t addr[16];
    uint16_t port;
} bindaddr_t;

static void to_bindaddr(const config_hostport_t *hp, bindaddr_t *b)
{
    memset(b, 0, sizeof *b);
    b->port = hp->port;
    if (inet_pton(AF_INET, hp->host, b->addr) == 1)
        b->family = AF_INET;
    else if (inet_pton(AF_INET6, hp->host, b->addr) == 1)
        b->family = AF_INET6;
}

static int is_wildcard(const bindaddr_t *b)
{
    static const uint8_t zero[16];
    return memcmp(b->addr, zero, b->family == AF_INET ? 4 : 16) == 0;
}

/* Would bind(2) of both fail with EADDRINUSE? Same family and port, and the
 * same address or either one the wildcard. ([::] and 0.0.0.0 can coexist
 * with IPV6_V6ONLY, so different families are not compared.) */
static int binds_conflict(const bindaddr_t *a, const bindaddr_t *b)
{
    if (a->family != b->family || a->port != b->port)
        return 0;
    return is_wildcard(a) || is_wildcard(b) ||
           memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

/* hp as the user wrote it: "host:port" or "[v6]:port". */
static const char *fmt_hostport(const config_hostport_t *hp, char *buf, size_t cap)
{
    if (strchr(hp->host, ':') != NULL)
        snprintf(buf, cap, "[%s]:%u", hp->host, hp->port);
    else
        snprintf(buf, cap, "%s:%u", hp->host, hp->port);
    return buf;
}

static int cross_check(ctx_t *c, config_t *cfg)
{
    char p[PATH_MAX_LEN], h1[300], h2[300];
    bindaddr_t bi, bj, ba;

    if (cfg->admin.enabled)
        to_bindaddr(&cfg->admin.bind, &ba);
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        config_listener_t *li = &cfg->listeners[i];
        to_bindaddr(&li->bind, &bi);
        for (size_t j = 0; j < i; j++) {
            config_listener_t *lj = &cfg->listeners[j];
            to_bindaddr(&lj->bind, &bj);
            if (binds_conflict(&bi, &bj)) {
                snprintf(p, sizeof p, "listeners[%zu].bind", i);
                return fail(c, p, "\"%s\" clashes with \"%s\" of listeners[%zu] \"%s\"",
                            fmt_hostport(&li->bind, h1, sizeof h1),
                            fmt_hostport(&lj->bind, h2, sizeof h2), j, lj->name);
            }
        }
        if (cfg->admin.enabled && binds_conflict(&ba, &bi))
            return fail(c, "admin.bind", "\"%s\" clashes with \"%s\" of listeners[%zu] \"%s\"",
                        fmt_hostport(&cfg->admin.bind, h1, sizeof h1),
                        fmt_hostport(&li->bind, h2, sizeof h2), i, li->name);
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        config_listener_t *li = &cfg->listeners[i];
        snprintf(p, sizeof p, "listeners[%zu].passive.ports", i);
        /* Each listener owns its passive pool; a shared port would let one
         * listener's data connection be accepted by the other's session. */
        for (size_t j = 0; j < i; j++) {
            config_listener_t *lj = &cfg->listeners[j];
            if (li->passive.first <= lj->passive.last && lj->passive.first <= li->passive.last)
                return fail(c, p, "\"%u-%u\" of \"%s\" overlaps \"%u-%u\" of listeners[%zu] \"%s\"",
                            li->passive.first, li->passive.last, li->name, lj->passive.first,
                            lj->passive.last, j, lj->name);
        }
        /* ... and must not contain a control or admin port we listen on. */
        for (size_t j = 0; j < cfg->n_listeners; j++) {
            uint16_t port = cfg->listeners[j].bind.port;
            if (port >= li->passive.first && port <= li->passive.last)
                return fail(c, p, "\"%u-%u\" contains port %u of listeners[%zu] \"%s\" bind",
                            li->passive.first, li->passive.last, port, j, cfg->listeners[j].name);
        }
        if (cfg->admin.enabled && cfg->admin.bind.port >= li->passive.first &&
            cfg->admin.bind.port <= li->passive.last)
            return fail(c, p, "\"%u-%u\" contains port %u of admin.bind", li->passive.first,
                        li->passive.last, cfg->admin.bind.port);
    }
    return FG_OK;
}

/* ---- entry points ----------------------------------------------------- */

static int validate(ctx_t *c, const json_t *root, config_t *cfg)
{
    static const keydef_t keys[] = {
        { "tls", NULL }, { "listeners", NULL }, { "log", NULL },    { "admin", NULL },
        { "user", NULL }, { "limits", NULL },   { "workers", NULL }, { NULL, NULL },
    };
    int rc;

    if (!json_is_object(root))
        return fail(c, "(root)", "expected object, got %s", type_name(root));
    if ((rc = check_keys(c, root, "", keys)) != FG_OK || (rc = parse_tls(c, root, cfg)) != FG_OK ||
        (rc = parse_listeners(c, root, cfg)) != FG_OK || (rc = parse_log(c, root, cfg)) != FG_OK ||
        (rc = parse_admin(c, root, cfg)) != FG_OK || (rc = parse_user(c, root, cfg)) != FG_OK ||
        (rc = get_uint(c, root, "", "workers", 1, CONFIG_WORKERS_MAX, &cfg->workers)) != FG_OK ||
        (rc = parse_limits(c, root, cfg)) != FG_OK || (rc = cross_check(c, cfg)) != FG_OK)
        return rc;
    return FG_OK;
}

/* file: NULL for a string, else named in syntax errors. */
static int load_buffer(const char *file, const char *buf, size_t len, config_t **out, char *err,
                       size_t errlen)
{
    ctx_t c = { err, errlen };
    json_error_t je;
    json_t *root;
    config_t *cfg;
    int rc;

    *out = NULL;
    if (errlen > 0)
        err[0] = '\0';
    /* Duplicate keys are refused: with two "data_protection" keys, which one
     * wins would be an accident of the parser. */
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        /* jansson quotes the offending input: keep the message one line */
        for (char *q = je.text; *q != '\0'; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f)
                *q = '?';
        if (file != NULL)
            return fail(&c, file, "line %d, column %d: %s", je.line, je.column, je.text);
        return fail(&c, NULL, "line %d, column %d: %s", je.line, je.column, je.text);
    }
    cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        json_decref(root);
        return fail_nomem(&c);
    }
    rc = validate(&c, root, cfg);
    json_decref(root);
    if (rc != FG_OK) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return FG_OK;
}

int config_load_string(const char *json, config_t **out, char *err, size_t errlen)
{
    if (json == NULL || out == NULL) {
        if (errlen > 0)
            snprintf(err, errlen, "no configuration given");
        return FG_CONFIG;
    }
    return load_buffer(NULL, json, strlen(json), out, err, errlen);
}

int config_load_file(const char *path, config_t **out, char *err, size_t errlen)
{
    ctx_t c = { err, errlen };
    FILE *f;
    char *buf;
    size_t len;
    int rc;

    if (out == NULL || path == NULL)
        return fail(&c, NULL, "no configuration file given");
    *out = NULL;
    f = fopen(path, "rb");
    if (f == NULL)
        return fail(&c, path, "cannot open: %s", strerror(errno));
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return fail_nomem(&c);
    }
    len = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        rc = fail(&c, path, "cannot read: %s", strerror(errno));
    } else if (len > CONFIG_FILE_MAX) {
        rc = fail(&c, path, "larger than %d bytes", CONFIG_FILE_MAX);
    } else {
        rc = load_buffer(path, buf, len, out, err, errlen);
    }
    free(buf);
    fclose(f);
    return rc;
}

static void free_hostport(config_hostport_t *hp)
{
    free(hp->host);
}

void config_free(config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->n_tls; i++) {
        config_tls_t *t = &cfg->tls[i];
        free(t->id);
        free(t->cert);
        free(t->key);
        free(t->min_version);
        free(t->max_version);
        free(t->ciphers);
        free(t->ciphersuites);
        free(t->groups);
        free(t->client_ca);
    }
    free(cfg->tls);
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        config_listener_t *l = &cfg->listeners[i];
        free(l->name);
        free_hostport(&l->bind);
        free_hostport(&l->backend.address);
        for (size_t j = 0; j < l->passive.n_announce; j++)
            free(l->passive.announce[j].address);
        free(l->passive.announce);
        for (size_t j = 0; j < l->n_sni; j++)
            free(l->sni[j].name);
        free(l->sni);
        free(l->proxy_protocol.trusted);
        free(l->backend.allow);
        for (size_t j = 0; j < l->n_routes; j++) {
            free(l->routes[j].value);
            free_hostport(&l->routes[j].backend.address);
            free(l->routes[j].backend.allow);
        }
        free(l->routes);
        free(l->greeting);
        free(l->policy.deny_commands);
    }
    free(cfg->listeners);
    free(cfg->log.transfer_log);
    free_hostport(&cfg->admin.bind);
    if (cfg->admin.token != NULL) {
        OPENSSL_cleanse(cfg->admin.token, strlen(cfg->admin.token));
        free(cfg->admin.token);
    }
    free(cfg->user);
    free(cfg);
}
