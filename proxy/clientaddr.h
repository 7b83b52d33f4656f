#ifndef FTPSGATE_CLIENTADDR_H
#define FTPSGATE_CLIENTADDR_H
#include <sys/socket.h>

#include "client.h"
#include "proxyproto.h"

/* Where a session's client is: the addresses of its control connection, the
 * real client named by a PROXY header behind a balancer, and where an
 * intercepted client meant to go; "ip:port" of the real client for the
 * logs. Embedded in the session; the fields are the session's to read. */

typedef struct {
    char peer[72];                    /* "ip:port" of the real client */
    struct sockaddr_storage client;   /* the real client: the TCP peer, or the PROXY header's source */
    struct sockaddr_storage balancer; /* the TCP peer (the client itself when there is no balancer) */
    struct sockaddr_storage local;    /* our end of the control connection */
    struct sockaddr_storage orig_dst; /* where an intercepted client meant to go */
    int intercepted;
} clientaddr_t;

/* From the control connection c. FG_OK, or FG_IO when it is already gone. */
int clientaddr_init(clientaddr_t *a, client_t *c);
/* The listener intercepted the client, which meant to go to orig_dst
 * (redirected: by REDIRECT/DNAT, else TPROXY); logged with sid. */
void clientaddr_intercepted(clientaddr_t *a, const struct sockaddr *orig_dst, int redirected, unsigned long long sid);

/* The PROXY header was read (client.h's on_proxy_header: status and pp): it
 * named the real client (a LOCAL header: the balancer itself speaks, and its
 * address stays). Logged with sid. FG_OK, or status when there was no valid
 * header (SECURITY: a listener that expects one takes nothing else). */
int clientaddr_proxy(clientaddr_t *a, int status, const proxyproto_t *pp, unsigned long long sid);

#endif
