#ifndef FTPSGATE_NETADDR_H
#define FTPSGATE_NETADDR_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

/* Small pure helpers over sockaddr_in / sockaddr_in6. */

/* "1.2.3.4:21" or "[::1]:21"; IPv4-mapped IPv6 is shown as IPv4. Always
 * NUL-terminates; returns out. */
char *netaddr_format(const struct sockaddr *sa, char *out, size_t cap);
/* The address without port. */
char *netaddr_format_ip(const struct sockaddr *sa, char *out, size_t cap);

socklen_t netaddr_len(const struct sockaddr *sa);
uint16_t netaddr_port(const struct sockaddr *sa);
void netaddr_set_port(struct sockaddr *sa, uint16_t port);

/* If sa is IPv4 or IPv4-mapped IPv6, writes the IPv4 address and returns 1. */
int netaddr_ipv4(const struct sockaddr *sa, struct in_addr *out);

/* 1 when both name the same IP (IPv4-mapped IPv6 equals its IPv4). */
int netaddr_same_ip(const struct sockaddr *a, const struct sockaddr *b);

/* Parses a literal IPv4/IPv6 address with a port into out. FG_OK or FG_SYNTAX. */
int netaddr_parse_ip(const char *ip, uint16_t port, struct sockaddr_storage *out);

#endif
