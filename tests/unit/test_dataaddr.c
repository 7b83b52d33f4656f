/* Unit tests for common/dataaddr.c: the anti-bounce check of PORT/EPRT, the
 * EPSV argument, the address and port a passive reply announces, and which
 * side listens toward the backend. */
#include <arpa/inet.h>

#include "check.h"
#include "dataaddr.h"
#include "fgerr.h"
#include "netaddr.h"

static struct sockaddr_storage addr(const char *ip, uint16_t port)
{
    struct sockaddr_storage sa;
    CHECK_EQ_INT(netaddr_parse_ip(ip, port, &sa), FG_OK);
    return sa;
}

static dataaddr_verdict_t active(int eprt, const char *arg, const char *client_ip, int low,
                                 struct sockaddr_storage *target)
{
    struct sockaddr_storage client = addr(client_ip, 40000);
    return dataaddr_check_active(eprt, arg, strlen(arg), (const struct sockaddr *)&client, low, target);
}

static void test_active(void)
{
    struct sockaddr_storage t;
    char ip[64];
    /* The client itself, any port >= 1024. */
    CHECK_EQ_INT(active(0, "127,0,0,1,4,1", "127.0.0.1", 0, &t), DATAADDR_OK);
    CHECK_EQ_INT(netaddr_port((struct sockaddr *)&t), 1025);
    CHECK_EQ_INT(active(1, "|1|127.0.0.1|1025|", "127.0.0.1", 0, &t), DATAADDR_OK);
    CHECK_EQ_INT(active(1, "|2|::1|5000|", "::1", 0, &t), DATAADDR_OK);
    CHECK_STR(netaddr_format((struct sockaddr *)&t, ip, sizeof ip), "[::1]:5000");
    /* The target keeps the control peer's family: a v4-mapped control peer gets a v4-mapped target. */
    CHECK_EQ_INT(active(0, "192,0,2,7,19,136", "::ffff:192.0.2.7", 0, &t), DATAADDR_OK);
    CHECK_EQ_INT(t.ss_family, AF_INET6);
    CHECK_EQ_INT(netaddr_port((struct sockaddr *)&t), 5000);
    /* Unspecified address (lftp): the client itself. */
    CHECK_EQ_INT(active(1, "|2|::|6000|", "::1", 0, &t), DATAADDR_OK);
    CHECK_STR(netaddr_format((struct sockaddr *)&t, ip, sizeof ip), "[::1]:6000");
    CHECK_EQ_INT(active(0, "0,0,0,0,23,112", "127.0.0.1", 0, &t), DATAADDR_OK);
    CHECK_STR(netaddr_format((struct sockaddr *)&t, ip, sizeof ip), "127.0.0.1:6000");
    /* SECURITY: bounce to a third host, whatever the form. */
    CHECK_EQ_INT(active(0, "127,0,0,2,4,1", "127.0.0.1", 0, &t), DATAADDR_FOREIGN_HOST);
    CHECK_STR(netaddr_format_ip((struct sockaddr *)&t, ip, sizeof ip), "127.0.0.2");
    CHECK_EQ_INT(active(1, "|1|10.0.0.1|1025|", "127.0.0.1", 0, &t), DATAADDR_FOREIGN_HOST);
    CHECK_EQ_INT(active(1, "|2|::2|1025|", "::1", 0, &t), DATAADDR_FOREIGN_HOST);
    CHECK_EQ_INT(active(1, "|2|::1|1025|", "127.0.0.1", 0, &t), DATAADDR_FOREIGN_HOST);
    /* SECURITY: privileged ports, unless allowed. */
    CHECK_EQ_INT(active(0, "127,0,0,1,0,25", "127.0.0.1", 0, &t), DATAADDR_LOW_PORT);
    CHECK_EQ_INT(active(0, "127,0,0,1,3,255", "127.0.0.1", 0, &t), DATAADDR_LOW_PORT);
    CHECK_EQ_INT(active(0, "127,0,0,1,4,0", "127.0.0.1", 0, &t), DATAADDR_OK);
    CHECK_EQ_INT(active(0, "127,0,0,1,0,25", "127.0.0.1", 1, &t), DATAADDR_OK);
    /* The bounce check comes before the port check. */
    CHECK_EQ_INT(active(0, "10,1,1,1,0,25", "127.0.0.1", 0, &t), DATAADDR_FOREIGN_HOST);
    /* Syntax and protocol. */
    CHECK_EQ_INT(active(0, "127,0,0,1,4", "127.0.0.1", 0, &t), DATAADDR_SYNTAX);
    CHECK_EQ_INT(active(0, "", "127.0.0.1", 0, &t), DATAADDR_SYNTAX);
    CHECK_EQ_INT(active(1, "|1|127.0.0.1|0|", "127.0.0.1", 0, &t), DATAADDR_SYNTAX);
    CHECK_EQ_INT(active(1, "|3|127.0.0.1|1025|", "127.0.0.1", 0, &t), DATAADDR_PROTOCOL);
    CHECK_EQ_INT(active(1, "garbage", "127.0.0.1", 0, &t), DATAADDR_SYNTAX);
    CHECK_EQ_INT(dataaddr_check_active(0, NULL, 0, (struct sockaddr *)&t, 0, &t), DATAADDR_SYNTAX);
}

static void test_epsv(void)
{
    CHECK_EQ_INT(dataaddr_check_epsv_arg(NULL, 0, 1), EPSV_ARG_OK);
    CHECK_EQ_INT(dataaddr_check_epsv_arg("1", 1, 1), EPSV_ARG_OK);
    CHECK_EQ_INT(dataaddr_check_epsv_arg("2", 1, 0), EPSV_ARG_OK);
    CHECK_EQ_INT(dataaddr_check_epsv_arg("2", 1, 1), EPSV_ARG_USE_1);
    CHECK_EQ_INT(dataaddr_check_epsv_arg("1", 1, 0), EPSV_ARG_USE_2);
    CHECK_EQ_INT(dataaddr_check_epsv_arg("3", 1, 1), EPSV_ARG_SYNTAX);
    CHECK_EQ_INT(dataaddr_check_epsv_arg("12", 2, 1), EPSV_ARG_SYNTAX);
    CHECK_EQ_INT(dataaddr_check_epsv_arg("x", 1, 0), EPSV_ARG_SYNTAX);
}

static void test_announce(void)
{
    config_listener_t l;
    memset(&l, 0, sizeof l);
    config_announce_t rules[2];
    memset(rules, 0, sizeof rules);
    CHECK_EQ_INT(config_parse_cidr("10.1.0.0/16", &rules[0].clients), FG_OK);
    rules[0].address = "10.1.0.1";
    rules[1].match_all = 1;
    rules[1].address = "203.0.113.10";
    struct sockaddr_storage local = addr("192.168.1.5", 21), inside = addr("10.1.2.3", 5000),
                            outside = addr("198.51.100.7", 5000), dst = addr("10.2.0.9", 21), tmp;
    char ip[64];
    /* No rules: the local address; intercepted: the server the client dialled. */
    const struct sockaddr *a =
        dataaddr_announce(&l, (struct sockaddr *)&outside, NULL, (struct sockaddr *)&local, &tmp);
    CHECK_STR(netaddr_format_ip(a, ip, sizeof ip), "192.168.1.5");
    a = dataaddr_announce(&l, (struct sockaddr *)&outside, (struct sockaddr *)&dst, (struct sockaddr *)&local, &tmp);
    CHECK_STR(netaddr_format_ip(a, ip, sizeof ip), "10.2.0.9");
    /* Rules: first match wins, before interception. */
    l.passive.announce = rules;
    l.passive.n_announce = 2;
    a = dataaddr_announce(&l, (struct sockaddr *)&inside, NULL, (struct sockaddr *)&local, &tmp);
    CHECK_STR(netaddr_format_ip(a, ip, sizeof ip), "10.1.0.1");
    a = dataaddr_announce(&l, (struct sockaddr *)&outside, (struct sockaddr *)&dst, (struct sockaddr *)&local, &tmp);
    CHECK_STR(netaddr_format_ip(a, ip, sizeof ip), "203.0.113.10");
    /* Only the first rule: an unmatched client falls back. */
    l.passive.n_announce = 1;
    a = dataaddr_announce(&l, (struct sockaddr *)&outside, NULL, (struct sockaddr *)&local, &tmp);
    CHECK_STR(netaddr_format_ip(a, ip, sizeof ip), "192.168.1.5");

    /* announce_ports maps the pool onto the published range. */
    l.passive.first = 50000;
    l.passive.last = 50099;
    CHECK_EQ_INT(dataaddr_announced_port(&l, 50007), 50007);
    l.passive.announce_first = 31000;
    CHECK_EQ_INT(dataaddr_announced_port(&l, 50000), 31000);
    CHECK_EQ_INT(dataaddr_announced_port(&l, 50099), 31099);
}

static void test_backend_mode(void)
{
    CHECK_EQ_INT(dataaddr_backend_listens(DATA_MODE_PASSIVE, 0), 0);
    CHECK_EQ_INT(dataaddr_backend_listens(DATA_MODE_PASSIVE, 1), 0);
    CHECK_EQ_INT(dataaddr_backend_listens(DATA_MODE_ACTIVE, 0), 1);
    CHECK_EQ_INT(dataaddr_backend_listens(DATA_MODE_ACTIVE, 1), 1);
    CHECK_EQ_INT(dataaddr_backend_listens(DATA_MODE_CLIENT, 0), 0);
    CHECK_EQ_INT(dataaddr_backend_listens(DATA_MODE_CLIENT, 1), 1);
}

int main(void)
{
    test_active();
    test_epsv();
    test_announce();
    test_backend_mode();
    return check_report();
}
