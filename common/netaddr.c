#include "netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "fgerr.h"

socklen_t netaddr_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

uint16_t netaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

void netaddr_set_port(struct sockaddr *sa, uint16_t port)
{
    if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)sa)->sin_port = htons(port);
}

int netaddr_ipv4(const struct sockaddr *sa, struct in_addr *out)
{
    if (sa->sa_family == AF_INET) {
        *out = ((const struct sockaddr_in *)sa)->sin_addr;
        return 1;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            memcpy(out, &a6->s6_addr[12], 4);
            return 1;
        }
    }
    return 0;
}

char *netaddr_format_ip(const struct sockaddr *sa, char *out, size_t cap)
{
    struct in_addr v4;
    char buf[INET6_ADDRSTRLEN] = "?";
    if (netaddr_ipv4(sa, &v4))
        inet_ntop(AF_INET, &v4, buf, sizeof buf);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, sizeof buf);
    snprintf(out, cap, "%s", buf);
    return out;
}

char *netaddr_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN + 2];
    struct in_addr v4;
    netaddr_format_ip(sa, ip, sizeof ip);
    if (netaddr_ipv4(sa, &v4) || sa->sa_family != AF_INET6)
        snprintf(out, cap, "%s:%u", ip, (unsigned)netaddr_port(sa));
    else
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)netaddr_port(sa));
    return out;
}

int netaddr_same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
    struct in_addr a4, b4;
    int av4 = netaddr_ipv4(a, &a4), bv4 = netaddr_ipv4(b, &b4);
    if (av4 || bv4)
        return av4 && bv4 && a4.s_addr == b4.s_addr;
    if (a->sa_family != AF_INET6 || b->sa_family != AF_INET6)
        return 0;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

int netaddr_parse_ip(const char *ip, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        return FG_OK;
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        return FG_OK;
    }
    return FG_SYNTAX;
}
