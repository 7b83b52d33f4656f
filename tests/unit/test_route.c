/* Unit tests for common/route.c: which backend a session goes to, from what
 * it knows so far (SNI, HOST, USER), with the listed order, the stage rules
 * (a route whose datum is unknown holds the decision), the case rules, the
 * USER name@alias split, and ftpsgate's own reply to HOST. The listeners are
 * loaded with the real configuration parser. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "fgerr.h"
#include "route.h"

static char *dq(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; *p != '\0'; p++)
        if (*p == '\'')
            *p = '"';
    return d;
}

/* A one-listener document: its routes R and, when B is not "", its backend. */
static config_t *load(const char *routes, const char *backend)
{
    char doc[4096], err[512] = "";
    config_t *cfg = NULL;
    snprintf(doc, sizeof doc,
             "{'tls':{'main':{'cert':'c','key':'k'}},'listeners':[{'name':'a','bind':'0.0.0.0:2121',"
             "'mode':'explicit','tls':'main','passive':{'ports':'50000-50099'}%s%s%s%s}]}",
             routes[0] ? ",'routes':" : "", routes, backend[0] ? ",'backend':" : "", backend);
    char *json = dq(doc);
    int rc = config_load_string(json, &cfg, err, sizeof err);
    free(json);
    if (rc != FG_OK)
        fprintf(stderr, "config: %s\n", err);
    CHECK_EQ_INT(rc, FG_OK);
    return cfg;
}

#define R(KEY, VAL, PORT) "{'" KEY "':'" VAL "','backend':{'address':'10.0.0.1:" PORT "'}}"
#define DEFAULT_BE "{'address':'10.0.0.9:21'}"

static route_result_t decide(const config_listener_t *l, const route_facts_t *f)
{
    route_result_t r;
    route_decide(l, f, &r);
    return r;
}

/* verdict, and for MATCH the index; for MATCH/DEFAULT the backend's port. */
static void expect_(const config_listener_t *l, const route_facts_t *f, route_verdict_t v, size_t index, int port,
                    int line)
{
    route_result_t r = decide(l, f);
    if (r.verdict != v || (v == ROUTE_MATCH && r.index != index))
        fprintf(stderr, "line %d: verdict %d index %zu, expected %d index %zu\n", line, (int)r.verdict, r.index,
                (int)v, index);
    CHECK_EQ_INT(r.verdict, v);
    if (v == ROUTE_MATCH) {
        CHECK_EQ_INT(r.index, index);
        CHECK(r.backend == &l->routes[index].backend);
    }
    if (v == ROUTE_DEFAULT)
        CHECK(r.backend == &l->backend);
    if (v == ROUTE_MATCH || v == ROUTE_DEFAULT) {
        CHECK(r.backend != NULL);
        if (r.backend != NULL)
            CHECK_EQ_INT(r.backend->address.port, port);
    } else {
        CHECK(r.backend == NULL);
        CHECK(r.user == NULL);
    }
}
#define expect(l, f, v, i, port) expect_((l), (f), (v), (i), (port), __LINE__)

static void test_no_routes(void)
{
    config_t *cfg = load("", DEFAULT_BE);
    if (!cfg)
        return;
    route_facts_t f;
    route_facts_init(&f);
    /* decided at connect: nothing to wait for */
    expect(&cfg->listeners[0], &f, ROUTE_DEFAULT, 0, 21);
    route_facts_user(&f, "alice@x", 7);
    route_result_t r = decide(&cfg->listeners[0], &f);
    CHECK_EQ_MEM(r.user, r.user_len, "alice@x"); /* unchanged */
    config_free(cfg);
}

static void test_sni(void)
{
    config_t *cfg = load("[" R("sni", "ftp.a.example", "1") "," R("sni", "*.b.example", "2") "]", DEFAULT_BE);
    if (!cfg)
        return;
    const config_listener_t *l = &cfg->listeners[0];
    route_facts_t f;

    route_facts_init(&f);
    expect(l, &f, ROUTE_WAIT, 0, 0); /* before the handshake */
    route_facts_sni(&f, "FTP.A.Example", 13);
    expect(l, &f, ROUTE_MATCH, 0, 1); /* case-insensitive, decided at the handshake */

    route_facts_init(&f);
    route_facts_sni(&f, "x.b.example", 11);
    expect(l, &f, ROUTE_MATCH, 1, 2);
    route_facts_init(&f);
    route_facts_sni(&f, "y.x.b.example", 13); /* one label only */
    expect(l, &f, ROUTE_DEFAULT, 0, 21);
    route_facts_init(&f);
    route_facts_sni(&f, "b.example", 9); /* not the domain itself */
    expect(l, &f, ROUTE_DEFAULT, 0, 21);
    route_facts_init(&f);
    route_facts_sni(&f, "ftp.a.example\0x", 15); /* a NUL never matches */
    expect(l, &f, ROUTE_DEFAULT, 0, 21);
    route_facts_init(&f);
    route_facts_sni(&f, NULL, 0); /* no SNI */
    expect(l, &f, ROUTE_DEFAULT, 0, 21);

    /* only the first handshake counts */
    route_facts_init(&f);
    route_facts_sni(&f, "other.example", 13);
    route_facts_sni(&f, "ftp.a.example", 13);
    expect(l, &f, ROUTE_DEFAULT, 0, 21);

    /* an explicit session that logs in without TLS: USER ends the SNI stage */
    route_facts_init(&f);
    route_facts_user(&f, "bob", 3);
    expect(l, &f, ROUTE_DEFAULT, 0, 21);
    config_free(cfg);
}

static void test_order_and_stages(void)
{
    /* sni, host, user, user_at; no default */
    config_t *cfg = load("[" R("sni", "a.example", "1") "," R("host", "b.example", "2") "," R("user", "carol", "3")
                         "," R("user_at", "legacy-d", "4") "]",
                         "");
    if (!cfg)
        return;
    const config_listener_t *l = &cfg->listeners[0];
    route_facts_t f;
    route_result_t r;

    route_facts_init(&f);
    expect(l, &f, ROUTE_WAIT, 0, 0);
    route_facts_sni(&f, "a.example", 9);
    expect(l, &f, ROUTE_MATCH, 0, 1); /* decided at the handshake: nothing else is waited for */

    route_facts_init(&f);
    route_facts_sni(&f, "x.example", 9);
    expect(l, &f, ROUTE_WAIT, 0, 0); /* the host route is next */
    route_facts_host(&f, "B.EXAMPLE", 9);
    expect(l, &f, ROUTE_MATCH, 1, 2); /* decided at HOST, before USER */

    route_facts_init(&f);
    route_facts_sni(&f, "x.example", 9);
    route_facts_user(&f, "carol", 5); /* no HOST: USER ends that stage too */
    expect(l, &f, ROUTE_MATCH, 2, 3);
    r = decide(l, &f);
    CHECK_EQ_MEM(r.user, r.user_len, "carol");

    route_facts_init(&f);
    route_facts_sni(&f, NULL, 0);
    route_facts_user(&f, "joe@Legacy-D", 12);
    expect(l, &f, ROUTE_MATCH, 3, 4);
    r = decide(l, &f);
    CHECK_EQ_MEM(r.user, r.user_len, "joe"); /* the backend gets USER joe */

    route_facts_init(&f);
    route_facts_sni(&f, NULL, 0);
    route_facts_user(&f, "joe@legacy-e", 12);
    expect(l, &f, ROUTE_NONE, 0, 0); /* no match, no default */
    route_facts_init(&f);
    route_facts_user(&f, "Carol", 5); /* user names are exact */
    expect(l, &f, ROUTE_NONE, 0, 0);

    /* explicit: HOST before AUTH TLS; the sni route is listed first, so it waits
     * for the handshake even though the host route matches */
    route_facts_init(&f);
    route_facts_host(&f, "b.example", 9);
    expect(l, &f, ROUTE_WAIT, 0, 0);
    route_facts_sni(&f, "a.example", 9);
    expect(l, &f, ROUTE_MATCH, 0, 1); /* first listed wins */
    route_facts_init(&f);
    route_facts_host(&f, "b.example", 9);
    route_facts_sni(&f, "z.example", 9);
    expect(l, &f, ROUTE_MATCH, 1, 2);
    config_free(cfg);
}

static void test_first_listed_wins(void)
{
    /* a user route listed before an sni route holds the decision until USER */
    config_t *cfg = load("[" R("user", "alice", "1") "," R("sni", "a.example", "2") "]", DEFAULT_BE);
    if (!cfg)
        return;
    const config_listener_t *l = &cfg->listeners[0];
    route_facts_t f;

    route_facts_init(&f);
    route_facts_sni(&f, "a.example", 9);
    expect(l, &f, ROUTE_WAIT, 0, 0);
    route_facts_user(&f, "alice", 5);
    expect(l, &f, ROUTE_MATCH, 0, 1);
    route_facts_init(&f);
    route_facts_sni(&f, "a.example", 9);
    route_facts_user(&f, "bob", 3);
    expect(l, &f, ROUTE_MATCH, 1, 2);
    route_facts_init(&f);
    route_facts_sni(&f, "c.example", 9);
    route_facts_user(&f, "bob", 3);
    expect(l, &f, ROUTE_DEFAULT, 0, 21);
    config_free(cfg);
}

static void test_user_at(void)
{
    config_t *cfg = load("[" R("user", "bob@legacy", "1") "," R("user_at", "legacy", "2") "," R("user_at", "corp.example", "3") "]",
                         DEFAULT_BE);
    if (!cfg)
        return;
    const config_listener_t *l = &cfg->listeners[0];
    route_facts_t f;
    route_result_t r;
    static const struct {
        const char *user;
        route_verdict_t v;
        size_t index;
        int port;
        const char *sent; /* what the backend gets */
    } rows[] = {
        {"bob@legacy", ROUTE_MATCH, 0, 1, "bob@legacy"},         /* the user route comes first */
        {"alice@legacy", ROUTE_MATCH, 1, 2, "alice"},
        {"alice@LEGACY", ROUTE_MATCH, 1, 2, "alice"},            /* aliases ignore case */
        {"a@b.example@legacy", ROUTE_MATCH, 1, 2, "a@b.example"}, /* split at the last '@' */
        {"alice@corp.example", ROUTE_MATCH, 2, 3, "alice"},
        {"x@alice@corp.example", ROUTE_MATCH, 2, 3, "x@alice"},
        {"@legacy", ROUTE_DEFAULT, 0, 21, "@legacy"},            /* an empty name is no match */
        {"alice@", ROUTE_DEFAULT, 0, 21, "alice@"},
        {"legacy", ROUTE_DEFAULT, 0, 21, "legacy"},
        {"alice@legacy ", ROUTE_DEFAULT, 0, 21, "alice@legacy "},
        {"alice@legacy.x", ROUTE_DEFAULT, 0, 21, "alice@legacy.x"},
        {"alice@corp", ROUTE_DEFAULT, 0, 21, "alice@corp"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        route_facts_init(&f);
        route_facts_user(&f, rows[i].user, strlen(rows[i].user));
        expect(l, &f, rows[i].v, rows[i].index, rows[i].port);
        r = decide(l, &f);
        if (r.user == NULL || r.user_len != strlen(rows[i].sent) || memcmp(r.user, rows[i].sent, r.user_len) != 0)
            fprintf(stderr, "  USER %s: the backend would get \"%.*s\"\n", rows[i].user, (int)r.user_len,
                    r.user ? r.user : "");
        CHECK_EQ_MEM(r.user, r.user_len, rows[i].sent);
    }
    /* USER without an argument: no user route matches */
    route_facts_init(&f);
    route_facts_user(&f, NULL, 0);
    expect(l, &f, ROUTE_DEFAULT, 0, 21);
    CHECK(decide(l, &f).user == NULL);
    config_free(cfg);
}

static void test_host_reply(void)
{
    config_t *cfg = load("[" R("host", "*.a.example", "1") "," R("user", "carol", "2") "]", "");
    config_t *only_host = load("[" R("host", "b.example", "1") "]", "");
    config_t *with_default = load("[" R("host", "b.example", "1") "]", DEFAULT_BE);
    if (!cfg || !only_host || !with_default) {
        config_free(cfg);
        config_free(only_host);
        config_free(with_default);
        return;
    }
    route_facts_t f;
    route_facts_init(&f);
    const config_listener_t *l = &cfg->listeners[0];
    CHECK_EQ_INT(route_host_reply(l, &f, "ftp.a.example", 13), 220);
    CHECK_EQ_INT(route_host_reply(l, &f, "other.example", 13), 220); /* carol may still come */
    CHECK_EQ_INT(route_host_reply(l, &f, "192.0.2.7", 9), 220);
    CHECK_EQ_INT(route_host_reply(l, &f, "[2001:db8::1]", 13), 220);
    CHECK_EQ_INT(route_host_reply(l, &f, "[2001:db8::1", 12), 501);
    CHECK_EQ_INT(route_host_reply(l, &f, "[a.example]", 11), 501);
    CHECK_EQ_INT(route_host_reply(l, &f, "a..example", 10), 501);
    CHECK_EQ_INT(route_host_reply(l, &f, ".example", 8), 501);
    CHECK_EQ_INT(route_host_reply(l, &f, "a example", 9), 501);
    CHECK_EQ_INT(route_host_reply(l, &f, "a_b.example", 11), 501);
    CHECK_EQ_INT(route_host_reply(l, &f, "", 0), 501);
    CHECK_EQ_INT(route_host_reply(l, &f, NULL, 0), 501);
    route_facts_user(&f, "carol", 5);
    CHECK_EQ_INT(route_host_reply(l, &f, "ftp.a.example", 13), 503); /* after USER */

    route_facts_init(&f);
    CHECK_EQ_INT(route_host_reply(&only_host->listeners[0], &f, "b.example", 9), 220);
    CHECK_EQ_INT(route_host_reply(&only_host->listeners[0], &f, "c.example", 9), 504); /* nobody takes it */
    CHECK_EQ_INT(route_host_reply(&with_default->listeners[0], &f, "c.example", 9), 220); /* the default does */
    /* a refused HOST records nothing: the session still waits for one */
    CHECK_EQ_INT(decide(&only_host->listeners[0], &f).verdict, ROUTE_WAIT);
    route_facts_host(&f, "b.example", 9);
    expect(&only_host->listeners[0], &f, ROUTE_MATCH, 0, 1);
    /* a second HOST before USER replaces the first */
    CHECK_EQ_INT(route_host_reply(&only_host->listeners[0], &f, "c.example", 9), 504);
    route_facts_host(&f, "B.example", 9);
    expect(&only_host->listeners[0], &f, ROUTE_MATCH, 0, 1);
    config_free(cfg);
    config_free(only_host);
    config_free(with_default);
}

static void test_describe(void)
{
    config_t *cfg = load("[" R("sni", "*.a.example", "1") "," R("user_at", "legacy-a", "2") "," R("user", "b\\u00e9a", "3") "]", "");
    if (!cfg)
        return;
    char buf[64];
    CHECK_STR(route_describe(&cfg->listeners[0].routes[0], buf, sizeof buf), "sni *.a.example");
    CHECK_STR(route_describe(&cfg->listeners[0].routes[1], buf, sizeof buf), "user_at legacy-a");
    CHECK_STR(route_describe(&cfg->listeners[0].routes[2], buf, sizeof buf), "user b\\xc3\\xa9a");
    CHECK_STR(route_describe(&cfg->listeners[0].routes[0], buf, 8), "sni *.a");
    config_free(cfg);
}

static void test_sni_identity(void)
{
    char doc[2048], err[512] = "";
    config_t *cfg = NULL;
    char *json = dq("{'tls':{'main':{'cert':'c','key':'k'},'net':{'cert':'c2','key':'k2'},'exact':{'cert':'c3',"
                    "'key':'k3'}},'listeners':[{'name':'a','bind':'0.0.0.0:2121','mode':'explicit','tls':'main',"
                    "'passive':{'ports':'50000-50099'},'sni':{'x.b.example':'exact','*.b.example':'net'},"
                    "'routes':[" R("sni", "x.b.example", "2") "," R("sni", "*.b.example", "1") ","
                    R("sni", "c.example", "3") "]}]}");
    snprintf(doc, sizeof doc, "%s", json);
    free(json);
    CHECK_EQ_INT(config_load_string(doc, &cfg, err, sizeof err), FG_OK);
    if (!cfg) {
        fprintf(stderr, "config: %s\n", err);
        return;
    }
    const config_listener_t *l = &cfg->listeners[0];
    CHECK_STR(cfg->tls[route_sni_identity(l, "y.B.example", 11)].id, "net");
    CHECK_STR(cfg->tls[route_sni_identity(l, "x.b.example", 11)].id, "exact"); /* the sni table's order */
    CHECK_STR(cfg->tls[route_sni_identity(l, "c.example", 9)].id, "main");     /* no entry: the listener's tls */
    CHECK_STR(cfg->tls[route_sni_identity(l, "*.b.example", 11)].id, "net");   /* a route's pattern */
    CHECK_STR(cfg->tls[route_sni_identity(l, "", 0)].id, "main");
    config_free(cfg);
}

int main(void)
{
    test_no_routes();
    test_sni();
    test_order_and_stages();
    test_first_listed_wins();
    test_user_at();
    test_host_reply();
    test_describe();
    test_sni_identity();
    return check_report();
}
