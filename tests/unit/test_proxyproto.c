#include <arpa/inet.h>
#include <string.h>

#include "check.h"
#include "fgerr.h"
#include "proxyproto.h"

static int parse_str(const char *s, proxyproto_t *out)
{
    return proxyproto_parse((const unsigned char *)s, strlen(s), out);
}

static void check_v4(const struct sockaddr_storage *ss, const char *ip, unsigned port)
{
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    char buf[INET_ADDRSTRLEN] = "";
    CHECK_EQ_INT(s->sin_family, AF_INET);
    inet_ntop(AF_INET, &s->sin_addr, buf, sizeof buf);
    CHECK_STR(buf, ip);
    CHECK_EQ_INT(ntohs(s->sin_port), port);
}

static void test_v1(void)
{
    proxyproto_t p;
    const char *h = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 21\r\nUSER x\r\n";
    CHECK_EQ_INT(parse_str(h, &p), FG_OK);
    CHECK_EQ_INT(p.version, 1);
    CHECK_EQ_INT(p.local, 0);
    CHECK_EQ_INT(p.header_len, strlen("PROXY TCP4 192.0.2.10 198.51.100.1 56324 21\r\n"));
    check_v4(&p.src, "192.0.2.10", 56324);
    check_v4(&p.dst, "198.51.100.1", 21);

    CHECK_EQ_INT(parse_str("PROXY TCP6 2001:db8::1 2001:db8::2 4000 990\r\n", &p), FG_OK);
    CHECK_EQ_INT(p.src.ss_family, AF_INET6);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in6 *)&p.dst)->sin6_port), 990);
    CHECK_EQ_INT(parse_str("PROXY UNKNOWN\r\n", &p), FG_OK);
    CHECK_EQ_INT(p.local, 1);
    CHECK_EQ_INT(parse_str("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", &p), FG_OK);

    /* Every prefix of a valid header asks for more; the full one parses. */
    const char *full = "PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000\r\n";
    for (size_t i = 0; i < strlen(full); i++)
        CHECK_EQ_INT(proxyproto_parse((const unsigned char *)full, i, &p), FG_NEED_MORE);

    /* Malformed. */
    const char *bad[] = {
        "PROXY TCP4 10.0.0.1 10.0.0.2 1000\r\n",        /* missing port */
        "PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000 9\r\n", /* extra field */
        "PROXY TCP4 10.0.0.256 10.0.0.2 1000 2000\r\n", /* bad address */
        "PROXY TCP4 ::1 10.0.0.2 1000 2000\r\n",        /* family mismatch */
        "PROXY TCP4 10.0.0.1 10.0.0.2 65536 2000\r\n",  /* port range */
        "PROXY TCP4 10.0.0.1 10.0.0.2 +100 2000\r\n",   /* sign */
        "PROXY TCP4 10.0.0.1 10.0.0.2 0100 2000\r\n",   /* leading zero */
        "PROXY TCP4  10.0.0.1 10.0.0.2 1 2\r\n",        /* double space */
        "PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n",
        "PROXY TCP4 10.0.0.1\t10.0.0.2 1 2\r\n",        /* control byte */
        "USER anonymous\r\n",
        "GET / HTTP/1.0\r\n",
        "proxy TCP4 10.0.0.1 10.0.0.2 1 2\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse_str(bad[i], &p);
        if (rc != FG_SYNTAX)
            fprintf(stderr, "  case %zu: %s", i, bad[i]);
        CHECK_EQ_INT(rc, FG_SYNTAX);
    }
    /* No CRLF within 107 bytes: too long, never buffered further. */
    char longh[300];
    memset(longh, 'A', sizeof longh);
    memcpy(longh, "PROXY TCP4 ", 11);
    CHECK_EQ_INT(proxyproto_parse((const unsigned char *)longh, sizeof longh, &p), FG_TOO_LONG);
}

static size_t v2_header(unsigned char *b, unsigned cmd, unsigned fam, const unsigned char *addr,
                        size_t alen, size_t tlv)
{
    static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                          0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    memcpy(b, sig, 12);
    b[12] = (unsigned char)(0x20 | cmd);
    b[13] = (unsigned char)fam;
    size_t body = alen + tlv;
    b[14] = (unsigned char)(body >> 8);
    b[15] = (unsigned char)body;
    memcpy(b + 16, addr, alen);
    memset(b + 16 + alen, 0x42, tlv);
    return 16 + body;
}

static void test_v2(void)
{
    unsigned char b[2048];
    proxyproto_t p;
    const unsigned char a4[12] = {192, 0, 2, 10, 198, 51, 100, 1, 0xDC, 0x04, 0x00, 0x15};
    size_t n = v2_header(b, 1, 0x11, a4, sizeof a4, 7);
    CHECK_EQ_INT(proxyproto_parse(b, n + 5, &p), FG_OK);
    CHECK_EQ_INT(p.version, 2);
    CHECK_EQ_INT(p.header_len, n);
    check_v4(&p.src, "192.0.2.10", 0xDC04);
    check_v4(&p.dst, "198.51.100.1", 21);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(proxyproto_parse(b, i, &p), FG_NEED_MORE);

    unsigned char a6[36] = {0};
    a6[15] = 1;
    a6[31] = 2;
    a6[33] = 80;
    a6[35] = 21;
    n = v2_header(b, 1, 0x21, a6, sizeof a6, 0);
    CHECK_EQ_INT(proxyproto_parse(b, n, &p), FG_OK);
    CHECK_EQ_INT(p.src.ss_family, AF_INET6);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in6 *)&p.src)->sin6_port), 80);

    n = v2_header(b, 0, 0x00, a4, 0, 0); /* LOCAL */
    CHECK_EQ_INT(proxyproto_parse(b, n, &p), FG_OK);
    CHECK_EQ_INT(p.local, 1);

    n = v2_header(b, 1, 0x12, a4, sizeof a4, 0); /* UDP */
    CHECK_EQ_INT(proxyproto_parse(b, n, &p), FG_RANGE);
    n = v2_header(b, 1, 0x31, a4, sizeof a4, 0); /* UNIX */
    CHECK_EQ_INT(proxyproto_parse(b, n, &p), FG_RANGE);
    n = v2_header(b, 1, 0x11, a4, 8, 0); /* short address block */
    CHECK_EQ_INT(proxyproto_parse(b, n, &p), FG_SYNTAX);
    n = v2_header(b, 2, 0x11, a4, sizeof a4, 0); /* unknown command */
    CHECK_EQ_INT(proxyproto_parse(b, n, &p), FG_SYNTAX);
    n = v2_header(b, 1, 0x11, a4, sizeof a4, 0);
    b[12] = 0x31; /* version 3 */
    CHECK_EQ_INT(proxyproto_parse(b, n, &p), FG_SYNTAX);
    n = v2_header(b, 1, 0x11, a4, sizeof a4, PROXYPROTO_V2_MAX_BODY); /* over the cap */
    CHECK_EQ_INT(proxyproto_parse(b, 16, &p), FG_TOO_LONG);
}

int main(void)
{
    test_v1();
    test_v2();
    return check_report();
}
