#ifndef FTPSGATE_TRANSPARENT_H
#define FTPSGATE_TRANSPARENT_H
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/* Transparent deployment (README "Transparent deployment"): reading where a
 * diverted client meant to go, and sockets that may use addresses that are
 * not the host's own (IP_TRANSPARENT: TPROXY listeners, connecting to a
 * backend from the client's address). Linux only; needs CAP_NET_ADMIN. */

/* Gives h (initialised, no socket yet) a socket of family with
 * IP_TRANSPARENT / IPV6_TRANSPARENT set. 0 or a negative errno. */
int transparent_open(uv_tcp_t *h, int family);

/* IP_TRANSPARENT / IPV6_TRANSPARENT on a socket of family. 0 or -1 (errno). */
int transparent_set(int fd, int family);

/* Start-up check: can this process set IP_TRANSPARENT? 0, or -1 with a
 * message naming the capability. */
int transparent_probe(char *err, size_t errlen);

/* Binds h to sa (port 0: any), with IP_TRANSPARENT first when transparent,
 * so sa may be an address of another host (the client's, or a server's
 * under TPROXY). 0 or a libuv/negative errno error. */
int transparent_bind(uv_tcp_t *h, const struct sockaddr *sa, int transparent);

/* The destination the client dialled on an accepted connection: the
 * conntrack entry of a REDIRECT/DNAT (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST),
 * else the socket's local address (TPROXY keeps it). *redirected: 1 when the
 * destination was rewritten (it differs from the local address). 0 or a
 * negative errno. */
int transparent_original_dst(uv_tcp_t *h, struct sockaddr_storage *out, int *redirected);

#endif
