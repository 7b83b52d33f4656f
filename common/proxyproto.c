#include "proxyproto.h"

#include <arpa/inet.h>
#include <string.h>

#include "fgerr.h"
#include "netaddr.h"
#include "numparse.h"

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Splits the next space-separated field off [*p, end). */
static int next_field(const char **p, const char *end, const char **f, size_t *flen)
{
    const char *s = *p;
    const char *sp = memchr(s, ' ', (size_t)(end - s));
    const char *e = sp ? sp : end;
    if (e == s)
        return FG_SYNTAX;
    *f = s;
    *flen = (size_t)(e - s);
    *p = sp ? sp + 1 : end;
    return FG_OK;
}

static int parse_ip_port(int family, const char *ip, size_t iplen, const char *port, size_t portlen,
                         struct sockaddr_storage *out)
{
    char buf[INET6_ADDRSTRLEN];
    uint64_t p;
    if (iplen >= sizeof buf || num_parse_u64(port, portlen, 65535, &p) != FG_OK)
        return FG_SYNTAX;
    /* SECURITY: strict numbers; a port with a sign or leading junk is refused. */
    if (portlen > 1 && port[0] == '0')
        return FG_SYNTAX;
    memcpy(buf, ip, iplen);
    buf[iplen] = '\0';
    /* The address must be of the family the line names (TCP4 / TCP6). */
    if (netaddr_parse_ip(buf, (uint16_t)p, out) != FG_OK || out->ss_family != family)
        return FG_SYNTAX;
    return FG_OK;
}

static int parse_v1(const unsigned char *buf, size_t len, proxyproto_t *out)
{
    const char *s = (const char *)buf;
    size_t n = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
    const char *crlf = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] == '\r' && s[i + 1] == '\n') {
            crlf = s + i;
            break;
        }
        /* Only printable ASCII belongs in a v1 header. */
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return FG_SYNTAX;
    }
    if (!crlf)
        return len >= PROXYPROTO_V1_MAX ? FG_TOO_LONG : FG_NEED_MORE;
    const char *p = s + 6, *end = crlf, *f;
    size_t flen;
    out->version = 1;
    out->header_len = (size_t)(crlf - s) + 2;
    if (next_field(&p, end, &f, &flen) != FG_OK)
        return FG_SYNTAX;
    if (flen == 7 && memcmp(f, "UNKNOWN", 7) == 0) {
        out->local = 1; /* the rest of the line is ignored by the spec */
        return FG_OK;
    }
    int family;
    if (flen == 4 && memcmp(f, "TCP4", 4) == 0)
        family = AF_INET;
    else if (flen == 4 && memcmp(f, "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return FG_SYNTAX;
    const char *sip, *dip, *sport, *dport;
    size_t siplen, diplen, sportlen, dportlen;
    if (next_field(&p, end, &sip, &siplen) != FG_OK || next_field(&p, end, &dip, &diplen) != FG_OK ||
        next_field(&p, end, &sport, &sportlen) != FG_OK || next_field(&p, end, &dport, &dportlen) != FG_OK ||
        p != end)
        return FG_SYNTAX;
    if (parse_ip_port(family, sip, siplen, sport, sportlen, &out->src) != FG_OK ||
        parse_ip_port(family, dip, diplen, dport, dportlen, &out->dst) != FG_OK)
        return FG_SYNTAX;
    out->local = 0;
    return FG_OK;
}

static int parse_v2(const unsigned char *buf, size_t len, proxyproto_t *out)
{
    if (len < 16)
        return FG_NEED_MORE;
    unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0F;
    size_t body = ((size_t)buf[14] << 8) | buf[15];
    if (ver != 2 || cmd > 1)
        return FG_SYNTAX;
    if (body > PROXYPROTO_V2_MAX_BODY)
        return FG_TOO_LONG;
    if (len < 16 + body)
        return FG_NEED_MORE;
    out->version = 2;
    out->header_len = 16 + body;
    if (cmd == 0) { /* LOCAL: health checks from the balancer itself */
        out->local = 1;
        return FG_OK;
    }
    unsigned fam = buf[13] >> 4, proto = buf[13] & 0x0F;
    const unsigned char *a = buf + 16;
    if (proto != 1) /* STREAM only */
        return FG_RANGE;
    memset(&out->src, 0, sizeof out->src);
    memset(&out->dst, 0, sizeof out->dst);
    if (fam == 1) {
        if (body < 12)
            return FG_SYNTAX;
        struct sockaddr_in *s = (struct sockaddr_in *)&out->src, *d = (struct sockaddr_in *)&out->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
    } else if (fam == 2) {
        if (body < 36)
            return FG_SYNTAX;
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src, *d = (struct sockaddr_in6 *)&out->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
    } else {
        return FG_RANGE; /* UNSPEC with PROXY, or UNIX sockets */
    }
    out->local = 0;
    return FG_OK; /* TLVs after the addresses are skipped: header_len covers them */
}

int proxyproto_parse(const unsigned char *buf, size_t len, proxyproto_t *out)
{
    memset(out, 0, sizeof *out);
    /* Decide the version from as many signature bytes as we have. */
    size_t k = len < sizeof v2_sig ? len : sizeof v2_sig;
    if (memcmp(buf, v2_sig, k) == 0)
        return k < sizeof v2_sig ? FG_NEED_MORE : parse_v2(buf, len, out);
    static const char v1_sig[] = "PROXY ";
    k = len < 6 ? len : 6;
    if (memcmp(buf, v1_sig, k) == 0)
        return k < 6 ? FG_NEED_MORE : parse_v1(buf, len, out);
    return FG_SYNTAX;
}
