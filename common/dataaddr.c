#include "dataaddr.h"

#include <string.h>

#include "fgerr.h"
#include "ftp_addr.h"
#include "netaddr.h"

dataaddr_verdict_t dataaddr_check_active(int is_eprt, const char *arg, size_t arg_len,
                                         const struct sockaddr *client, int allow_low_ports,
                                         struct sockaddr_storage *target)
{
    int rc;
    memset(target, 0, sizeof *target);
    if (!arg || arg_len == 0)
        return DATAADDR_SYNTAX;
    if (!is_eprt) {
        struct sockaddr_in *sin = (struct sockaddr_in *)target;
        uint16_t port = 0;
        rc = ftp_addr_parse_port(arg, arg_len, &sin->sin_addr, &port);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
    } else {
        rc = ftp_addr_parse_eprt(arg, arg_len, target);
        /* RFC 2428 §2: an unknown network protocol gets 522 and the list. */
        if (rc == FG_RANGE && arg_len > 2 && arg[1] != '1' && arg[1] != '2')
            return DATAADDR_PROTOCOL;
    }
    if (rc != FG_OK)
        return DATAADDR_SYNTAX;
    /* SECURITY: FTP bounce (RFC 2577 §3): the data connection may only go back
     * to the client itself, never to a third host named in PORT/EPRT. An
     * unspecified address (lftp sends "EPRT |2|::|port|") means the client
     * itself: the connection goes to its control address anyway. */
    struct sockaddr_storage any;
    memset(&any, 0, sizeof any);
    any.ss_family = target->ss_family;
    int unspecified = netaddr_same_ip((const struct sockaddr *)target, (const struct sockaddr *)&any);
    if (!unspecified && !netaddr_same_ip((const struct sockaddr *)target, client))
        return DATAADDR_FOREIGN_HOST;
    /* SECURITY: privileged ports are services, not FTP clients (RFC 2577 §3). */
    uint16_t port = netaddr_port((const struct sockaddr *)target);
    if (port < 1024 && !allow_low_ports)
        return DATAADDR_LOW_PORT;
    memcpy(target, client, netaddr_len(client));
    netaddr_set_port((struct sockaddr *)target, port);
    return DATAADDR_OK;
}

epsv_arg_t dataaddr_check_epsv_arg(const char *arg, size_t arg_len, int control_is_ipv4)
{
    if (!arg || arg_len == 0)
        return EPSV_ARG_OK;
    if (arg_len == 1 && arg[0] == '1')
        return control_is_ipv4 ? EPSV_ARG_OK : EPSV_ARG_USE_2;
    if (arg_len == 1 && arg[0] == '2')
        return control_is_ipv4 ? EPSV_ARG_USE_1 : EPSV_ARG_OK;
    return EPSV_ARG_SYNTAX;
}

const struct sockaddr *dataaddr_announce(const config_listener_t *l, const struct sockaddr *client,
                                         const struct sockaddr *intercepted_dst, const struct sockaddr *local,
                                         struct sockaddr_storage *tmp)
{
    for (size_t i = 0; i < l->passive.n_announce; i++) {
        const config_announce_t *a = &l->passive.announce[i];
        if ((a->match_all || config_cidr_match(&a->clients, client)) &&
            netaddr_parse_ip(a->address, 0, tmp) == FG_OK)
            return (const struct sockaddr *)tmp;
    }
    /* Intercepted clients believe they talk to the server: announce its address. */
    if (intercepted_dst)
        return intercepted_dst;
    return local;
}

uint16_t dataaddr_announced_port(const config_listener_t *l, uint16_t bound_port)
{
    if (!l->passive.announce_first || bound_port < l->passive.first)
        return bound_port;
    return (uint16_t)(l->passive.announce_first + (bound_port - l->passive.first));
}

int dataaddr_backend_listens(data_mode_t mode, int client_active)
{
    switch (mode) {
    case DATA_MODE_ACTIVE:
        return 1;
    case DATA_MODE_CLIENT:
        return client_active;
    default:
        return 0;
    }
}
