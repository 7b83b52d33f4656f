#ifndef FTPSGATE_ROUTE_H
#define FTPSGATE_ROUTE_H
#include <stddef.h>

#include "config.h"

/* Which backend a session goes to: listeners[].routes (DESIGN.md §5), as pure
 * functions of what the session knows so far. No I/O: the session calls
 * route_decide after each stage, waits while the answer is ROUTE_WAIT, and
 * dials the backend (consuming its greeting) once it is not.
 *
 * The data, in the order a session learns them (each is a stage):
 *   1. SNI, the TLS server name: at the control connection's TLS handshake
 *      (implicit: right after connect; explicit: after AUTH TLS). None when
 *      the client sent none.
 *   2. HOST (RFC 7151): the argument of an accepted HOST command. HOST must
 *      come before USER (after it: 503).
 *   3. USER: its argument.
 * A stage is known once it is over, with or without a value. USER ends all
 * three (route_facts_user): a HOST cannot follow it, and an explicit session
 * that logs in without TLS (login_requires_tls false) never gets an SNI;
 * AUTH TLS after USER cannot change a route that USER decided.
 *
 * Precedence: routes are tried in the order listed and the first that matches
 * wins. A route whose datum is not known yet may still match, so it holds the
 * decision: route_decide says ROUTE_WAIT until every route listed before the
 * first match is known not to match. So [user alice, sni a.example] waits for
 * USER even when the SNI is a.example (alice may still come); list the SNI and
 * HOST routes first to decide early. With no routes at all the answer is
 * ROUTE_DEFAULT at once, whatever is known. Once every route is known not to
 * match: the listener's backend (ROUTE_DEFAULT), or ROUTE_NONE without one.
 *
 * Matching (the case rules): sni and host routes match server names exact or
 * "*.domain" (one label, hostname.h), ignoring ASCII case (RFC 4343); a user
 * route matches the whole USER argument byte for byte; a user_at route
 * matches USER name@alias where alias, after the LAST '@' (user names may
 * contain '@', e.g. mail addresses), equals the route's value ignoring case
 * (it stands for a host), and name before it is not empty; the backend then
 * receives USER name. A USER argument that matches no user_at route goes to
 * its backend unchanged, '@' and all.
 *
 * What the session does with the answer (the lead's wiring):
 *   ROUTE_WAIT    answer FEAT with ftpsgate's own features, HOST with
 *                 route_host_reply, AUTH/PBSZ/PROT/QUIT as always; other
 *                 commands before USER: 530 (RFC 959 §5.4 lists it for
 *                 nearly every command: "log in first").
 *   ROUTE_MATCH /
 *   ROUTE_DEFAULT dial `backend` (its greeting is consumed, never relayed)
 *                 and send USER `user` when USER decided it.
 *   ROUTE_NONE    no backend is contacted; the command that needed one (USER)
 *                 gets 530 ("no server for this session"), logged and counted. */

enum {
    ROUTE_KNOW_SNI = 1u,  /* the control TLS handshake is over (or will never come) */
    ROUTE_KNOW_HOST = 2u, /* HOST was accepted, or cannot come any more */
    ROUTE_KNOW_USER = 4u  /* USER arrived */
};

/* What a session knows. The strings are borrowed (not NUL-terminated, any
 * bytes) and must stay valid while route_decide's result is used. */
typedef struct {
    unsigned known;                    /* ROUTE_KNOW_* of the stages that are over */
    const char *sni;  size_t sni_len;  /* the TLS server name; NULL: none */
    const char *host; size_t host_len; /* the accepted HOST argument; NULL: none */
    const char *user; size_t user_len; /* the USER argument; NULL: none */
} route_facts_t;

/* At connect and after REIN: nothing known. */
void route_facts_init(route_facts_t *f);
/* The control TLS handshake is done; name NULL (or len 0): the client sent
 * no SNI. Only the first handshake counts (a TLS restart after REIN starts
 * from route_facts_init). */
void route_facts_sni(route_facts_t *f, const char *name, size_t len);
/* HOST was accepted (route_host_reply said 220). */
void route_facts_host(route_facts_t *f, const char *name, size_t len);
/* USER arrived: its argument, and every stage is over. */
void route_facts_user(route_facts_t *f, const char *arg, size_t len);

typedef enum {
    ROUTE_WAIT = 0, /* a route that may still match needs a datum not known yet */
    ROUTE_MATCH,    /* routes[index] */
    ROUTE_DEFAULT,  /* no route matches (or none exist): the listener's backend */
    ROUTE_NONE      /* no route matches and there is no default: 5xx, no backend */
} route_verdict_t;

typedef struct {
    route_verdict_t verdict;
    size_t index;                    /* ROUTE_MATCH: the route in l->routes */
    const config_backend_t *backend; /* ROUTE_MATCH, ROUTE_DEFAULT: where to go; else NULL */
    const char *user;                /* USER known, MATCH or DEFAULT: the argument the backend
                                        gets (facts' user, or the name of name@alias for a
                                        user_at match; borrowed from the facts); else NULL */
    size_t user_len;
} route_result_t;

void route_decide(const config_listener_t *l, const route_facts_t *f, route_result_t *out);

/* The reply ftpsgate gives to HOST arg itself (RFC 7151 §3), for a session
 * in the state f (before HOST), when the listener has routes:
 *   503 when USER was already given (HOST must precede it);
 *   501 when arg is not a host: a domain name, an IPv4 address or
 *       "[IPv6]" (RFC 7151 §3.1);
 *   504 when no route could take the session with this HOST and there is no
 *       default (the client may try another name; nothing is recorded);
 *   220 otherwise: accepted; record it with route_facts_host. A HOST that
 *       matches no host route is accepted when a default backend, or a route
 *       of another kind, may still take the session. */
int route_host_reply(const config_listener_t *l, const route_facts_t *f, const char *arg, size_t len);

/* The TLS identity (an index into config_t.tls) that a client sending the
 * server name name gets: the first entry of the listener's `sni` table that
 * matches it, else the listener's `tls`. The identity is chosen by the `sni`
 * table alone, in the ClientHello, before any route is: an sni route needs
 * no `sni` entry when the listener's certificate covers its names. Given an
 * sni route's "*.domain" pattern it answers for the names under it. */
size_t route_sni_identity(const config_listener_t *l, const char *name, size_t len);

/* A short description of routes[i]'s match for logs and --check-config, e.g.
 * "sni *.a.example", "user_at legacy-a". Always NUL-terminates out. */
char *route_describe(const config_route_t *r, char *out, size_t cap);

#endif
