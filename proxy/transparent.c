#include "transparent.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "netaddr.h"

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>,
 * which do not mix with the libc headers. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

int transparent_set(int fd, int family)
{
    int on = 1;
    if (family == AF_INET6)
        return setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &on, sizeof on);
    return setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof on);
}

int transparent_open(uv_tcp_t *h, int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (transparent_set(fd, family) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    int rc = uv_tcp_open(h, fd);
    if (rc != 0)
        close(fd);
    return rc;
}

int transparent_bind(uv_tcp_t *h, const struct sockaddr *sa, int transparent)
{
    int rc = transparent ? transparent_open(h, sa->sa_family) : 0;
    return rc != 0 ? rc : uv_tcp_bind(h, sa, 0);
}

int transparent_probe(char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
        return -1;
    }
    int rc = transparent_set(fd, AF_INET);
    int e = errno;
    close(fd);
    if (rc != 0) {
        snprintf(err, errlen, "transparent mode needs CAP_NET_ADMIN (setsockopt IP_TRANSPARENT: %s)",
                 strerror(e));
        return -1;
    }
    return 0;
}

int transparent_original_dst(uv_tcp_t *h, struct sockaddr_storage *out, int *redirected)
{
    uv_os_fd_t fd;
    int rc = uv_fileno((uv_handle_t *)h, &fd);
    if (rc != 0)
        return rc;
    struct sockaddr_storage local;
    socklen_t len = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &len) != 0)
        return -errno;
    memset(out, 0, sizeof *out);
    len = sizeof *out;
    int ok = local.ss_family == AF_INET6
                 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, &len)
                 : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len);
    /* A v4-mapped v6 socket carries IPv4 conntrack entries. */
    if (ok != 0 && local.ss_family == AF_INET6) {
        len = sizeof *out;
        ok = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len);
    }
    /* conntrack tracks every connection once anything on the host uses it (a
     * stateful firewall), not only the NATed ones: a TPROXY-diverted or a
     * direct connection has an entry too, whose original destination is the
     * local address itself. Only a different one was rewritten. */
    if (ok == 0 && out->ss_family != 0 &&
        !(netaddr_same_ip((const struct sockaddr *)out, (const struct sockaddr *)&local) &&
          netaddr_port((const struct sockaddr *)out) == netaddr_port((const struct sockaddr *)&local))) {
        *redirected = 1;
        return 0;
    }
    *redirected = 0;
    memcpy(out, &local, sizeof local);
    return 0;
}
