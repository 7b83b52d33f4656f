#ifndef FTPSGATE_PROXYPROTO_H
#define FTPSGATE_PROXYPROTO_H
#include <stddef.h>
#include <sys/socket.h>

/* PROXY protocol v1 (text) and v2 (binary) headers, as sent by a load
 * balancer in front of ftpsgate (haproxy's proxy-protocol.txt). Pure: the
 * caller accumulates the first bytes of a connection and calls again until
 * the result is not FG_NEED_MORE. A header is capped (v1: 107 bytes; v2: 16 +
 * PROXYPROTO_V2_MAX_BODY), so a peer cannot make the proxy buffer more. */

#define PROXYPROTO_V1_MAX 107u
#define PROXYPROTO_V2_MAX_BODY 512u
#define PROXYPROTO_MAX (16u + PROXYPROTO_V2_MAX_BODY)

typedef struct {
    int version;                 /* 1 or 2 */
    int local;                   /* v2 LOCAL or v1 UNKNOWN: no addresses, use the connection's own */
    struct sockaddr_storage src; /* the real client (when !local) */
    struct sockaddr_storage dst; /* the address the client connected to (when !local) */
    size_t header_len;           /* bytes of the header; what follows is the client's stream */
} proxyproto_t;

/* FG_OK (a complete, valid header), FG_NEED_MORE (a valid prefix), FG_SYNTAX
 * (not a PROXY header or malformed), FG_TOO_LONG (over the cap), FG_RANGE
 * (valid framing, unsupported family or protocol, e.g. UDP or UNIX). */
int proxyproto_parse(const unsigned char *buf, size_t len, proxyproto_t *out);

#endif
