#ifndef FTPSGATE_CONFIG_H
#define FTPSGATE_CONFIG_H
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* ftpsgate configuration: one JSON document (DESIGN.md §5), validated whole.
 * Every error names the JSON path and the problem, e.g.
 *   listeners[1].passive.ports: "60000-59000": first port is above last
 * Unknown keys are errors. A loaded config_t is immutable and owned by the
 * caller (config_free). */

typedef enum { LISTEN_EXPLICIT = 0, LISTEN_IMPLICIT } listen_mode_t;
typedef enum { DATA_MODE_PASSIVE = 0, DATA_MODE_ACTIVE, DATA_MODE_CLIENT } data_mode_t;
typedef enum { PROTECT_PRIVATE = 0, PROTECT_ANY, PROTECT_CLEAR } data_protection_t;
typedef enum { LOGFMT_TEXT = 0, LOGFMT_JSON } log_format_t;
typedef enum { CLIENT_CERT_NONE = 0, CLIENT_CERT_OPTIONAL, CLIENT_CERT_REQUIRED } client_cert_t;
/* policy.require_session_reuse: false, true (a session of this control
 * connection), "client" (of any control connection of the same address and login). */
typedef enum { SESSION_REUSE_OFF = 0, SESSION_REUSE_CONNECTION, SESSION_REUSE_CLIENT } session_reuse_t;

/* "host:port" or "[v6]:port". host is a literal address or a DNS name. */
typedef struct {
    char *host;
    uint16_t port;
} config_hostport_t;

/* A CIDR prefix: family AF_INET or AF_INET6, network bytes, prefix length. */
typedef struct {
    int family;
    uint8_t addr[16];
    unsigned prefix;
} config_cidr_t;

typedef struct {
    char *id;            /* key under "tls" */
    char *cert;          /* PEM, leaf first then chain */
    char *key;
    char *min_version;   /* "1.2" (default) or "1.3" */
    char *max_version;   /* NULL: no maximum */
    char *ciphers;       /* TLS <= 1.2 cipher list; NULL: OpenSSL default */
    char *ciphersuites;  /* TLS 1.3; NULL: OpenSSL default */
    char *groups;        /* NULL: OpenSSL default */
    char *client_ca;     /* NULL: no client certificates */
    client_cert_t client_cert;
} config_tls_t;

typedef struct {
    config_cidr_t clients;  /* 0.0.0.0/0 style match-all for the plain string form */
    int match_all;          /* 1: matches every client (string form or "default") */
    char *address;          /* literal IPv4/IPv6 address announced */
} config_announce_t;

/* SNI: a server name (exact, or "*.example.com" for one label) -> identity. */
typedef struct {
    char *name;
    size_t tls_index;
} config_sni_t;

/* Where a listener (its default route) or a route sends its sessions. */
typedef struct {
    config_hostport_t address;    /* host "original-destination" when intercept */
    data_mode_t data_mode;
    int intercept;                /* the backend is where the client meant to go (REDIRECT/DNAT/TPROXY) */
    config_cidr_t *allow;         /* intercept: the backend must be in one of these (required) */
    size_t n_allow;
    uint16_t port;                /* intercept: backend port; 0 = the port the client dialled */
    int source_client;            /* "source": "client": connect from the client's IP (IP_TRANSPARENT) */
} config_backend_t;

/* listeners[].routes[]: what a route matches on (common/route.h decides). */
typedef enum {
    CONFIG_ROUTE_SNI = 0, /* the TLS server name: exact or "*.domain" (hostname.h), case-insensitive */
    CONFIG_ROUTE_HOST,    /* the RFC 7151 HOST name, same patterns */
    CONFIG_ROUTE_USER,    /* the whole USER argument, exactly (case-sensitive) */
    CONFIG_ROUTE_USER_AT  /* USER name@ALIAS: the alias after the last '@', case-insensitive;
                             the backend receives USER name */
} config_route_kind_t;

typedef struct {
    config_route_kind_t kind;
    char *value;              /* the pattern, user name or alias as written */
    config_backend_t backend; /* never intercept ("original-destination" is the default route's only) */
} config_route_t;

/* The text of ftpsgate's own 220 greeting when listeners[].greeting is absent. */
#define CONFIG_DEFAULT_GREETING "Service ready for new user."
#define CONFIG_GREETING_MAX 200u   /* bytes of listeners[].greeting */
#define CONFIG_ROUTES_MAX 1024u    /* entries of listeners[].routes */
#define CONFIG_DENY_MAX 64u        /* verbs of policy.deny_commands */
#define CONFIG_ROUTE_USER_MAX 255u /* bytes of a "user" route (the session keeps logins up to 255) */
#define CONFIG_TOKEN_MIN 16u       /* characters of admin.token: not guessable */
#define CONFIG_TOKEN_MAX 1024u

typedef struct {
    char *name;
    config_hostport_t bind;
    listen_mode_t mode;
    size_t tls_index;                 /* index into config_t.tls: the default identity */
    config_sni_t *sni;                /* "sni": other identities chosen by server name */
    size_t n_sni;
    config_backend_t backend;         /* the default route; unset (has_backend 0) only with routes */
    int has_backend;                  /* "backend" given. 0: a session no route matches gets a 5xx
                                         reply and no backend is contacted */
    config_route_t *routes;           /* "routes": first match wins (route.h); NULL/0: none */
    size_t n_routes;
    char *greeting;                   /* text of ftpsgate's own 220 (printable ASCII, no CR/LF,
                                         <= CONFIG_GREETING_MAX bytes); never NULL once loaded */
    int transparent;                  /* "transparent": IP_TRANSPARENT listener sockets (TPROXY) */
    struct {
        uint16_t first, last;         /* listen port range, inclusive */
        uint16_t announce_first;      /* "announce_ports": first announced port (NAT/Docker
                                         port mapping); 0: the listen port itself */
        config_announce_t *announce;  /* NULL/0: the local address of the control connection */
        size_t n_announce;
        int check_peer_ip;            /* default 1: data peer IP must equal control peer IP */
    } passive;
    struct {
        int enabled;                  /* "proxy_protocol" present: a PROXY v1/v2 header is required */
        config_cidr_t *trusted;       /* only these peers may send one; others are refused */
        size_t n_trusted;
        int data_peer_balancer;       /* "data_peer": "balancer": data connections come from the
                                         balancer's IP; default "client": from the real client */
    } proxy_protocol;
    struct {
        int enabled;                  /* PORT/EPRT accepted; default 1 */
        int allow_low_ports;          /* client data ports below 1024; default 0 (RFC 2577) */
        unsigned source_port;         /* local port for connections to clients; 0: ephemeral */
    } active;
    struct {
        int login_requires_tls;             /* default 1 */
        data_protection_t data_protection;  /* file transfers; default private */
        data_protection_t listing_protection; /* LIST/NLST/MLSD; default: data_protection */
        int ccc_allowed;                    /* "ccc": default 0; explicit listeners only */
        session_reuse_t require_session_reuse; /* default SESSION_REUSE_CONNECTION */
        int upload_requires_close_notify;   /* an upload ending in FIN without TLS close_notify is
                                               truncated (426, backend reset); default 1. 0 accepts
                                               it, for clients that never send close_notify */
        int read_only;                      /* uploads, deletions, renames, MKD/RMD, SITE refused
                                               (policy.h); default 0 */
        char (*deny_commands)[5];           /* verbs refused with 502, upper case, NUL-terminated;
                                               never AUTH, PBSZ, PROT or QUIT */
        size_t n_deny_commands;
        uint64_t max_upload_bytes;          /* 0: no limit */
        uint64_t rate_limit;                /* bytes/s per transfer and direction; 0: none, else
                                               RATELIMIT_MIN_RATE..RATELIMIT_MAX_RATE (ratelimit.h) */
    } policy;
} config_listener_t;

typedef struct {
    unsigned max_sessions;            /* 0: unlimited; default 1000 */
    unsigned max_sessions_per_ip;     /* 0: unlimited; default 50 */
    unsigned max_line;                /* command line cap after login, bytes; default 4096, min 512, max 65536 */
    unsigned max_line_prelogin;       /* before login; default 1024, min 512, <= max_line */
    unsigned login_timeout_s;         /* default 60 */
    unsigned idle_timeout_s;          /* default 600 */
    unsigned data_connect_timeout_s;  /* default 30 */
    unsigned transfer_stall_timeout_s;/* default 300 */
    unsigned backend_connect_timeout_s;/* one backend address's connect attempt; default 10 */
    unsigned tcp_keepalive_s;         /* control connections: idle s before keepalive probes; 0 off; default 60 */
} config_limits_t;

typedef struct {
    config_tls_t *tls;
    size_t n_tls;
    config_listener_t *listeners;
    size_t n_listeners;
    struct {
        int level;           /* LOG_LEVEL_* of log.h; default info */
        log_format_t format; /* default text */
        char *transfer_log;  /* "transfer_log": absolute path of the audit log; NULL: none */
    } log;
    struct {
        int enabled;
        config_hostport_t bind;
        /* "token" or the content of "token_file" (one trailing newline
         * dropped): what every admin path but /healthz then requires
         * (DESIGN.md §6). NULL: none. A secret: never logged, never shown in
         * an error. */
        char *token;
    } admin;
    char *user;              /* drop root to this user after binding; NULL: stay */
    unsigned workers;        /* event loops (threads); 0: one per online CPU */
    config_limits_t limits;
} config_t;

#define CONFIG_WORKERS_MAX 256u

/* Parses and validates. On success returns FG_OK and *out; otherwise returns
 * FG_CONFIG (or FG_NOMEM) and writes one line "path: problem" to err. */
int config_load_file(const char *path, config_t **out, char *err, size_t errlen);
int config_load_string(const char *json, config_t **out, char *err, size_t errlen);
void config_free(config_t *cfg); /* NULL is fine */

/* 1 when the listener's default backend or any of its routes' backends
 * connects from the client's address ("source": "client", IP_TRANSPARENT). */
int config_listener_source_client(const config_listener_t *l);

/* Parses "host:port" / "[v6]:port" (port 1..65535). host is malloc'd. */
int config_parse_hostport(const char *s, config_hostport_t *out);

/* Parses "a.b.c.d/n", "v6/n", or a bare address (full-length prefix). */
int config_parse_cidr(const char *s, config_cidr_t *out);
/* 1 when addr (sockaddr_in/in6) is inside cidr. IPv4-mapped IPv6 addresses
 * match IPv4 prefixes. */
int config_cidr_match(const config_cidr_t *cidr, const struct sockaddr *addr);
/* 1 when addr is in any of the n networks. */
int config_cidr_any(const config_cidr_t *list, size_t n, const struct sockaddr *addr);

#endif
