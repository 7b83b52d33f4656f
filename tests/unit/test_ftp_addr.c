/* Unit tests for common/ftp_addr.c: 227/229/PORT/EPRT parsing and formatting. */
#include <arpa/inet.h>

#include "check.h"
#include "fgerr.h"
#include "ftp_addr.h"

static struct in_addr ip4(const char *s)
{
    struct in_addr a;
    a.s_addr = 0;
    inet_pton(AF_INET, s, &a);
    return a;
}

static int p227(const char *s, struct in_addr *ip, uint16_t *port)
{
    return ftp_addr_parse_227(s, strlen(s), ip, port);
}

static void test_227_ok(void)
{
    static const char *good[] = {
        "Entering Passive Mode (127,0,0,1,4,1).",
        "Entering Passive Mode (127,0,0,1,4,1)",
        "Entering Passive Mode 127,0,0,1,4,1",
        "=127,0,0,1,4,1",
        "127,0,0,1,4,1",
        "Entering Passive Mode (127,000,0,01,004,001)",
        "Data transfer will passively listen to 127,0,0,1,4,1",
        "Entering Passive Mode v2 (127,0,0,1,4,1)",      /* earlier digits are skipped */
        "Mode 1,2,3 then (127,0,0,1,4,1)",               /* a shorter list first */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct in_addr ip = {0};
        uint16_t port = 0;
        int rc = p227(good[i], &ip, &port);
        CHECK_EQ_INT(rc, FG_OK);
        if (rc != FG_OK)
            fprintf(stderr, "  input \"%s\"\n", good[i]);
        CHECK(ip.s_addr == ip4("127.0.0.1").s_addr);
        CHECK_EQ_INT(port, 4 * 256 + 1);
    }
    struct in_addr ip;
    uint16_t port;
    CHECK_EQ_INT(p227("(255,255,255,255,255,255)", &ip, &port), FG_OK);
    CHECK(ip.s_addr == 0xffffffffu);
    CHECK_EQ_INT(port, 65535);
    CHECK_EQ_INT(p227("(0,0,0,0,0,1)", &ip, &port), FG_OK);
    CHECK(ip.s_addr == 0);
    CHECK_EQ_INT(port, 1);
    CHECK_EQ_INT(p227("(192,168,1,20,195,80)", &ip, &port), FG_OK);
    CHECK(ip.s_addr == ip4("192.168.1.20").s_addr);
    CHECK_EQ_INT(port, 50000);
}

static void test_227_bad(void)
{
    static const struct {
        const char *s;
        int rc;
    } bad[] = {
        {"", FG_SYNTAX},
        {"Entering Passive Mode", FG_SYNTAX},
        {"Entering Passive Mode ()", FG_SYNTAX},
        {"(127,0,0,1,4)", FG_SYNTAX},            /* five numbers */
        {"(127,0,0,1,4,)", FG_SYNTAX},           /* missing number */
        {"(127,0,0,,4,1)", FG_SYNTAX},
        {"(127,0,0,1,4,1,7)", FG_SYNTAX},        /* seven numbers */
        {"127,0,0,1,4,1,", FG_SYNTAX},           /* trailing comma */
        {"(127, 0, 0, 1, 4, 1)", FG_SYNTAX},     /* spaces inside */
        {"(127,0,0,1,4,-1)", FG_SYNTAX},
        {"(127,0,0,1,+4,1)", FG_SYNTAX},
        {"(127.0.0.1,4,1)", FG_SYNTAX},
        {"(0x7f,0,0,1,4,1)", FG_SYNTAX},
        {"(256,0,0,1,4,1)", FG_RANGE},
        {"(127,0,0,1,256,1)", FG_RANGE},
        {"(127,0,0,1,4,256)", FG_RANGE},
        {"(127,0,0,1,0,0)", FG_RANGE},           /* port 0 */
        {"(127,0,0,1,4,100000000000000000001)", FG_RANGE}, /* 21 digits */
        {"(127,0,0,1,4,18446744073709551617)", FG_RANGE}, /* wraps to 1 if unchecked */
        {"(127,0,0,1,4,1,7) (10,0,0,1,4,1)", FG_OK}, /* first candidate bad, second fine */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct in_addr ip = {12345};
        uint16_t port = 77;
        int rc = p227(bad[i].s, &ip, &port);
        CHECK_EQ_INT(rc, bad[i].rc);
        if (rc != bad[i].rc)
            fprintf(stderr, "  input \"%s\"\n", bad[i].s);
        if (bad[i].rc != FG_OK) {
            CHECK_EQ_INT(port, 77); /* untouched on failure */
            CHECK_EQ_INT(ip.s_addr, 12345);
        }
    }
    struct in_addr ip;
    uint16_t port;
    CHECK_EQ_INT(ftp_addr_parse_227(NULL, 0, &ip, &port), FG_SYNTAX);
    /* only the slice is read */
    CHECK_EQ_INT(ftp_addr_parse_227("(127,0,0,1,4,1)", 10, &ip, &port), FG_SYNTAX);
    CHECK_EQ_INT(ftp_addr_parse_227("(127,0,0,1,4,12)", 14, &ip, &port), FG_OK);
    CHECK_EQ_INT(port, 4 * 256 + 1);
}

static int p229(const char *s, uint16_t *port)
{
    return ftp_addr_parse_229(s, strlen(s), port);
}

static void test_229(void)
{
    uint16_t port = 0;
    CHECK_EQ_INT(p229("Entering Extended Passive Mode (|||6446|)", &port), FG_OK);
    CHECK_EQ_INT(port, 6446);
    CHECK_EQ_INT(p229("Entering Extended Passive Mode (|||6446|).", &port), FG_OK);
    CHECK_EQ_INT(p229("(!!!1!)", &port), FG_OK);
    CHECK_EQ_INT(port, 1);
    CHECK_EQ_INT(p229("(~~~65535~)", &port), FG_OK);
    CHECK_EQ_INT(port, 65535);
    CHECK_EQ_INT(p229("(((((21()", &port), FG_OK);       /* '(' as delimiter */
    CHECK_EQ_INT(port, 21);
    CHECK_EQ_INT(p229("()))21))", &port), FG_OK);         /* ')' as delimiter */
    CHECK_EQ_INT(port, 21);
    CHECK_EQ_INT(p229("(1116446 1)", &port), FG_SYNTAX);  /* digit delimiter: ambiguous */
    CHECK_EQ_INT(p229("(11121501)", &port), FG_SYNTAX);   /* delimiter inside the port */
    CHECK_EQ_INT(p229("(99912349)", &port), FG_OK);       /* digit delimiter, unambiguous */
    CHECK_EQ_INT(port, 1234);
    CHECK_EQ_INT(p229("Mode (x) (|||2121|)", &port), FG_OK); /* first '(' is not it */
    CHECK_EQ_INT(port, 2121);

    static const struct {
        const char *s;
        int rc;
    } bad[] = {
        {"", FG_SYNTAX},
        {"Entering Extended Passive Mode", FG_SYNTAX},
        {"(|||6446|", FG_SYNTAX},      /* no ')' */
        {"(|||6446)", FG_SYNTAX},      /* no final delimiter */
        {"(||6446|)", FG_SYNTAX},      /* two delimiters */
        {"(||||6446|)", FG_SYNTAX},    /* empty... then four delimiters: port empty */
        {"(|!|6446|)", FG_SYNTAX},     /* mixed delimiters */
        {"(|||6446!)", FG_SYNTAX},
        {"(!!!6446|)", FG_SYNTAX},
        {"(   6446 )", FG_SYNTAX},     /* space is outside 33..126 */
        {"(\x7f\x7f\x7f" "6446\x7f)", FG_SYNTAX},
        {"(\xff\xff\xff" "6446\xff)", FG_SYNTAX},
        {"(|||)", FG_SYNTAX},
        {"(||||)", FG_SYNTAX},
        {"(|||+6446|)", FG_SYNTAX},
        {"(||| 6446|)", FG_SYNTAX},
        {"(|||6446 |)", FG_SYNTAX},
        {"(|1|127.0.0.1|6446|)", FG_SYNTAX}, /* net-prt and net-addr must be empty */
        {"(|||0|)", FG_RANGE},
        {"(|||65536|)", FG_RANGE},
        {"(|||123456789012345678901|)", FG_RANGE},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        port = 77;
        int rc = p229(bad[i].s, &port);
        CHECK_EQ_INT(rc, bad[i].rc);
        if (rc != bad[i].rc)
            fprintf(stderr, "  input \"%s\"\n", bad[i].s);
        CHECK_EQ_INT(port, 77);
    }
    CHECK_EQ_INT(ftp_addr_parse_229(NULL, 0, &port), FG_SYNTAX);
    CHECK_EQ_INT(ftp_addr_parse_229("(|||6446|)", 9, &port), FG_SYNTAX);
}

static int pport(const char *s, struct in_addr *ip, uint16_t *port)
{
    return ftp_addr_parse_port(s, strlen(s), ip, port);
}

static void test_port(void)
{
    struct in_addr ip = {0};
    uint16_t port = 0;
    CHECK_EQ_INT(pport("127,0,0,1,4,1", &ip, &port), FG_OK);
    CHECK(ip.s_addr == ip4("127.0.0.1").s_addr);
    CHECK_EQ_INT(port, 1025);
    CHECK_EQ_INT(pport("10,1,2,3,0,21", &ip, &port), FG_OK);
    CHECK(ip.s_addr == ip4("10.1.2.3").s_addr);
    CHECK_EQ_INT(port, 21);

    static const struct {
        const char *s;
        int rc;
    } bad[] = {
        {"", FG_SYNTAX},
        {"(127,0,0,1,4,1)", FG_SYNTAX},  /* the argument is bare */
        {"127,0,0,1,4,1)", FG_SYNTAX},
        {" 127,0,0,1,4,1", FG_SYNTAX},
        {"127,0,0,1,4,1 ", FG_SYNTAX},
        {"127,0,0,1,4", FG_SYNTAX},
        {"127,0,0,1,4,1,2", FG_SYNTAX},
        {"127,0,0,1,4,", FG_SYNTAX},
        {"127,0,0,1,,1", FG_SYNTAX},
        {"127.0.0.1,4,1", FG_SYNTAX},
        {"127,0,0,1,4,1.", FG_SYNTAX},
        {"127,0,0,-1,4,1", FG_SYNTAX},
        {"127,0,0,1,4,1\r\n", FG_SYNTAX},
        {"256,0,0,1,4,1", FG_RANGE},
        {"127,0,0,1,256,0", FG_RANGE},
        {"127,0,0,1,0,0", FG_RANGE},
        {"127,0,0,1,4,0000000000000000000001", FG_RANGE},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ip.s_addr = 12345;
        port = 77;
        int rc = pport(bad[i].s, &ip, &port);
        CHECK_EQ_INT(rc, bad[i].rc);
        if (rc != bad[i].rc)
            fprintf(stderr, "  input \"%s\"\n", bad[i].s);
        CHECK_EQ_INT(port, 77);
        CHECK_EQ_INT(ip.s_addr, 12345);
    }
    CHECK_EQ_INT(ftp_addr_parse_port(NULL, 0, &ip, &port), FG_SYNTAX);
}

static int peprt(const char *s, struct sockaddr_storage *ss)
{
    return ftp_addr_parse_eprt(s, strlen(s), ss);
}

static void test_eprt(void)
{
    struct sockaddr_storage ss;
    char buf[INET6_ADDRSTRLEN];

    CHECK_EQ_INT(peprt("|1|132.235.1.2|6275|", &ss), FG_OK);
    CHECK_EQ_INT(ss.ss_family, AF_INET);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
    CHECK_EQ_INT(ntohs(sin->sin_port), 6275);
    CHECK_STR(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)), "132.235.1.2");

    CHECK_EQ_INT(peprt("|2|1080::8:800:200C:417A|5282|", &ss), FG_OK);
    CHECK_EQ_INT(ss.ss_family, AF_INET6);
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
    CHECK_EQ_INT(ntohs(sin6->sin6_port), 5282);
    CHECK_STR(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf)), "1080::8:800:200c:417a");

    CHECK_EQ_INT(peprt("!2!::1!65535!", &ss), FG_OK);
    CHECK_EQ_INT(ss.ss_family, AF_INET6);
    CHECK_EQ_INT(peprt("#1#10.0.0.1#1#", &ss), FG_OK);
    CHECK_EQ_INT(peprt("|2|::ffff:10.0.0.1|21|", &ss), FG_OK); /* v4-mapped is valid IPv6 */
    /* the longest textual IPv6 address (45 chars) fits */
    CHECK_EQ_INT(peprt("|2|0000:0000:0000:0000:0000:ffff:255.255.255.255|21|", &ss), FG_OK);

    static const struct {
        const char *s;
        int rc;
    } bad[] = {
        {"", FG_SYNTAX},
        {"|1|127.0.0.1|6275", FG_SYNTAX},        /* no final delimiter */
        {"1|127.0.0.1|6275|", FG_SYNTAX},
        {"|1|127.0.0.1|6275||", FG_SYNTAX},      /* five delimiters */
        {"|1|127.0.0.1|6275|x", FG_SYNTAX},
        {"|1|127.0.0.1!6275|", FG_SYNTAX},       /* mixed delimiters */
        {"!1|127.0.0.1|6275|", FG_SYNTAX},
        {"||127.0.0.1|6275|", FG_SYNTAX},        /* empty protocol */
        {"|x|127.0.0.1|6275|", FG_SYNTAX},
        {"|+1|127.0.0.1|6275|", FG_SYNTAX},
        {"|1||6275|", FG_SYNTAX},                /* empty address */
        {"|1|127.0.0.1||", FG_SYNTAX},           /* empty port */
        {"|1|::1|6275|", FG_SYNTAX},             /* family mismatch */
        {"|2|127.0.0.1|6275|", FG_SYNTAX},
        {"|1|127.0.0.256|6275|", FG_SYNTAX},
        {"|1|127.1|6275|", FG_SYNTAX},           /* inet_aton shorthand refused */
        {"|1|0x7f.0.0.1|6275|", FG_SYNTAX},
        {"|1| 127.0.0.1|6275|", FG_SYNTAX},
        {"|1|localhost|6275|", FG_SYNTAX},
        {"|2|fe80::1%eth0|6275|", FG_SYNTAX},    /* zone ids refused */
        {"|2|1:2:3:4:5:6:7:8:9|6275|", FG_SYNTAX},
        {"|2|00000:0000:0000:0000:0000:ffff:255.255.255.255|21|", FG_SYNTAX}, /* 46 chars */
        {"|2|::1111111111111111111111111111111111111111111111111111111111111111|21|", FG_SYNTAX},
        {"|1|127.0.0.1|-1|", FG_SYNTAX},
        {"|1|127.0.0.1| 21|", FG_SYNTAX},
        {"   1 127.0.0.1 21 ", FG_SYNTAX},       /* space is not a valid delimiter */
        {"\x7f" "1\x7f" "127.0.0.1\x7f" "21\x7f", FG_SYNTAX},
        {"|3|127.0.0.1|6275|", FG_RANGE},        /* unknown protocol (522) */
        {"|0|127.0.0.1|6275|", FG_RANGE},
        {"|1|127.0.0.1|0|", FG_RANGE},
        {"|1|127.0.0.1|65536|", FG_RANGE},
        {"|1|127.0.0.1|123456789012345678901|", FG_RANGE},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&ss, 0xA5, sizeof(ss));
        int rc = peprt(bad[i].s, &ss);
        CHECK_EQ_INT(rc, bad[i].rc);
        if (rc != bad[i].rc)
            fprintf(stderr, "  input \"%s\"\n", bad[i].s);
        CHECK_EQ_INT(((unsigned char *)&ss)[0], 0xA5); /* untouched on failure */
    }
    CHECK_EQ_INT(ftp_addr_parse_eprt(NULL, 0, &ss), FG_SYNTAX);
    CHECK_EQ_INT(ftp_addr_parse_eprt("|1|127.0.0.1|21|", 15, &ss), FG_SYNTAX);
}

static void test_format(void)
{
    char out[128];
    struct in_addr ip = ip4("203.0.113.10");
    int n = ftp_addr_format_227(out, sizeof(out), ip, 50000);
    CHECK_STR(out, "227 Entering Passive Mode (203,0,113,10,195,80).\r\n");
    CHECK_EQ_INT(n, (int)strlen(out));
    n = ftp_addr_format_229(out, sizeof(out), 50000);
    CHECK_STR(out, "229 Entering Extended Passive Mode (|||50000|)\r\n");
    CHECK_EQ_INT(n, (int)strlen(out));
    n = ftp_addr_format_port(out, sizeof(out), ip4("127.0.0.1"), 1025);
    CHECK_STR(out, "PORT 127,0,0,1,4,1\r\n");
    CHECK_EQ_INT(n, (int)strlen(out));

    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(6275);
    sin.sin_addr = ip4("132.235.1.2");
    n = ftp_addr_format_eprt(out, sizeof(out), (const struct sockaddr *)&sin);
    CHECK_STR(out, "EPRT |1|132.235.1.2|6275|\r\n");
    CHECK_EQ_INT(n, (int)strlen(out));

    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(5282);
    inet_pton(AF_INET6, "1080::8:800:200C:417A", &sin6.sin6_addr);
    n = ftp_addr_format_eprt(out, sizeof(out), (const struct sockaddr *)&sin6);
    CHECK_STR(out, "EPRT |2|1080::8:800:200c:417a|5282|\r\n");
    CHECK_EQ_INT(n, (int)strlen(out));

    /* round trips: what we format, we parse back */
    struct in_addr rip;
    uint16_t rport;
    ftp_addr_format_227(out, sizeof(out), ip, 65535);
    CHECK_EQ_INT(ftp_addr_parse_227(out + 4, strlen(out) - 6, &rip, &rport), FG_OK);
    CHECK(rip.s_addr == ip.s_addr);
    CHECK_EQ_INT(rport, 65535);
    ftp_addr_format_229(out, sizeof(out), 1);
    CHECK_EQ_INT(ftp_addr_parse_229(out + 4, strlen(out) - 6, &rport), FG_OK);
    CHECK_EQ_INT(rport, 1);
    ftp_addr_format_port(out, sizeof(out), ip, 256);
    CHECK_EQ_INT(ftp_addr_parse_port(out + 5, strlen(out) - 7, &rip, &rport), FG_OK);
    CHECK_EQ_INT(rport, 256);
    struct sockaddr_storage ss;
    ftp_addr_format_eprt(out, sizeof(out), (const struct sockaddr *)&sin6);
    CHECK_EQ_INT(ftp_addr_parse_eprt(out + 5, strlen(out) - 7, &ss), FG_OK);
    CHECK(memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr, &sin6.sin6_addr, 16) == 0);

    /* exact fit and one byte short */
    const char *want = "229 Entering Extended Passive Mode (|||21|)\r\n";
    size_t wl = strlen(want);
    CHECK_EQ_INT(ftp_addr_format_229(out, wl + 1, 21), (int)wl);
    CHECK_EQ_INT(ftp_addr_format_229(out, wl, 21), FG_RANGE);
    CHECK_EQ_INT(out[0], '\0');
    CHECK_EQ_INT(ftp_addr_format_227(out, 10, ip, 21), FG_RANGE);
    CHECK_EQ_INT(ftp_addr_format_port(out, 5, ip, 21), FG_RANGE);
    CHECK_EQ_INT(ftp_addr_format_eprt(out, 20, (const struct sockaddr *)&sin6), FG_RANGE);
    CHECK_EQ_INT(ftp_addr_format_229(out, 0, 21), FG_RANGE);
    CHECK_EQ_INT(ftp_addr_format_229(NULL, 10, 21), FG_RANGE);
    /* port 0 is never announced */
    CHECK_EQ_INT(ftp_addr_format_227(out, sizeof(out), ip, 0), FG_RANGE);
    CHECK_EQ_INT(ftp_addr_format_229(out, sizeof(out), 0), FG_RANGE);
    CHECK_EQ_INT(ftp_addr_format_port(out, sizeof(out), ip, 0), FG_RANGE);
    sin.sin_port = 0;
    CHECK_EQ_INT(ftp_addr_format_eprt(out, sizeof(out), (const struct sockaddr *)&sin), FG_RANGE);
    /* unknown family */
    struct sockaddr_storage other;
    memset(&other, 0, sizeof(other));
    other.ss_family = AF_UNIX;
    CHECK_EQ_INT(ftp_addr_format_eprt(out, sizeof(out), (const struct sockaddr *)&other),
                 FG_RANGE);
    CHECK_EQ_INT(ftp_addr_format_eprt(out, sizeof(out), NULL), FG_RANGE);
}

int main(void)
{
    test_227_ok();
    test_227_bad();
    test_229();
    test_port();
    test_eprt();
    test_format();
    return check_report();
}
