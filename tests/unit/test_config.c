/* config.c: a full document loads with the right values, defaults apply, and
 * every broken document is refused with the exact "path: problem" line. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "fgerr.h"
#include "log.h"

/* Documents below are written with ' for " to stay readable. */
static char *dq(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; *p != '\0'; p++)
        if (*p == '\'')
            *p = '"';
    return d;
}

static int n_bad;

static void expect_err_(const char *doc, const char *want, int line)
{
    char err[512] = "unset";
    config_t *cfg = (config_t *)1;
    char *json = dq(doc);
    int rc = config_load_string(json, &cfg, err, sizeof err);

    n_bad++;
    if (rc != FG_CONFIG || strcmp(err, want) != 0)
        fprintf(stderr, "line %d: rc %d, error:\n  got  %s\n  want %s\n", line, rc, err, want);
    CHECK_EQ_INT(rc, FG_CONFIG);
    CHECK(cfg == NULL);
    CHECK_STR(err, want);
    free(json);
}
#define expect_err(doc, want) expect_err_((doc), (want), __LINE__)

static config_t *load_ok_(const char *doc, int line)
{
    char err[512] = "";
    config_t *cfg = NULL;
    char *json = dq(doc);
    int rc = config_load_string(json, &cfg, err, sizeof err);

    if (rc != FG_OK)
        fprintf(stderr, "line %d: unexpected error: %s\n", line, err);
    CHECK_EQ_INT(rc, FG_OK);
    CHECK(cfg != NULL);
    free(json);
    return cfg;
}
#define load_ok(doc) load_ok_((doc), __LINE__)

#define TLS "'tls':{'main':{'cert':'c.pem','key':'k.pem'}}"
#define L_A "'name':'a','bind':'0.0.0.0:2121','mode':'explicit','tls':'main','backend':{'address':'127.0.0.1:21'}"
#define PAS_A "'passive':{'ports':'50000-50099'}"
/* a one-listener document with extra listener members (X), extra top-level members (T) */
#define DOC(X, T) "{" TLS ",'listeners':[{" L_A "," PAS_A X "}]" T "}"
/* listener `a` with its passive member replaced */
#define DOCP(P) "{" TLS ",'listeners':[{" L_A ",'passive':" P "}]}"
/* listener `a` with its backend replaced */
#define DOCB(B) "{" TLS ",'listeners':[{'name':'a','bind':'0.0.0.0:2121','mode':'explicit','tls':'main','backend':" B "," PAS_A "}]}"
/* a listener from scratch */
#define DOCL(L) "{" TLS ",'listeners':[" L "]}"
#define DOCLIM(LIM) DOC("", ",'limits':" LIM)
#define DOCTLS(T) "{'tls':{'main':" T "},'listeners':[{" L_A "," PAS_A "}]}"

static void test_full(void)
{
    char err[512] = "";
    config_t *cfg = NULL;
    int rc = config_load_file("config/full.json", &cfg, err, sizeof err);

    if (rc != FG_OK)
        fprintf(stderr, "full.json: %s\n", err);
    CHECK_EQ_INT(rc, FG_OK);
    if (cfg == NULL)
        return;
    CHECK_EQ_INT(cfg->n_tls, 2);
    CHECK_STR(cfg->tls[0].id, "main");
    CHECK_STR(cfg->tls[0].cert, "/etc/ftpsgate/fullchain.pem");
    CHECK_STR(cfg->tls[0].key, "/etc/ftpsgate/key.pem");
    CHECK_STR(cfg->tls[0].min_version, "1.2");
    CHECK_STR(cfg->tls[0].max_version, "1.3");
    CHECK_STR(cfg->tls[0].ciphers, "ECDHE+AESGCM:ECDHE+CHACHA20");
    CHECK_STR(cfg->tls[0].ciphersuites, "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
    CHECK_STR(cfg->tls[0].groups, "X25519:P-256");
    CHECK_STR(cfg->tls[0].client_ca, "/etc/ftpsgate/clients-ca.pem");
    CHECK_EQ_INT(cfg->tls[0].client_cert, CLIENT_CERT_OPTIONAL);
    CHECK_STR(cfg->tls[1].id, "alt");
    CHECK_STR(cfg->tls[1].min_version, "1.2");
    CHECK(cfg->tls[1].max_version == NULL);
    CHECK(cfg->tls[1].ciphers == NULL && cfg->tls[1].ciphersuites == NULL);
    CHECK(cfg->tls[1].groups == NULL && cfg->tls[1].client_ca == NULL);
    CHECK_EQ_INT(cfg->tls[1].client_cert, CLIENT_CERT_NONE);

    CHECK_EQ_INT(cfg->n_listeners, 3);
    config_listener_t *l = &cfg->listeners[0];
    CHECK_STR(l->name, "ftps-explicit");
    CHECK_STR(l->bind.host, "0.0.0.0");
    CHECK_EQ_INT(l->bind.port, 21);
    CHECK_EQ_INT(l->mode, LISTEN_EXPLICIT);
    CHECK_EQ_INT(l->tls_index, 0);
    CHECK_STR(l->backend.address.host, "legacy.internal");
    CHECK_EQ_INT(l->backend.address.port, 21);
    CHECK_EQ_INT(l->backend.data_mode, DATA_MODE_PASSIVE);
    CHECK_EQ_INT(l->passive.first, 50000);
    CHECK_EQ_INT(l->passive.last, 50099);
    CHECK_EQ_INT(l->passive.n_announce, 1);
    CHECK(l->passive.announce[0].match_all);
    CHECK_STR(l->passive.announce[0].address, "203.0.113.10");
    CHECK_EQ_INT(l->passive.check_peer_ip, 1);
    CHECK_EQ_INT(l->policy.login_requires_tls, 1);
    CHECK_EQ_INT(l->policy.data_protection, PROTECT_PRIVATE);

    l = &cfg->listeners[1];
    CHECK_STR(l->name, "ftps-implicit");
    CHECK_STR(l->bind.host, "::");
    CHECK_EQ_INT(l->bind.port, 990);
    CHECK_EQ_INT(l->mode, LISTEN_IMPLICIT);
    CHECK_EQ_INT(l->tls_index, 1);
    CHECK_STR(l->backend.address.host, "2001:db8::5");
    CHECK_EQ_INT(l->backend.address.port, 2121);
    CHECK_EQ_INT(l->backend.data_mode, DATA_MODE_ACTIVE);
    CHECK_EQ_INT(l->passive.first, 50100);
    CHECK_EQ_INT(l->passive.last, 50199);
    CHECK_EQ_INT(l->passive.n_announce, 3);
    CHECK(!l->passive.announce[0].match_all);
    CHECK_EQ_INT(l->passive.announce[0].clients.family, AF_INET);
    CHECK_EQ_INT(l->passive.announce[0].clients.prefix, 8);
    CHECK_EQ_INT(l->passive.announce[0].clients.addr[0], 10);
    CHECK_STR(l->passive.announce[0].address, "10.1.2.3");
    CHECK_EQ_INT(l->passive.announce[1].clients.family, AF_INET6);
    CHECK_EQ_INT(l->passive.announce[1].clients.prefix, 32);
    CHECK_STR(l->passive.announce[1].address, "2001:db8::10");
    CHECK(l->passive.announce[2].match_all);
    CHECK_STR(l->passive.announce[2].address, "203.0.113.10");
    CHECK_EQ_INT(l->passive.check_peer_ip, 0);
    CHECK_EQ_INT(l->policy.login_requires_tls, 0);
    CHECK_EQ_INT(l->policy.data_protection, PROTECT_ANY);

    l = &cfg->listeners[2];
    CHECK_STR(l->name, "plain.test_3");
    CHECK_EQ_INT(l->tls_index, 0);
    CHECK_EQ_INT(l->backend.data_mode, DATA_MODE_CLIENT);
    CHECK_EQ_INT(l->passive.first, 60000);
    CHECK_EQ_INT(l->passive.last, 60000);
    CHECK(l->passive.announce == NULL);
    CHECK_EQ_INT(l->passive.n_announce, 0);
    CHECK_EQ_INT(l->policy.login_requires_tls, 1);
    CHECK_EQ_INT(l->policy.data_protection, PROTECT_CLEAR);

    CHECK_EQ_INT(cfg->log.level, LOG_LEVEL_DEBUG);
    CHECK_EQ_INT(cfg->log.format, LOGFMT_JSON);
    CHECK_EQ_INT(cfg->admin.enabled, 1);
    CHECK_STR(cfg->admin.bind.host, "127.0.0.1");
    CHECK_EQ_INT(cfg->admin.bind.port, 9121);
    CHECK_STR(cfg->user, "ftpsgate");
    CHECK_EQ_INT(cfg->limits.max_sessions, 0);
    CHECK_EQ_INT(cfg->limits.max_sessions_per_ip, 20);
    CHECK_EQ_INT(cfg->limits.max_line, 8192);
    CHECK_EQ_INT(cfg->limits.max_line_prelogin, 512);
    CHECK_EQ_INT(cfg->limits.login_timeout_s, 30);
    CHECK_EQ_INT(cfg->limits.idle_timeout_s, 900);
    CHECK_EQ_INT(cfg->limits.data_connect_timeout_s, 15);
    CHECK_EQ_INT(cfg->limits.transfer_stall_timeout_s, 120);
    CHECK_EQ_INT(cfg->limits.backend_connect_timeout_s, 5);
    CHECK_EQ_INT(cfg->limits.tcp_keepalive_s, 30);
    config_free(cfg);
}

/* The documented example (README, Configuration) stays a valid configuration. */
static void test_example(void)
{
    char err[512] = "";
    config_t *cfg = NULL;
    int rc = config_load_file("../../config.example.json", &cfg, err, sizeof err);
    if (rc != FG_OK)
        fprintf(stderr, "config.example.json: %s\n", err);
    CHECK_EQ_INT(rc, FG_OK);
    if (cfg == NULL)
        return;
    CHECK_EQ_INT(cfg->listeners[0].n_routes, 4);
    CHECK_STR(cfg->log.transfer_log, "/var/log/ftpsgate/transfers.log");
    config_free(cfg);
}

static void test_defaults(void)
{
    config_t *cfg = load_ok(DOC("", ""));
    if (cfg == NULL)
        return;
    CHECK_EQ_INT(cfg->n_tls, 1);
    CHECK_STR(cfg->tls[0].min_version, "1.2");
    CHECK(cfg->tls[0].max_version == NULL);
    CHECK_EQ_INT(cfg->tls[0].client_cert, CLIENT_CERT_NONE);
    CHECK_EQ_INT(cfg->n_listeners, 1);
    CHECK_EQ_INT(cfg->listeners[0].backend.data_mode, DATA_MODE_PASSIVE);
    CHECK_EQ_INT(cfg->listeners[0].passive.check_peer_ip, 1);
    CHECK(cfg->listeners[0].passive.announce == NULL);
    CHECK_EQ_INT(cfg->listeners[0].policy.login_requires_tls, 1);
    CHECK_EQ_INT(cfg->listeners[0].policy.data_protection, PROTECT_PRIVATE);
    CHECK_EQ_INT(cfg->log.level, LOG_LEVEL_INFO);
    CHECK_EQ_INT(cfg->log.format, LOGFMT_TEXT);
    CHECK_EQ_INT(cfg->admin.enabled, 0);
    CHECK(cfg->admin.bind.host == NULL);
    CHECK(cfg->user == NULL);
    CHECK_EQ_INT(cfg->limits.max_sessions, 1000);
    CHECK_EQ_INT(cfg->limits.max_sessions_per_ip, 50);
    CHECK_EQ_INT(cfg->limits.max_line, 4096);
    CHECK_EQ_INT(cfg->limits.max_line_prelogin, 1024);
    CHECK_EQ_INT(cfg->limits.login_timeout_s, 60);
    CHECK_EQ_INT(cfg->limits.idle_timeout_s, 600);
    CHECK_EQ_INT(cfg->limits.data_connect_timeout_s, 30);
    CHECK_EQ_INT(cfg->limits.transfer_stall_timeout_s, 300);
    CHECK_EQ_INT(cfg->limits.backend_connect_timeout_s, 10);
    CHECK_EQ_INT(cfg->limits.tcp_keepalive_s, 60);
    config_free(cfg);

    /* a CA alone means client certificates are required */
    cfg = load_ok(DOCTLS("{'cert':'c','key':'k','client_ca':'ca.pem'}"));
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->tls[0].client_cert, CLIENT_CERT_REQUIRED);
    config_free(cfg);

    /* a small max_line drags the default pre-login cap down with it */
    cfg = load_ok(DOCLIM("{'max_line':600}"));
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->limits.max_line_prelogin, 600);
    config_free(cfg);

    /* same port on different addresses, and [::] beside 0.0.0.0, are fine */
    cfg = load_ok(DOCL("{" L_A "," PAS_A "},"
                       "{'name':'b','bind':'[::]:2121','mode':'implicit','tls':'main',"
                       "'backend':{'address':'h:21'},'passive':{'ports':'50100-50199'}},"
                       "{'name':'c','bind':'[::1]:21','mode':'implicit','tls':'main',"
                       "'backend':{'address':'h:21'},'passive':{'ports':'50200-50299'}},"
                       "{'name':'d','bind':'[::2]:21','mode':'implicit','tls':'main',"
                       "'backend':{'address':'h:21'},'passive':{'ports':'50300-50399'}}"));
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->n_listeners, 4);
    config_free(cfg);
    config_free(NULL);
}

static void test_bad_json(void)
{
    expect_err("{'tls': {}", "line 1, column 10: '}' expected near end of file");
    expect_err("{\n  'tls': {},\n  'listeners': [,]\n}", "line 3, column 17: unexpected token near ','");
    expect_err("", "line 1, column 0: '[' or '{' expected near end of file");
    expect_err("{'tls':1,'tls':2}", "line 1, column 14: duplicate object key near '\"tls\"'");
    expect_err("[1]", "(root): expected object, got array");
    expect_err("{'tls':{'main':{'cert':'\\u0000','key':'k'}}}",
               "line 1, column 31: \\u0000 is not allowed without JSON_ALLOW_NUL near '\"\\u0000\"'");
    /* a raw control byte inside a string: refused with its position */
    expect_err("{'tls':'a\tb'}", "line 1, column 9: control character 0x9 near '\"a'");
}

static void test_bad_top(void)
{
    expect_err("{'listeners':[]}", "tls: required");
    expect_err(DOC("", ",'bogus':1"), "bogus: unknown key");
    expect_err("{'tls':[]}", "tls: expected object, got array");
    expect_err("{'tls':{}}", "tls: must contain at least one identity");
    expect_err("{" TLS "}", "listeners: required");
    expect_err("{" TLS ",'listeners':[]}", "listeners: must contain at least one listener");
    expect_err("{" TLS ",'listeners':{}}", "listeners: expected array, got object");
    expect_err(DOC("", ",'log':{'level':'verbose'}"),
               "log.level: must be \"error\", \"warn\", \"info\" or \"debug\", got \"verbose\"");
    expect_err(DOC("", ",'log':{'format':'xml'}"), "log.format: must be \"text\" or \"json\", got \"xml\"");
    expect_err(DOC("", ",'log':{'colour':true}"), "log.colour: unknown key");
    expect_err(DOC("", ",'admin':{}"), "admin.bind: required");
    expect_err(DOC("", ",'admin':{'bind':'localhost:9121'}"),
               "admin.bind: \"localhost:9121\": host must be a literal IP address, not a name");
    expect_err(DOC("", ",'admin':{'bind':'0.0.0.0:2121'}"),
               "admin.bind: \"0.0.0.0:2121\" clashes with \"0.0.0.0:2121\" of listeners[0] \"a\"");
    expect_err(DOC("", ",'admin':{'bind':'127.0.0.1:50050'}"),
               "listeners[0].passive.ports: \"50000-50099\" contains port 50050 of admin.bind");
    expect_err(DOC("", ",'user':''"), "user: must not be empty");
    expect_err(DOC("", ",'user':'ftp gate'"), "user: \"ftp gate\": not a valid user name");
    expect_err(DOC("", ",'user':0"), "user: expected string, got integer");
}

static void test_bad_tls(void)
{
    expect_err(DOCTLS("{'key':'k'}"), "tls.main.cert: required");
    expect_err(DOCTLS("{'cert':'c'}"), "tls.main.key: required");
    expect_err(DOCTLS("{'cert':'','key':'k'}"), "tls.main.cert: must not be empty");
    expect_err(DOCTLS("{'cert':'c','key':'k','pin':'x'}"), "tls.main.pin: unknown key");
    expect_err(DOCTLS("'c.pem'"), "tls.main: expected object, got string");
    expect_err(DOCTLS("{'cert':'c','key':'k','min_version':'1.1'}"),
               "tls.main.min_version: must be \"1.2\" or \"1.3\", got \"1.1\"");
    expect_err(DOCTLS("{'cert':'c','key':'k','min_version':1.3}"),
               "tls.main.min_version: expected string, got real number");
    expect_err(DOCTLS("{'cert':'c','key':'k','min_version':'1.3','max_version':'1.2'}"),
               "tls.main.max_version: \"1.2\" is below min_version \"1.3\"");
    expect_err(DOCTLS("{'cert':'c','key':'k','client_cert':'required'}"),
               "tls.main.client_cert: \"required\" needs tls.main.client_ca");
    expect_err(DOCTLS("{'cert':'c','key':'k','client_cert':'none','client_ca':'ca'}"),
               "tls.main.client_cert: \"none\" contradicts client_ca; remove one of them");
    expect_err(DOCTLS("{'cert':'c','key':'k','client_cert':'maybe'}"),
               "tls.main.client_cert: must be \"none\", \"optional\" or \"required\", got \"maybe\"");
    expect_err(DOCTLS("{'cert':'c','key':'k','groups':''}"), "tls.main.groups: must not be empty");
    expect_err("{'tls':{'my id':{'cert':'c','key':'k'}}}",
               "tls: \"my id\": identity names must match [A-Za-z0-9_.-]{1,64}");
}

static void test_bad_listener(void)
{
    expect_err(DOC(",'bogus':1", ""), "listeners[0].bogus: unknown key");
    expect_err(DOC(",'proxy_protocol':{}", ""), "listeners[0].proxy_protocol.trusted: required");
    expect_err(DOC(",'proxy_protocol':{'trusted':[]}", ""),
               "listeners[0].proxy_protocol.trusted: must list at least one trusted network (the load balancers)");
    expect_err(DOC(",'proxy_protocol':{'trusted':['10.0.0.0/33']}", ""),
               "listeners[0].proxy_protocol.trusted[0]: \"10.0.0.0/33\": expected a CIDR (\"10.0.0.0/8\", \"2001:db8::/32\")");
    expect_err(DOC(",'proxy_protocol':{'trusted':['192.168.1.7/16']}", ""),
               "listeners[0].proxy_protocol.trusted[0]: \"192.168.1.7/16\": host bits set below the prefix length");
    expect_err(DOC(",'proxy_protocol':{'trusted':['10.0.0.0/8'],'data_peer':'x'}", ""),
               "listeners[0].proxy_protocol.data_peer: must be \"client\" or \"balancer\", got \"x\"");
    expect_err(DOCL("1"), "listeners[0]: expected object, got integer");
    expect_err(DOCL("{'bind':'0.0.0.0:21'}"), "listeners[0].name: required");
    expect_err(DOCL("{'name':'a b'}"), "listeners[0].name: \"a b\": must match [A-Za-z0-9_.-]{1,64}");
    expect_err(DOCL("{'name':'a'}"), "listeners[0].bind: required");
    expect_err(DOCL("{'name':'a','bind':'localhost:21'}"),
               "listeners[0].bind: \"localhost:21\": host must be a literal IP address, not a name");
    expect_err(DOCL("{'name':'a','bind':'0.0.0.0:0'}"), "listeners[0].bind: \"0.0.0.0:0\": port must be 1..65535");
    expect_err(DOCL("{'name':'a','bind':'0.0.0.0:65536'}"),
               "listeners[0].bind: \"0.0.0.0:65536\": port must be 1..65535");
    expect_err(DOCL("{'name':'a','bind':'::1:21'}"),
               "listeners[0].bind: \"::1:21\": expected host:port or [IPv6]:port");
    expect_err(DOCL("{'name':'a','bind':'0.0.0.0'}"),
               "listeners[0].bind: \"0.0.0.0\": expected host:port or [IPv6]:port");
    expect_err(DOCL("{'name':'a','bind':'10.0.0.256:21'}"),
               "listeners[0].bind: \"10.0.0.256:21\": expected host:port or [IPv6]:port");
    expect_err(DOCL("{'name':'a','bind':'0.0.0.0:21'}"), "listeners[0].mode: required");
    expect_err(DOCL("{'name':'a','bind':'0.0.0.0:21','mode':'foo'}"),
               "listeners[0].mode: must be \"explicit\" or \"implicit\", got \"foo\"");
    expect_err(DOCL("{'name':'a','bind':'0.0.0.0:21','mode':'implicit'}"), "listeners[0].tls: required");
    expect_err(DOCL("{'name':'a','bind':'0.0.0.0:21','mode':'implicit','tls':'other'}"),
               "listeners[0].tls: \"other\" is not an identity under tls");
    expect_err(DOCL("{'name':'a','bind':'0.0.0.0:21','mode':'implicit','tls':'main'}"),
               "listeners[0].backend: required");
    expect_err(DOC(",'policy':{'data_protection':'none'}", ""),
               "listeners[0].policy.data_protection: must be \"private\", \"any\" or \"clear\", got \"none\"");
    expect_err(DOC(",'policy':{'login_requires_tls':'yes'}", ""),
               "listeners[0].policy.login_requires_tls: expected boolean, got string");
    expect_err(DOC(",'policy':{'login_require_tls':false}", ""), "listeners[0].policy.login_require_tls: unknown key");
    expect_err(DOC(",'policy':[]", ""), "listeners[0].policy: expected object, got array");
}

static void test_bad_backend(void)
{
    expect_err(DOCB("{}"), "listeners[0].backend.address: required");
    expect_err(DOCB("{'address':'original-destination'}"),
               "listeners[0].backend.allow: required with \"original-destination\" (the networks the servers are in)");
    expect_err(DOCB("{'address':'original-destination','allow':[]}"),
               "listeners[0].backend.allow: expected a non-empty array of CIDRs");
    expect_err(DOCB("{'address':'original-destination','allow':['10.0.0.0/8','x']}"),
               "listeners[0].backend.allow[1]: \"x\": expected a CIDR (\"10.0.0.0/8\", \"2001:db8::/32\")");
    expect_err(DOCB("{'address':'original-destination','allow':['10.0.0.1/8']}"),
               "listeners[0].backend.allow[0]: \"10.0.0.1/8\": host bits set below the prefix length");
    expect_err(DOCB("{'address':'original-destination','allow':[8]}"),
               "listeners[0].backend.allow[0]: expected string (a CIDR), got integer");
    expect_err(DOCB("{'address':'original-destination','allow':['10.0.0.0/8'],'port':0}"),
               "listeners[0].backend.port: 0 is out of range (1..65535)");
    expect_err(DOCB("{'address':'h:21','allow':['10.0.0.0/8']}"),
               "listeners[0].backend.allow: only with \"address\": \"original-destination\"");
    expect_err(DOCB("{'address':'h:21','port':21}"),
               "listeners[0].backend.port: only with \"address\": \"original-destination\"");
    expect_err(DOCB("{'address':'h:21','source':'elsewhere'}"),
               "listeners[0].backend.source: must be \"proxy\" or \"client\", got \"elsewhere\"");
    expect_err(DOCB("{'address':'h:21','srv':1}"), "listeners[0].backend.srv: unknown key");
    expect_err(DOCB("{'address':'-bad-.example:21'}"),
               "listeners[0].backend.address: \"-bad-.example:21\": expected host:port or [IPv6]:port");
    expect_err(DOCB("{'address':'[10.0.0.1]:21'}"),
               "listeners[0].backend.address: \"[10.0.0.1]:21\": expected host:port or [IPv6]:port");
    expect_err(DOCB("{'address':'h:ftp'}"), "listeners[0].backend.address: \"h:ftp\": expected host:port or [IPv6]:port");
    expect_err(DOCB("{'address':'h:21','data_mode':'epsv'}"),
               "listeners[0].backend.data_mode: must be \"passive\", \"active\" or \"client\", got \"epsv\"");
}

static void test_bad_passive(void)
{
    expect_err("{" TLS ",'listeners':[{" L_A "}]}", "listeners[0].passive: required");
    expect_err(DOCP("{}"), "listeners[0].passive.ports: required");
    expect_err(DOCP("{'ports':50000}"), "listeners[0].passive.ports: expected string, got integer");
    expect_err(DOCP("{'ports':'60000-59000'}"), "listeners[0].passive.ports: \"60000-59000\": first port is above last");
    expect_err(DOCP("{'ports':'1000-2000'}"), "listeners[0].passive.ports: \"1000-2000\": ports must be 1024..65535");
    expect_err(DOCP("{'ports':'60000-70000'}"), "listeners[0].passive.ports: \"60000-70000\": ports must be 1024..65535");
    expect_err(DOCP("{'ports':'50000'}"),
               "listeners[0].passive.ports: \"50000\": expected \"first-last\", e.g. \"50000-50099\"");
    expect_err(DOCP("{'ports':'50000-'}"),
               "listeners[0].passive.ports: \"50000-\": expected \"first-last\", e.g. \"50000-50099\"");
    expect_err(DOCP("{'ports':' 50000-50001'}"),
               "listeners[0].passive.ports: \" 50000-50001\": expected \"first-last\", e.g. \"50000-50099\"");
    expect_err(DOCP("{'ports':'50000-50099','check_peer_ip':1}"),
               "listeners[0].passive.check_peer_ip: expected boolean, got integer");
    expect_err(DOCP("{'ports':'50000-50099','range':1}"), "listeners[0].passive.range: unknown key");
    expect_err(DOCP("{'ports':'2000-2200'}"),
               "listeners[0].passive.ports: \"2000-2200\" contains port 2121 of listeners[0] \"a\" bind");
    /* announce */
    expect_err(DOCP("{'ports':'50000-50099','announce':'ftp.example.com'}"),
               "listeners[0].passive.announce: \"ftp.example.com\": must be a literal IP address");
    expect_err(DOCP("{'ports':'50000-50099','announce':42}"),
               "listeners[0].passive.announce: expected string or array, got integer");
    expect_err(DOCP("{'ports':'50000-50099','announce':[]}"),
               "listeners[0].passive.announce: must not be empty (leave it out to announce the local address)");
    expect_err(DOCP("{'ports':'50000-50099','announce':['1.2.3.4']}"),
               "listeners[0].passive.announce[0]: expected object, got string");
    expect_err(DOCP("{'ports':'50000-50099','announce':[{'clients':'default'}]}"),
               "listeners[0].passive.announce[0].address: required");
    expect_err(DOCP("{'ports':'50000-50099','announce':[{'address':'1.2.3.4'}]}"),
               "listeners[0].passive.announce[0].clients: required");
    expect_err(DOCP("{'ports':'50000-50099','announce':[{'clients':'default','address':'1.2.3.4','x':1}]}"),
               "listeners[0].passive.announce[0].x: unknown key");
    expect_err(DOCP("{'ports':'50000-50099','announce':[{'clients':'10.0.0.0/8','address':'1.2.3.4'},"
                    "{'clients':'10.0.0.0/33','address':'1.2.3.4'}]}"),
               "listeners[0].passive.announce[1].clients: \"10.0.0.0/33\": prefix length too long");
    expect_err(DOCP("{'ports':'50000-50099','announce':[{'clients':'10.0.0/8','address':'1.2.3.4'}]}"),
               "listeners[0].passive.announce[0].clients: \"10.0.0/8\": expected a CIDR "
               "(\"10.0.0.0/8\", \"2001:db8::/32\") or \"default\"");
    expect_err(DOCP("{'ports':'50000-50099','announce':[{'clients':'10.1.0.0/8','address':'1.2.3.4'}]}"),
               "listeners[0].passive.announce[0].clients: \"10.1.0.0/8\": host bits set below the prefix length");
    expect_err(DOCP("{'ports':'50000-50099','announce':[{'clients':'10.0.0.0/8','address':'gw'}]}"),
               "listeners[0].passive.announce[0].address: \"gw\": must be a literal IP address");
    expect_err(DOCP("{'ports':'50000-50099','announce':[{'clients':'default','address':'1.2.3.4'},"
                    "{'clients':'10.0.0.0/8','address':'10.0.0.1'}]}"),
               "listeners[0].passive.announce[1]: unreachable: follows the \"default\" entry "
               "listeners[0].passive.announce[0]");
}

#define LB(name, bind, ports)                                                                        \
    "{'name':'" name "','bind':'" bind "','mode':'explicit','tls':'main','backend':{'address':'h:21'}," \
    "'passive':{'ports':'" ports "'}}"

static void test_cross(void)
{
    expect_err(DOCL(LB("a", "0.0.0.0:21", "50000-50099") "," LB("a", "0.0.0.0:22", "50100-50199")),
               "listeners[1].name: \"a\" is already the name of listeners[0]");
    expect_err(DOCL(LB("a", "0.0.0.0:21", "50000-50099") "," LB("b", "0.0.0.0:21", "50100-50199")),
               "listeners[1].bind: \"0.0.0.0:21\" clashes with \"0.0.0.0:21\" of listeners[0] \"a\"");
    expect_err(DOCL(LB("a", "127.0.0.1:21", "50000-50099") "," LB("b", "0.0.0.0:21", "50100-50199")),
               "listeners[1].bind: \"0.0.0.0:21\" clashes with \"127.0.0.1:21\" of listeners[0] \"a\"");
    expect_err(DOCL(LB("a", "[::1]:21", "50000-50099") "," LB("b", "[0:0::1]:21", "50100-50199")),
               "listeners[1].bind: \"[0:0::1]:21\" clashes with \"[::1]:21\" of listeners[0] \"a\"");
    expect_err(DOCL(LB("a", "0.0.0.0:21", "50000-50099") "," LB("b", "0.0.0.0:22", "50100-50199") ","
                        LB("c", "0.0.0.0:23", "50199-50300")),
               "listeners[2].passive.ports: \"50199-50300\" of \"c\" overlaps \"50100-50199\" of listeners[1] \"b\"");
    expect_err(DOCL(LB("a", "0.0.0.0:21", "50000-50099") "," LB("b", "0.0.0.0:22", "49000-60000")),
               "listeners[1].passive.ports: \"49000-60000\" of \"b\" overlaps \"50000-50099\" of listeners[0] \"a\"");
}

/* A listener without its own backend: name, bind, mode, tls, then R (routes and more). */
#define L_NB "'name':'a','bind':'0.0.0.0:2121','mode':'explicit','tls':'main'," PAS_A
#define DOCR(R) "{" TLS ",'listeners':[{" L_NB "," R "}]}"
#define RT(KEY, VAL, ADDR) "{'" KEY "':'" VAL "','backend':{'address':'" ADDR "'}}"

static void test_routes(void)
{
    config_t *cfg = load_ok(DOC(",'routes':[" RT("sni", "ftp.A.example", "10.0.0.1:21") ","
                                "{'host':'*.b.example','backend':{'address':'b.internal:2121','data_mode':'active'}},"
                                RT("user", "alice@corp", "10.0.0.3:21") "," RT("user_at", "Legacy-A", "[2001:db8::4]:21")
                                "],'greeting':'Welcome to the gate'",
                                ""));
    if (cfg != NULL) {
        const config_listener_t *l = &cfg->listeners[0];
        CHECK_EQ_INT(l->has_backend, 1);
        CHECK_STR(l->backend.address.host, "127.0.0.1");
        CHECK_EQ_INT(l->n_routes, 4);
        CHECK_EQ_INT(l->routes[0].kind, CONFIG_ROUTE_SNI);
        CHECK_STR(l->routes[0].value, "ftp.A.example");
        CHECK_STR(l->routes[0].backend.address.host, "10.0.0.1");
        CHECK_EQ_INT(l->routes[0].backend.address.port, 21);
        CHECK_EQ_INT(l->routes[0].backend.data_mode, DATA_MODE_PASSIVE);
        CHECK_EQ_INT(l->routes[1].kind, CONFIG_ROUTE_HOST);
        CHECK_STR(l->routes[1].value, "*.b.example");
        CHECK_STR(l->routes[1].backend.address.host, "b.internal");
        CHECK_EQ_INT(l->routes[1].backend.address.port, 2121);
        CHECK_EQ_INT(l->routes[1].backend.data_mode, DATA_MODE_ACTIVE);
        CHECK_EQ_INT(l->routes[2].kind, CONFIG_ROUTE_USER);
        CHECK_STR(l->routes[2].value, "alice@corp");
        CHECK_EQ_INT(l->routes[3].kind, CONFIG_ROUTE_USER_AT);
        CHECK_STR(l->routes[3].value, "Legacy-A");
        CHECK_STR(l->routes[3].backend.address.host, "2001:db8::4");
        CHECK_EQ_INT(l->routes[3].backend.intercept, 0);
        CHECK_STR(l->greeting, "Welcome to the gate");
        CHECK_EQ_INT(config_listener_source_client(l), 0);
    }
    config_free(cfg);

    /* routes without a default backend: has_backend 0 */
    cfg = load_ok(DOCR("'routes':[" RT("user", "bob", "10.0.0.5:21") "]"));
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->listeners[0].has_backend, 0);
        CHECK(cfg->listeners[0].backend.address.host == NULL);
        CHECK_EQ_INT(cfg->listeners[0].n_routes, 1);
        CHECK_STR(cfg->listeners[0].greeting, CONFIG_DEFAULT_GREETING);
    }
    config_free(cfg);

    /* interception stays possible for the default route of a routed listener,
     * transparent listeners may route, and a route's source "client" counts */
    cfg = load_ok(DOCB("{'address':'original-destination','allow':['10.0.0.0/8']},'transparent':true,"
                       "'routes':[{'user':'carol','backend':{'address':'10.9.9.9:21','source':'client'}}]"));
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->listeners[0].backend.intercept, 1);
        CHECK_EQ_INT(cfg->listeners[0].routes[0].backend.source_client, 1);
        CHECK_EQ_INT(config_listener_source_client(&cfg->listeners[0]), 1);
    }
    config_free(cfg);

    /* a wildcard after an exact name of the same domain is reachable */
    cfg = load_ok(DOC(",'routes':[" RT("sni", "x.a.example", "h:21") "," RT("sni", "*.a.example", "h:22") ","
                      RT("host", "x.a.example", "h:23") "," RT("user", "Alice", "h:24") "," RT("user", "alice", "h:25")
                      "]",
                      ""));
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->listeners[0].n_routes, 5);
    config_free(cfg);
}

static void test_bad_routes(void)
{
    expect_err(DOCL("{" L_NB "}"), "listeners[0].backend: required");
    expect_err(DOCR("'routes':[]"),
               "listeners[0].routes: must not be empty (leave it out: the backend then serves every session)");
    expect_err(DOCR("'routes':{}"), "listeners[0].routes: expected array, got object");
    expect_err(DOCR("'routes':['x']"), "listeners[0].routes[0]: expected object, got string");
    expect_err(DOCR("'routes':[{'backend':{'address':'h:21'}}]"),
               "listeners[0].routes[0]: needs one of \"sni\", \"host\", \"user\" or \"user_at\"");
    expect_err(DOCR("'routes':[{'user':'u','host':'h','backend':{'address':'h:21'}}]"),
               "listeners[0].routes[0].user: a route matches on one key; this one has \"host\" already");
    expect_err(DOCR("'routes':[{'user':'u','bogus':1,'backend':{'address':'h:21'}}]"),
               "listeners[0].routes[0].bogus: unknown key");
    expect_err(DOCR("'routes':[{'user':'u'}]"), "listeners[0].routes[0].backend: required");
    expect_err(DOCR("'routes':[{'user':'','backend':{'address':'h:21'}}]"),
               "listeners[0].routes[0].user: must not be empty");
    expect_err(DOCR("'routes':[{'user':7,'backend':{'address':'h:21'}}]"),
               "listeners[0].routes[0].user: expected string, got integer");
    expect_err(DOCR("'routes':[{'user':'a\\u0007b','backend':{'address':'h:21'}}]"),
               "listeners[0].routes[0].user: \"a\\x07b\": a user name without control characters, at most 255 bytes");
    expect_err(DOCR("'routes':[" RT("sni", "ftp_a.example", "h:21") "]"),
               "listeners[0].routes[0].sni: \"ftp_a.example\": not a server name (letters, digits, '-', '.', "
               "optional leading \"*.\")");
    expect_err(DOCR("'routes':[" RT("host", "*.", "h:21") "]"),
               "listeners[0].routes[0].host: \"*.\": not a server name (letters, digits, '-', '.', optional leading "
               "\"*.\")");
    expect_err(DOCR("'routes':[" RT("user_at", "a@b", "h:21") "]"),
               "listeners[0].routes[0].user_at: \"a@b\": an alias of letters, digits, '-', '_' and '.', at most 253 "
               "bytes");
    /* duplicates (with the case rule of their kind) and routes an earlier one always takes */
    expect_err(DOCR("'routes':[" RT("sni", "a.example", "h:21") "," RT("user", "u", "h:21") ","
                    RT("sni", "A.EXAMPLE", "h:22") "]"),
               "listeners[0].routes[2].sni: \"A.EXAMPLE\" is listed twice: also routes[0]");
    expect_err(DOCR("'routes':[" RT("user", "bob", "h:21") "," RT("user", "bob", "h:22") "]"),
               "listeners[0].routes[1].user: \"bob\" is listed twice: also routes[0]");
    expect_err(DOCR("'routes':[" RT("user_at", "Legacy", "h:21") "," RT("user_at", "legacy", "h:22") "]"),
               "listeners[0].routes[1].user_at: \"legacy\" is listed twice: also routes[0]");
    expect_err(DOCR("'routes':[" RT("host", "*.a.example", "h:21") "," RT("host", "x.A.example", "h:22") "]"),
               "listeners[0].routes[1].host: \"x.A.example\" can never match: routes[0] \"*.a.example\" takes it first");
    expect_err(DOCR("'routes':[" RT("host", "*.a.example", "h:21") "," RT("host", "*.A.example", "h:22") "]"),
               "listeners[0].routes[1].host: \"*.A.example\" is listed twice: also routes[0]");
    /* a route's backend is parsed like the listener's, minus interception */
    expect_err(DOCR("'routes':[{'user':'u','backend':{'address':'original-destination','allow':['10.0.0.0/8']}}]"),
               "listeners[0].routes[0].backend.address: \"original-destination\" only in the listener's own backend "
               "(the default route)");
    expect_err(DOCR("'routes':[{'user':'u','backend':{'address':'h:21','port':21}}]"),
               "listeners[0].routes[0].backend.port: only with \"address\": \"original-destination\"");
    expect_err(DOCR("'routes':[{'user':'u','backend':{'address':'h'}}]"),
               "listeners[0].routes[0].backend.address: \"h\": expected host:port or [IPv6]:port");
    expect_err(DOCR("'routes':[{'user':'u','backend':{}}]"), "listeners[0].routes[0].backend.address: required");
    expect_err(DOCR("'routes':[{'user':'u','backend':{'address':'h:21','data_mode':'x'}}]"),
               "listeners[0].routes[0].backend.data_mode: must be \"passive\", \"active\" or \"client\", got \"x\"");
    /* HOST cannot be denied while a route needs it */
    expect_err(DOCR("'routes':[" RT("host", "a.example", "h:21") "],'policy':{'deny_commands':['SITE','host']}"),
               "listeners[0].policy.deny_commands[1]: \"HOST\" cannot be denied: routes[0] matches on HOST");
}

static void test_greeting(void)
{
    config_t *cfg = load_ok(DOC("", ""));
    if (cfg != NULL)
        CHECK_STR(cfg->listeners[0].greeting, "Service ready for new user.");
    config_free(cfg);
    expect_err(DOC(",'greeting':''", ""), "listeners[0].greeting: must not be empty");
    expect_err(DOC(",'greeting':'two\\r\\n220 lines'", ""),
               "listeners[0].greeting: \"two\\x0d\\x0a220 lines\": printable ASCII only (no line breaks or control "
               "characters)");
    expect_err(DOC(",'greeting':'caf\\u00e9'", ""),
               "listeners[0].greeting: \"caf\\xc3\\xa9\": printable ASCII only (no line breaks or control characters)");
    char doc[1024], want[128];
    char long_text[CONFIG_GREETING_MAX + 2];
    memset(long_text, 'g', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    snprintf(doc, sizeof doc, DOC(",'greeting':'%s'", ""), long_text);
    snprintf(want, sizeof want, "listeners[0].greeting: %u bytes: at most %u", CONFIG_GREETING_MAX + 1,
             CONFIG_GREETING_MAX);
    expect_err(doc, want);
    long_text[CONFIG_GREETING_MAX] = '\0'; /* exactly the maximum passes */
    snprintf(doc, sizeof doc, DOC(",'greeting':'%s'", ""), long_text);
    cfg = load_ok(doc);
    if (cfg != NULL)
        CHECK_EQ_INT(strlen(cfg->listeners[0].greeting), CONFIG_GREETING_MAX);
    config_free(cfg);
}

static void test_command_policy(void)
{
    config_t *cfg = load_ok(DOC(",'policy':{'read_only':true,'deny_commands':['site','Dele','XMKD','ABC'],"
                                "'max_upload_bytes':1048576,'rate_limit':2097152}",
                                ""));
    if (cfg != NULL) {
        const config_listener_t *l = &cfg->listeners[0];
        CHECK_EQ_INT(l->policy.read_only, 1);
        CHECK_EQ_INT(l->policy.n_deny_commands, 4);
        if (l->policy.n_deny_commands == 4) {
            CHECK_STR(l->policy.deny_commands[0], "SITE");
            CHECK_STR(l->policy.deny_commands[1], "DELE");
            CHECK_STR(l->policy.deny_commands[2], "XMKD");
            CHECK_STR(l->policy.deny_commands[3], "ABC");
        }
        CHECK_EQ_INT(l->policy.max_upload_bytes, 1048576);
        CHECK_EQ_INT(l->policy.rate_limit, 2097152);
    }
    config_free(cfg);
    cfg = load_ok(DOC("", ""));
    if (cfg != NULL) {
        const config_listener_t *l = &cfg->listeners[0];
        CHECK_EQ_INT(l->policy.read_only, 0);
        CHECK_EQ_INT(l->policy.n_deny_commands, 0);
        CHECK(l->policy.deny_commands == NULL);
        CHECK_EQ_INT(l->policy.max_upload_bytes, 0);
        CHECK_EQ_INT(l->policy.rate_limit, 0);
    }
    config_free(cfg);
    /* the extremes that pass */
    cfg = load_ok(DOC(",'policy':{'deny_commands':[],'max_upload_bytes':9223372036854775807,'rate_limit':1024}", ""));
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->listeners[0].policy.n_deny_commands, 0);
        CHECK(cfg->listeners[0].policy.max_upload_bytes == 9223372036854775807ull);
    }
    config_free(cfg);
    cfg = load_ok(DOC(",'policy':{'rate_limit':8589934592}", ""));
    if (cfg != NULL)
        CHECK(cfg->listeners[0].policy.rate_limit == 8589934592ull);
    config_free(cfg);

    expect_err(DOC(",'policy':{'read_only':'yes'}", ""), "listeners[0].policy.read_only: expected boolean, got string");
    expect_err(DOC(",'policy':{'deny_commands':'STOR'}", ""),
               "listeners[0].policy.deny_commands: expected array, got string");
    expect_err(DOC(",'policy':{'deny_commands':[1]}", ""),
               "listeners[0].policy.deny_commands[0]: expected string (a command verb), got integer");
    expect_err(DOC(",'policy':{'deny_commands':['ST']}", ""),
               "listeners[0].policy.deny_commands[0]: \"ST\": not a command verb (3 or 4 letters)");
    expect_err(DOC(",'policy':{'deny_commands':['STORE']}", ""),
               "listeners[0].policy.deny_commands[0]: \"STORE\": not a command verb (3 or 4 letters)");
    expect_err(DOC(",'policy':{'deny_commands':['ST0R']}", ""),
               "listeners[0].policy.deny_commands[0]: \"ST0R\": not a command verb (3 or 4 letters)");
    expect_err(DOC(",'policy':{'deny_commands':['SITE CHMOD']}", ""),
               "listeners[0].policy.deny_commands[0]: \"SITE CHMOD\": not a command verb (3 or 4 letters)");
    expect_err(DOC(",'policy':{'deny_commands':['STOR','stor']}", ""),
               "listeners[0].policy.deny_commands[1]: \"STOR\" is listed twice: also "
               "listeners[0].policy.deny_commands[0]");
    expect_err(DOC(",'policy':{'deny_commands':['auth']}", ""),
               "listeners[0].policy.deny_commands[0]: \"AUTH\" cannot be denied: ftpsgate needs it to start TLS on the "
               "control connection (RFC 4217 §4)");
    expect_err(DOC(",'policy':{'deny_commands':['DELE','PBSZ']}", ""),
               "listeners[0].policy.deny_commands[1]: \"PBSZ\" cannot be denied: ftpsgate needs it before PROT "
               "(RFC 4217 §8)");
    expect_err(DOC(",'policy':{'deny_commands':['Prot']}", ""),
               "listeners[0].policy.deny_commands[0]: \"PROT\" cannot be denied: ftpsgate needs it to protect data "
               "connections (RFC 4217 §9)");
    expect_err(DOC(",'policy':{'deny_commands':['QUIT']}", ""),
               "listeners[0].policy.deny_commands[0]: \"QUIT\" cannot be denied: a client must always be able to end "
               "its session (RFC 959 §4.1.1)");
    expect_err(DOC(",'policy':{'max_upload_bytes':-1}", ""),
               "listeners[0].policy.max_upload_bytes: -1 is out of range (0..9223372036854775807)");
    expect_err(DOC(",'policy':{'max_upload_bytes':1.5}", ""),
               "listeners[0].policy.max_upload_bytes: expected integer, got real number");
    expect_err(DOC(",'policy':{'rate_limit':'2M'}", ""), "listeners[0].policy.rate_limit: expected integer, got string");
    expect_err(DOC(",'policy':{'rate_limit':1023}", ""),
               "listeners[0].policy.rate_limit: 1023 is out of range (0 for none, or 1024..8589934592 bytes/s)");
    expect_err(DOC(",'policy':{'rate_limit':8589934593}", ""),
               "listeners[0].policy.rate_limit: 8589934593 is out of range (0 for none, or 1024..8589934592 bytes/s)");
    expect_err(DOC(",'policy':{'rate_limit':-5}", ""),
               "listeners[0].policy.rate_limit: -5 is out of range (0..9223372036854775807)");
}

static void test_transfer_log(void)
{
    config_t *cfg = load_ok(DOC("", ",'log':{'transfer_log':'/var/log/ftpsgate/transfers.log'}"));
    if (cfg != NULL)
        CHECK_STR(cfg->log.transfer_log, "/var/log/ftpsgate/transfers.log");
    config_free(cfg);
    cfg = load_ok(DOC("", ",'log':{'level':'warn'}"));
    if (cfg != NULL)
        CHECK(cfg->log.transfer_log == NULL);
    config_free(cfg);
    expect_err(DOC("", ",'log':{'transfer_log':'transfers.log'}"),
               "log.transfer_log: \"transfers.log\": must be an absolute path");
    expect_err(DOC("", ",'log':{'transfer_log':''}"), "log.transfer_log: must not be empty");
    expect_err(DOC("", ",'log':{'transfer_log':true}"), "log.transfer_log: expected string, got boolean");
    expect_err(DOC("", ",'log':{'transfer_log':'/var/log/a\\nb'}"),
               "log.transfer_log: \"/var/log/a\\x0ab\": control characters in a path");
}

static void test_limits(void)
{
    expect_err(DOCLIM("[]"), "limits: expected object, got array");
    expect_err(DOCLIM("{'max_session':5}"), "limits.max_session: unknown key");
    expect_err(DOCLIM("{'max_sessions':'100'}"), "limits.max_sessions: expected integer, got string");
    expect_err(DOCLIM("{'max_sessions':100.0}"), "limits.max_sessions: expected integer, got real number");
    expect_err(DOCLIM("{'max_sessions':true}"), "limits.max_sessions: expected integer, got boolean");
    expect_err(DOCLIM("{'max_sessions':null}"), "limits.max_sessions: expected integer, got null");
    expect_err(DOCLIM("{'max_sessions':-1}"), "limits.max_sessions: -1 is out of range (0..1000000)");
    expect_err(DOCLIM("{'max_sessions_per_ip':1000001}"),
               "limits.max_sessions_per_ip: 1000001 is out of range (0..1000000)");
    /* workers: 1..256, absent means one per CPU (0 in the config_t). */
    config_t *wc = load_ok(DOC("", ",'workers':2"));
    CHECK_EQ_INT(wc ? wc->workers : 0, 2);
    config_free(wc);
    wc = load_ok(DOC("", ""));
    CHECK_EQ_INT(wc ? wc->workers : 1, 0);
    config_free(wc);
    expect_err(DOC("", ",'workers':0"), "workers: 0 is out of range (1..256)");
    expect_err(DOC("", ",'workers':257"), "workers: 257 is out of range (1..256)");
    expect_err(DOC("", ",'workers':'2'"), "workers: expected integer, got string");
    expect_err(DOCLIM("{'max_line':100}"), "limits.max_line: 100 is out of range (512..65536)");
    expect_err(DOCLIM("{'max_line_prelogin':70000}"), "limits.max_line_prelogin: 70000 is out of range (512..65536)");
    expect_err(DOCLIM("{'max_line':1024,'max_line_prelogin':2048}"),
               "limits.max_line_prelogin: 2048 is above limits.max_line (1024)");
    expect_err(DOCLIM("{'login_timeout':0}"), "limits.login_timeout: 0 is out of range (1..86400)");
    expect_err(DOCLIM("{'idle_timeout':86401}"), "limits.idle_timeout: 86401 is out of range (1..86400)");
    expect_err(DOCLIM("{'data_connect_timeout':9999999999999}"),
               "limits.data_connect_timeout: 9999999999999 is out of range (1..86400)");
    expect_err(DOCLIM("{'backend_connect_timeout':0}"), "limits.backend_connect_timeout: 0 is out of range (1..3600)");
    expect_err(DOCLIM("{'tcp_keepalive':7201}"), "limits.tcp_keepalive: 7201 is out of range (0..7200)");
    expect_err(DOCLIM("{'transfer_stall_timeout':-5}"), "limits.transfer_stall_timeout: -5 is out of range (1..86400)");
}

static void test_first_error_wins(void)
{
    /* document order inside an object for unknown keys; then schema order */
    expect_err("{'zzz':1,'aaa':2}", "zzz: unknown key");
    expect_err("{'listeners':[{'mode':'x'}],'tls':{'t':{}}}", "tls.t.cert: required");
}

static void test_file(void)
{
    char err[512];
    config_t *cfg = (config_t *)1;

    CHECK_EQ_INT(config_load_file("config/does-not-exist.json", &cfg, err, sizeof err), FG_CONFIG);
    CHECK(cfg == NULL);
    CHECK_STR(err, "config/does-not-exist.json: cannot open: No such file or directory");

    CHECK_EQ_INT(config_load_file("config", &cfg, err, sizeof err), FG_CONFIG);
    CHECK_STR(err, "config: cannot read: Is a directory");

    CHECK_EQ_INT(config_load_file("config/broken.json", &cfg, err, sizeof err), FG_CONFIG);
    CHECK_STR(err, "config/broken.json: line 4, column 3: string or '}' expected near '}'");

    /* a tiny error buffer truncates, never overflows */
    char small[8];
    CHECK_EQ_INT(config_load_string("{}", &cfg, small, sizeof small), FG_CONFIG);
    CHECK_STR(small, "tls: re");
}

static void test_hostport(void)
{
    config_hostport_t hp;

    CHECK_EQ_INT(config_parse_hostport("example.com:21", &hp), FG_OK);
    CHECK_STR(hp.host, "example.com");
    CHECK_EQ_INT(hp.port, 21);
    free(hp.host);
    CHECK_EQ_INT(config_parse_hostport("[2001:db8::1]:65535", &hp), FG_OK);
    CHECK_STR(hp.host, "2001:db8::1");
    CHECK_EQ_INT(hp.port, 65535);
    free(hp.host);
    CHECK_EQ_INT(config_parse_hostport("10.0.0.1:1", &hp), FG_OK);
    CHECK_STR(hp.host, "10.0.0.1");
    free(hp.host);
    CHECK_EQ_INT(config_parse_hostport("ftp.example.com.:21", &hp), FG_OK);
    free(hp.host);
    CHECK_EQ_INT(config_parse_hostport("my_host:21", &hp), FG_OK);
    free(hp.host);

    CHECK_EQ_INT(config_parse_hostport("h:0", &hp), FG_RANGE);
    CHECK(hp.host == NULL);
    CHECK_EQ_INT(config_parse_hostport("h:65536", &hp), FG_RANGE);
    CHECK_EQ_INT(config_parse_hostport("h:99999999999999999999999", &hp), FG_RANGE);
    CHECK_EQ_INT(config_parse_hostport("h:", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("h:+21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("h: 21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport(":21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("h", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("[::1]", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("[::1:21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("[]:21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("[fe80::1%eth0]:21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("2001:db8::1:21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("a..b:21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("a-.b:21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("1.2.3:21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("01.2.3.4:21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport("h/x:21", &hp), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_hostport(NULL, &hp), FG_SYNTAX);
}

static void sa4(struct sockaddr_in *s, const char *ip)
{
    memset(s, 0, sizeof *s);
    s->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &s->sin_addr);
}

static void sa6(struct sockaddr_in6 *s, const char *ip)
{
    memset(s, 0, sizeof *s);
    s->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &s->sin6_addr);
}

static void test_cidr(void)
{
    config_cidr_t c;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *s4 = (struct sockaddr *)&a4, *s6 = (struct sockaddr *)&a6;

    CHECK_EQ_INT(config_parse_cidr("10.0.0.0/8", &c), FG_OK);
    CHECK_EQ_INT(c.family, AF_INET);
    CHECK_EQ_INT(c.prefix, 8);
    sa4(&a4, "10.200.1.1");
    CHECK(config_cidr_match(&c, s4));
    sa4(&a4, "11.0.0.1");
    CHECK(!config_cidr_match(&c, s4));
    sa6(&a6, "::ffff:10.9.9.9"); /* IPv4-mapped matches the IPv4 prefix */
    CHECK(config_cidr_match(&c, s6));
    sa6(&a6, "::ffff:11.9.9.9");
    CHECK(!config_cidr_match(&c, s6));
    sa6(&a6, "::10.9.9.9"); /* IPv4-compatible is not mapped */
    CHECK(!config_cidr_match(&c, s6));

    CHECK_EQ_INT(config_parse_cidr("192.168.1.128/25", &c), FG_OK);
    sa4(&a4, "192.168.1.200");
    CHECK(config_cidr_match(&c, s4));
    sa4(&a4, "192.168.1.127");
    CHECK(!config_cidr_match(&c, s4));

    CHECK_EQ_INT(config_parse_cidr("0.0.0.0/0", &c), FG_OK);
    sa4(&a4, "255.255.255.255");
    CHECK(config_cidr_match(&c, s4));
    sa6(&a6, "2001:db8::1");
    CHECK(!config_cidr_match(&c, s6));

    CHECK_EQ_INT(config_parse_cidr("2001:db8::/33", &c), FG_OK);
    CHECK_EQ_INT(c.family, AF_INET6);
    CHECK_EQ_INT(c.prefix, 33);
    sa6(&a6, "2001:db8:7fff::1");
    CHECK(config_cidr_match(&c, s6));
    sa6(&a6, "2001:db8:8000::1");
    CHECK(!config_cidr_match(&c, s6));
    sa4(&a4, "32.1.13.184");
    CHECK(!config_cidr_match(&c, s4));

    CHECK_EQ_INT(config_parse_cidr("::ffff:10.0.0.0/104", &c), FG_OK);
    sa4(&a4, "10.1.2.3");
    CHECK(config_cidr_match(&c, s4));

    config_cidr_t list[2];
    CHECK_EQ_INT(config_parse_cidr("10.0.0.0/8", &list[0]), FG_OK);
    CHECK_EQ_INT(config_parse_cidr("2001:db8::/32", &list[1]), FG_OK);
    sa6(&a6, "2001:db8::5");
    CHECK(config_cidr_any(list, 2, s6));
    sa4(&a4, "10.1.1.1");
    CHECK(config_cidr_any(list, 2, s4));
    CHECK(!config_cidr_any(list, 1, s6)); /* only the first network */
    CHECK(!config_cidr_any(list, 0, s4));

    CHECK_EQ_INT(config_parse_cidr("203.0.113.7", &c), FG_OK);
    CHECK_EQ_INT(c.prefix, 32);
    sa4(&a4, "203.0.113.7");
    CHECK(config_cidr_match(&c, s4));
    sa4(&a4, "203.0.113.8");
    CHECK(!config_cidr_match(&c, s4));
    CHECK_EQ_INT(config_parse_cidr("::1", &c), FG_OK);
    CHECK_EQ_INT(c.prefix, 128);

    CHECK_EQ_INT(config_parse_cidr("10.0.0.0/33", &c), FG_RANGE);
    CHECK_EQ_INT(config_parse_cidr("::/129", &c), FG_RANGE);
    CHECK_EQ_INT(config_parse_cidr("10.0.0.0/", &c), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_cidr("10.0.0.0/-1", &c), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_cidr("10.0.0/8", &c), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_cidr("/8", &c), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_cidr("", &c), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_cidr("host/8", &c), FG_SYNTAX);
    CHECK_EQ_INT(config_parse_cidr("[::1]/8", &c), FG_SYNTAX);
    CHECK(!config_cidr_match(NULL, s4));
}

/* admin.token / admin.token_file: the value loads; a bad one is refused with
 * a reason that never contains the value (it is a secret). */
static void test_admin_token(void)
{
    config_t *cfg = load_ok(DOC("", ",'admin':{'bind':'127.0.0.1:9121','token':'s3cret-token-0123456789'}"));
    if (cfg != NULL) {
        CHECK_STR(cfg->admin.token, "s3cret-token-0123456789");
        config_free(cfg);
    }
    cfg = load_ok(DOC("", ",'admin':{'bind':'127.0.0.1:9121'}"));
    if (cfg != NULL) {
        CHECK(cfg->admin.token == NULL);
        config_free(cfg);
    }
    expect_err(DOC("", ",'admin':{'bind':'127.0.0.1:9121','token':'short-SECRET'}"),
               "admin.token: must be 16 to 1024 characters long");
    expect_err(DOC("", ",'admin':{'bind':'127.0.0.1:9121','token':'has a space SECRET-0123'}"),
               "admin.token: only printable ASCII characters without spaces are allowed");
    expect_err(DOC("", ",'admin':{'bind':'127.0.0.1:9121','token':'tab\\tSECRET-0123456789'}"),
               "admin.token: only printable ASCII characters without spaces are allowed");
    expect_err(DOC("", ",'admin':{'bind':'127.0.0.1:9121','token':''}"),
               "admin.token: must be 16 to 1024 characters long");
    expect_err(DOC("", ",'admin':{'bind':'127.0.0.1:9121','token':5}"), "admin.token: expected string, got integer");
    expect_err(DOC("", ",'admin':{'bind':'127.0.0.1:9121','token':'x0123456789abcdef','token_file':'/t'}"),
               "admin.token_file: give admin.token or admin.token_file, not both");
    expect_err(DOC("", ",'admin':{'bind':'127.0.0.1:9121','token_file':'rel/tok'}"),
               "admin.token_file: \"rel/tok\": must be an absolute path");
    expect_err(DOC("", ",'admin':{'bind':'127.0.0.1:9121','token_file':'/nonexistent/tok'}"),
               "admin.token_file: \"/nonexistent/tok\": cannot open: No such file or directory");

    char path[] = "/tmp/ftpsgate-token-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    static const char content[] = "from-a-file-0123456789\n";
    CHECK(write(fd, content, sizeof content - 1) == (ssize_t)(sizeof content - 1));
    close(fd);
    char doc[512];
    snprintf(doc, sizeof doc, DOC("", ",'admin':{'bind':'127.0.0.1:9121','token_file':'%s'}"), path);
    cfg = load_ok(doc);
    if (cfg != NULL) {
        CHECK_STR(cfg->admin.token, "from-a-file-0123456789"); /* the newline dropped */
        config_free(cfg);
    }
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(write(fd, "tiny\n", 5) == 5);
    close(fd);
    expect_err(doc, "admin.token_file: must be 16 to 1024 characters long");
    unlink(path);
}

int main(void)
{
    test_full();
    test_example();
    test_defaults();
    test_bad_json();
    test_bad_top();
    test_bad_tls();
    test_bad_listener();
    test_bad_backend();
    test_bad_passive();
    test_cross();
    test_routes();
    test_bad_routes();
    test_greeting();
    test_command_policy();
    test_transfer_log();
    test_limits();
    test_first_error_wins();
    test_file();
    test_admin_token();
    test_hostport();
    test_cidr();
    printf("%d broken documents checked\n", n_bad);
    return check_report();
}
