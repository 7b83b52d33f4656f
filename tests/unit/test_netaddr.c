/* Unit tests for common/netaddr.c: format, compare, parse sockaddrs. */
#include <arpa/inet.h>

#include "check.h"
#include "fgerr.h"
#include "netaddr.h"

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    CHECK_EQ_INT(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    CHECK_EQ_INT(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    return ss;
}

#define SA(ss) ((struct sockaddr *)&(ss))

static void test_format(void)
{
    char buf[80];
    struct sockaddr_storage a = v4("192.0.2.1", 21);
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf), "192.0.2.1:21");
    CHECK_STR(netaddr_format_ip(SA(a), buf, sizeof buf), "192.0.2.1");
    a = v4("255.255.255.255", 65535);
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf), "255.255.255.255:65535");
    a = v4("0.0.0.0", 0);
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf), "0.0.0.0:0");

    a = v6("::1", 21);
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf), "[::1]:21");
    CHECK_STR(netaddr_format_ip(SA(a), buf, sizeof buf), "::1");
    a = v6("2001:db8::10", 990);
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf), "[2001:db8::10]:990");
    a = v6("2001:db8:1:2:3:4:5:6", 1);
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf), "[2001:db8:1:2:3:4:5:6]:1");
    /* The longest textual IPv6 form fits. */
    a = v6("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535);
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf),
              "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");

    /* IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 peer) reads as IPv4. */
    a = v6("::ffff:192.0.2.7", 2121);
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf), "192.0.2.7:2121");
    CHECK_STR(netaddr_format_ip(SA(a), buf, sizeof buf), "192.0.2.7");
    /* IPv4-compatible (deprecated ::a.b.c.d) is not mapped: stays IPv6, in
     * brackets (inet_ntop prints the dotted tail). */
    a = v6("::192.0.2.7", 21);
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf), "[::192.0.2.7]:21");

    /* Truncation still NUL-terminates. */
    char small[6];
    memset(small, 'x', sizeof small);
    a = v4("192.0.2.1", 21);
    CHECK(netaddr_format(SA(a), small, sizeof small) == small);
    CHECK_STR(small, "192.0");
    memset(small, 'x', sizeof small);
    a = v6("2001:db8::10", 990);
    netaddr_format(SA(a), small, sizeof small);
    CHECK_STR(small, "[2001");
    memset(small, 'x', sizeof small);
    netaddr_format_ip(SA(a), small, sizeof small);
    CHECK_STR(small, "2001:");
    char one[1] = {'x'};
    netaddr_format(SA(a), one, 1);
    CHECK_EQ_INT(one[0], '\0');

    /* Unknown family: "?" rather than garbage. */
    struct sockaddr_storage u;
    memset(&u, 0, sizeof u);
    u.ss_family = AF_UNIX;
    CHECK_STR(netaddr_format_ip(SA(u), buf, sizeof buf), "?");
}

static void test_ipv4_extract(void)
{
    struct in_addr out;
    struct sockaddr_storage a = v4("10.1.2.3", 1);
    CHECK_EQ_INT(netaddr_ipv4(SA(a), &out), 1);
    CHECK_EQ_INT(out.s_addr, inet_addr("10.1.2.3"));
    a = v6("::ffff:10.1.2.3", 1);
    memset(&out, 0, sizeof out);
    CHECK_EQ_INT(netaddr_ipv4(SA(a), &out), 1);
    CHECK_EQ_INT(out.s_addr, inet_addr("10.1.2.3"));
    a = v6("::1", 1);
    CHECK_EQ_INT(netaddr_ipv4(SA(a), &out), 0);
    a = v6("64:ff9b::10.1.2.3", 1); /* NAT64 prefix: not the IPv4 address */
    CHECK_EQ_INT(netaddr_ipv4(SA(a), &out), 0);
}

static void test_same_ip(void)
{
    struct sockaddr_storage a = v4("192.0.2.1", 21), b = v4("192.0.2.1", 50000);
    CHECK_EQ_INT(netaddr_same_ip(SA(a), SA(b)), 1); /* ports do not matter */
    b = v4("192.0.2.2", 21);
    CHECK_EQ_INT(netaddr_same_ip(SA(a), SA(b)), 0);

    struct sockaddr_storage m = v6("::ffff:192.0.2.1", 40000);
    CHECK_EQ_INT(netaddr_same_ip(SA(a), SA(m)), 1);
    CHECK_EQ_INT(netaddr_same_ip(SA(m), SA(a)), 1);
    CHECK_EQ_INT(netaddr_same_ip(SA(m), SA(m)), 1);
    b = v4("192.0.2.2", 21);
    CHECK_EQ_INT(netaddr_same_ip(SA(m), SA(b)), 0);
    CHECK_EQ_INT(netaddr_same_ip(SA(b), SA(m)), 0);

    /* An IPv4 address never equals a native IPv6 one, even with the same low bits. */
    struct sockaddr_storage c = v6("::c000:201", 21), d = v6("2001:db8::1", 21);
    CHECK_EQ_INT(netaddr_same_ip(SA(a), SA(c)), 0);
    CHECK_EQ_INT(netaddr_same_ip(SA(c), SA(a)), 0);
    CHECK_EQ_INT(netaddr_same_ip(SA(m), SA(c)), 0);
    CHECK_EQ_INT(netaddr_same_ip(SA(a), SA(d)), 0);
    CHECK_EQ_INT(netaddr_same_ip(SA(d), SA(a)), 0);

    struct sockaddr_storage e = v6("2001:db8::1", 990);
    CHECK_EQ_INT(netaddr_same_ip(SA(d), SA(e)), 1);
    e = v6("2001:db8::2", 21);
    CHECK_EQ_INT(netaddr_same_ip(SA(d), SA(e)), 0);
    struct sockaddr_storage l1 = v6("::1", 1), l4 = v4("127.0.0.1", 1);
    CHECK_EQ_INT(netaddr_same_ip(SA(l1), SA(l4)), 0); /* ::1 is not 127.0.0.1 */

    /* A non-IP family compares unequal to everything, itself included. */
    struct sockaddr_storage u;
    memset(&u, 0, sizeof u);
    u.ss_family = AF_UNIX;
    CHECK_EQ_INT(netaddr_same_ip(SA(u), SA(u)), 0);
    CHECK_EQ_INT(netaddr_same_ip(SA(u), SA(d)), 0);
    CHECK_EQ_INT(netaddr_same_ip(SA(d), SA(u)), 0);
}

static void test_parse_ip(void)
{
    struct sockaddr_storage ss;
    char buf[80];
    CHECK_EQ_INT(netaddr_parse_ip("192.0.2.9", 2121, &ss), FG_OK);
    CHECK_EQ_INT(ss.ss_family, AF_INET);
    CHECK_EQ_INT(netaddr_port(SA(ss)), 2121);
    CHECK_STR(netaddr_format(SA(ss), buf, sizeof buf), "192.0.2.9:2121");

    CHECK_EQ_INT(netaddr_parse_ip("2001:db8::1", 21, &ss), FG_OK);
    CHECK_EQ_INT(ss.ss_family, AF_INET6);
    CHECK_EQ_INT(netaddr_port(SA(ss)), 21);
    CHECK_STR(netaddr_format(SA(ss), buf, sizeof buf), "[2001:db8::1]:21");

    CHECK_EQ_INT(netaddr_parse_ip("::", 0, &ss), FG_OK);
    CHECK_EQ_INT(ss.ss_family, AF_INET6);
    CHECK_STR(netaddr_format(SA(ss), buf, sizeof buf), "[::]:0");
    CHECK_EQ_INT(netaddr_parse_ip("::ffff:10.0.0.1", 80, &ss), FG_OK);
    CHECK_EQ_INT(ss.ss_family, AF_INET6);
    CHECK_STR(netaddr_format(SA(ss), buf, sizeof buf), "10.0.0.1:80");

    static const char *const bad[] = {
        "",          "localhost", "1.2.3",        "1.2.3.4.5",   "256.1.1.1",
        "1.2.3.4 ",  " 1.2.3.4",  "1.2.3.4:21",   "[::1]",       "::1%eth0",
        "2001:db8::g", "1:2:3:4:5:6:7:8:9", "01.2.3.4x", "1.2.3.-4", "0x7f.0.0.1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = netaddr_parse_ip(bad[i], 21, &ss);
        if (rc != FG_SYNTAX)
            fprintf(stderr, "  \"%s\" parsed\n", bad[i]);
        CHECK_EQ_INT(rc, FG_SYNTAX);
    }
}

static void test_port_len(void)
{
    struct sockaddr_storage a = v4("192.0.2.1", 21), b = v6("::1", 21);
    CHECK_EQ_INT(netaddr_port(SA(a)), 21);
    CHECK_EQ_INT(netaddr_port(SA(b)), 21);
    netaddr_set_port(SA(a), 65535);
    netaddr_set_port(SA(b), 50001);
    CHECK_EQ_INT(netaddr_port(SA(a)), 65535);
    CHECK_EQ_INT(netaddr_port(SA(b)), 50001);
    /* Network byte order in the struct. */
    CHECK_EQ_INT(((struct sockaddr_in *)&a)->sin_port, htons(65535));
    CHECK_EQ_INT(((struct sockaddr_in6 *)&b)->sin6_port, htons(50001));
    netaddr_set_port(SA(a), 0);
    CHECK_EQ_INT(netaddr_port(SA(a)), 0);
    /* set_port leaves the address alone. */
    char buf[80];
    CHECK_STR(netaddr_format(SA(b), buf, sizeof buf), "[::1]:50001");
    CHECK_STR(netaddr_format(SA(a), buf, sizeof buf), "192.0.2.1:0");

    CHECK_EQ_INT(netaddr_len(SA(a)), sizeof(struct sockaddr_in));
    CHECK_EQ_INT(netaddr_len(SA(b)), sizeof(struct sockaddr_in6));
    struct sockaddr_storage m = v6("::ffff:1.2.3.4", 1);
    CHECK_EQ_INT(netaddr_len(SA(m)), sizeof(struct sockaddr_in6)); /* mapped is still v6 */
}

int main(void)
{
    test_format();
    test_ipv4_extract();
    test_same_ip();
    test_parse_ip();
    test_port_len();
    return check_report();
}
