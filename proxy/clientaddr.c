#include "clientaddr.h"

#include <stdio.h>
#include <string.h>

#include "fgerr.h"
#include "log.h"
#include "netaddr.h"

int clientaddr_init(clientaddr_t *a, client_t *c)
{
    if (client_addresses(c, &a->client, &a->local) != FG_OK)
        return FG_IO;
    memcpy(&a->balancer, &a->client, sizeof a->balancer);
    netaddr_format((const struct sockaddr *)&a->client, a->peer, sizeof a->peer);
    return FG_OK;
}

void clientaddr_intercepted(clientaddr_t *a, const struct sockaddr *orig_dst, int redirected, unsigned long long sid)
{
    char dst[72];
    a->intercepted = 1;
    memcpy(&a->orig_dst, orig_dst, netaddr_len(orig_dst));
    LOG_INFO(sid, a->peer, "intercepted: original destination %s (%s)",
             netaddr_format((const struct sockaddr *)&a->orig_dst, dst, sizeof dst),
             redirected ? "REDIRECT/DNAT" : "TPROXY");
}

int clientaddr_proxy(clientaddr_t *a, int status, const proxyproto_t *pp, unsigned long long sid)
{
    if (status != FG_OK) {
        LOG_WARN(sid, a->peer, "SECURITY: missing or malformed PROXY protocol header (%s); closed",
                 fg_strerror(status));
        return status;
    }
    char balancer[72];
    snprintf(balancer, sizeof balancer, "%s", a->peer);
    if (!pp->local) {
        memcpy(&a->client, &pp->src, sizeof a->client);
        netaddr_format((const struct sockaddr *)&a->client, a->peer, sizeof a->peer);
    }
    LOG_INFO(sid, a->peer, "PROXY v%d header from %s: client %s", pp->version, balancer,
             pp->local ? "(local: the balancer itself)" : a->peer);
    return FG_OK;
}
