#include "route.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "hostname.h"
#include "log.h"

void route_facts_init(route_facts_t *f)
{
    memset(f, 0, sizeof *f);
}

void route_facts_sni(route_facts_t *f, const char *name, size_t len)
{
    if (f->known & ROUTE_KNOW_SNI)
        return;
    f->known |= ROUTE_KNOW_SNI;
    f->sni = len > 0 ? name : NULL;
    f->sni_len = f->sni != NULL ? len : 0;
}

void route_facts_host(route_facts_t *f, const char *name, size_t len)
{
    f->known |= ROUTE_KNOW_HOST;
    f->host = len > 0 ? name : NULL;
    f->host_len = f->host != NULL ? len : 0;
}

void route_facts_user(route_facts_t *f, const char *arg, size_t len)
{
    f->known |= ROUTE_KNOW_SNI | ROUTE_KNOW_HOST | ROUTE_KNOW_USER;
    f->user = len > 0 ? arg : NULL;
    f->user_len = f->user != NULL ? len : 0;
}

static unsigned needs(config_route_kind_t kind)
{
    switch (kind) {
    case CONFIG_ROUTE_SNI: return ROUTE_KNOW_SNI;
    case CONFIG_ROUTE_HOST: return ROUTE_KNOW_HOST;
    case CONFIG_ROUTE_USER:
    case CONFIG_ROUTE_USER_AT: return ROUTE_KNOW_USER;
    }
    return ROUTE_KNOW_USER;
}

/* The name of USER name@alias when alias (after the last '@') is value. */
static int user_at_match(const char *value, const char *user, size_t len, size_t *name_len)
{
    size_t at = len;
    while (at > 0 && user[at - 1] != '@')
        at--;
    if (at < 2) /* no '@', or nothing before it */
        return 0;
    if (!hostname_equal(value, strlen(value), user + at, len - at))
        return 0;
    *name_len = at - 1;
    return 1;
}

/* 1 when r matches the known facts; *name_len: for user_at, the length of
 * the name part. */
static int matches(const config_route_t *r, const route_facts_t *f, size_t *name_len)
{
    switch (r->kind) {
    case CONFIG_ROUTE_SNI:
        return f->sni != NULL && hostname_match(r->value, f->sni, f->sni_len);
    case CONFIG_ROUTE_HOST:
        return f->host != NULL && hostname_match(r->value, f->host, f->host_len);
    case CONFIG_ROUTE_USER:
        return f->user != NULL && strlen(r->value) == f->user_len && memcmp(r->value, f->user, f->user_len) == 0;
    case CONFIG_ROUTE_USER_AT:
        return f->user != NULL && user_at_match(r->value, f->user, f->user_len, name_len);
    }
    return 0;
}

void route_decide(const config_listener_t *l, const route_facts_t *f, route_result_t *out)
{
    memset(out, 0, sizeof *out);
    out->user = f->user;
    out->user_len = f->user_len;
    for (size_t i = 0; i < l->n_routes; i++) {
        const config_route_t *r = &l->routes[i];
        size_t name_len = 0;
        if (!(f->known & needs(r->kind))) {
            /* This route may still match, and it comes first. */
            out->verdict = ROUTE_WAIT;
            out->user = NULL;
            out->user_len = 0;
            return;
        }
        if (matches(r, f, &name_len)) {
            out->verdict = ROUTE_MATCH;
            out->index = i;
            out->backend = &r->backend;
            if (r->kind == CONFIG_ROUTE_USER_AT)
                out->user_len = name_len; /* USER name@alias -> USER name */
            return;
        }
    }
    if (l->has_backend) {
        out->verdict = ROUTE_DEFAULT;
        out->backend = &l->backend;
        return;
    }
    out->verdict = ROUTE_NONE;
    out->user = NULL;
    out->user_len = 0;
}

/* RFC 7151 §3.1: host = a domain name, an IPv4 address, or "[" IPv6 "]". */
static int host_arg_valid(const char *arg, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char addr[16];

    if (len == 0 || len > 253)
        return 0;
    if (arg[0] == '[') {
        if (len < 3 || arg[len - 1] != ']' || len - 2 >= sizeof buf)
            return 0;
        memcpy(buf, arg + 1, len - 2);
        buf[len - 2] = '\0';
        return inet_pton(AF_INET6, buf, addr) == 1;
    }
    for (size_t i = 0; i < len; i++) {
        char c = arg[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
        if (c == '.' && (i == 0 || arg[i - 1] == '.'))
            return 0; /* an empty label */
    }
    return 1;
}

int route_host_reply(const config_listener_t *l, const route_facts_t *f, const char *arg, size_t len)
{
    if (f->known & ROUTE_KNOW_USER)
        return 503;
    if (arg == NULL || !host_arg_valid(arg, len))
        return 501;
    route_facts_t with = *f;
    route_facts_host(&with, arg, len);
    route_result_t r;
    route_decide(l, &with, &r);
    return r.verdict == ROUTE_NONE ? 504 : 220;
}

size_t route_sni_identity(const config_listener_t *l, const char *name, size_t len)
{
    for (size_t i = 0; i < l->n_sni; i++)
        if (hostname_match(l->sni[i].name, name, len))
            return l->sni[i].tls_index;
    return l->tls_index;
}

char *route_describe(const config_route_t *r, char *out, size_t cap)
{
    static const char *const kinds[] = { "sni", "host", "user", "user_at" };
    char shown[128];

    if (cap == 0)
        return out;
    log_escape(r->value, strlen(r->value), shown, sizeof shown);
    snprintf(out, cap, "%s %s", (unsigned)r->kind < 4 ? kinds[r->kind] : "?", shown);
    return out;
}
