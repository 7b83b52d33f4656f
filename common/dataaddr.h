#ifndef FTPSGATE_DATAADDR_H
#define FTPSGATE_DATAADDR_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* The pure decisions about data-channel addresses (DESIGN.md §3): where an
 * active-mode client may be dialled, which address and port a passive reply
 * announces, and what an EPSV argument asks for. No I/O; the caller replies,
 * logs and counts. Unit-tested in tests/unit/test_dataaddr.c. */

typedef enum {
    DATAADDR_OK = 0,
    DATAADDR_SYNTAX,        /* 501: not a PORT/EPRT address */
    DATAADDR_PROTOCOL,      /* 522: EPRT names a protocol other than 1 or 2 (RFC 2428 §2) */
    DATAADDR_FOREIGN_HOST,  /* 500: a third host (FTP bounce, RFC 2577 §3) */
    DATAADDR_LOW_PORT       /* 500: a privileged port (RFC 2577 §3) */
} dataaddr_verdict_t;

/* PORT (is_eprt 0) or EPRT argument from a client whose control connection
 * comes from client. On DATAADDR_OK, *target is where the proxy dials: the
 * client's own control address (its family too, so a v4-mapped control peer
 * gets a v4-mapped data target) with the requested port. On the two SECURITY
 * verdicts *target holds the refused address, for the log. */
dataaddr_verdict_t dataaddr_check_active(int is_eprt, const char *arg, size_t arg_len,
                                         const struct sockaddr *client, int allow_low_ports,
                                         struct sockaddr_storage *target);

typedef enum {
    EPSV_ARG_OK = 0,     /* no argument, or the control connection's own family */
    EPSV_ARG_USE_1,      /* 522 "use (1)": IPv6 asked on an IPv4 control connection */
    EPSV_ARG_USE_2,      /* 522 "use (2)" */
    EPSV_ARG_SYNTAX      /* 501 */
} epsv_arg_t;

/* RFC 2428 §3: "EPSV <net-prt>" asks for a protocol family; the data
 * connection always uses the control connection's. ("EPSV ALL" is not an
 * address request and is decided by the policy before this.) */
epsv_arg_t dataaddr_check_epsv_arg(const char *arg, size_t arg_len, int control_is_ipv4);

/* The address a PASV/EPSV reply announces: the first passive.announce entry
 * whose clients match, else for an intercepted session the server the client
 * dialled (intercepted_dst, NULL when not intercepted), else the local address
 * of the control connection. tmp holds a parsed announce address; the result
 * points to tmp or to one of the arguments. */
const struct sockaddr *dataaddr_announce(const config_listener_t *l, const struct sockaddr *client,
                                         const struct sockaddr *intercepted_dst, const struct sockaddr *local,
                                         struct sockaddr_storage *tmp);

/* The port a passive reply announces for a bound pool port: the same one, or
 * its image under passive.announce_ports (NAT, Docker port publishing). */
uint16_t dataaddr_announced_port(const config_listener_t *l, uint16_t bound_port);

/* Whether the proxy listens for the backend's data connection (sending it
 * PORT/EPRT) rather than connecting to the backend's PASV/EPSV port, for a
 * client that sent PORT/EPRT (client_active 1) or PASV/EPSV. */
int dataaddr_backend_listens(data_mode_t mode, int client_active);

#endif
