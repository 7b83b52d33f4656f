/* Unit tests for common/policy.c: every row of the command table (DESIGN.md §2),
 * the data-channel rules (anti-bounce, EPSV, the channel's protection), the
 * data TLS reuse rule, the data peer and interception checks.
 * File transfers follow policy.data_protection, listings follow
 * policy.listing_protection; most rows set both the same. */
#include <arpa/inet.h>

#include "check.h"
#include "fgerr.h"
#include "ftp_cmd.h"
#include "netaddr.h"
#include "policy.h"

/* The control connection's peer in every test: 127.0.0.1:5000. */
static struct sockaddr_storage client_v4;

static config_listener_t listener_defaults(void)
{
    config_listener_t l;
    memset(&l, 0, sizeof l);
    l.mode = LISTEN_EXPLICIT;
    l.policy.login_requires_tls = 1;
    l.policy.data_protection = PROTECT_PRIVATE;
    l.policy.listing_protection = PROTECT_PRIVATE;
    l.active.enabled = 1;
    return l;
}

/* A fresh explicit-mode session before AUTH TLS, defaults of the config. */
static policy_state_t st_initial(void)
{
    config_listener_t l = listener_defaults();
    policy_state_t st;
    netaddr_parse_ip("127.0.0.1", 5000, &client_v4);
    policy_init(&st, &l, (const struct sockaddr *)&client_v4, 1);
    return st;
}

/* After AUTH TLS and PBSZ 0, with the given PROT and a data channel
 * prepared under it. */
static policy_state_t st_secured(char prot, data_protection_t protection)
{
    policy_state_t st = st_initial();
    st.tls_active = 1;
    st.pbsz_done = 1;
    st.prot = prot;
    st.data_prot = prot;
    st.protection = protection;
    st.listing_protection = protection;
    return st;
}

static policy_decision_t decide(const policy_state_t *st, const char *line)
{
    ftp_cmd_t cmd;
    policy_decision_t d;
    int rc = ftp_cmd_parse(line, strlen(line), &cmd);
    CHECK_EQ_INT(rc, FG_OK);
    if (rc != FG_OK) {
        fprintf(stderr, "  (cannot parse \"%s\")\n", line);
        memset(&d, 0xff, sizeof d);
        return d;
    }
    policy_decide(st, &cmd, &d);
    return d;
}

/* One check per call, so a failing row names the line in the message. */
static void expect_action(const policy_state_t *st, const char *line, policy_action_t want)
{
    policy_decision_t d = decide(st, line);
    if (d.action != want)
        fprintf(stderr, "  line \"%s\": action %d, expected %d (code %d)\n", line, (int)d.action,
                (int)want, d.code);
    CHECK_EQ_INT(d.action, want);
}

static void expect_reply(const policy_state_t *st, const char *line, int code)
{
    policy_decision_t d = decide(st, line);
    if (d.action != POLICY_REPLY || d.code != code)
        fprintf(stderr, "  line \"%s\": action %d code %d, expected REPLY %d\n", line,
                (int)d.action, d.code, code);
    CHECK_EQ_INT(d.action, POLICY_REPLY);
    CHECK_EQ_INT(d.code, code);
    /* A local reply always carries a text, one line, no CRLF. */
    CHECK(d.text != NULL && d.text[0] != '\0' && strpbrk(d.text, "\r\n") == NULL);
}

static void test_auth(void)
{
    policy_state_t st = st_initial();
    static const char *const ok[] = {"AUTH TLS",   "AUTH tls",   "auth Tls",   "AUTH SSL",
                                     "AUTH ssl",   "AUTH TLS-C", "AUTH tls-c", "AUTH TLS-P",
                                     "Auth Tls-P"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        expect_action(&st, ok[i], POLICY_AUTH);

    expect_reply(&st, "AUTH", 501);
    expect_reply(&st, "AUTH ", 501); /* a space and nothing: no argument */
    expect_reply(&st, "AUTH KERBEROS", 504);
    expect_reply(&st, "AUTH GSSAPI", 504);
    expect_reply(&st, "AUTH TLSX", 504);
    expect_reply(&st, "AUTH TL", 504);
    expect_reply(&st, "AUTH TLS ", 504); /* trailing space is part of the argument */

    /* RFC 4217 §4: no second AUTH once TLS is up (also covers implicit mode). */
    st.tls_active = 1;
    expect_reply(&st, "AUTH TLS", 503);
    expect_reply(&st, "AUTH SSL", 503);
    expect_reply(&st, "AUTH KERBEROS", 503);
    st.implicit_mode = 1;
    expect_reply(&st, "AUTH TLS", 503);
    /* No argument is a syntax error whatever the state. */
    expect_reply(&st, "AUTH", 501);
}

static void test_pbsz(void)
{
    policy_state_t st = st_initial();
    expect_reply(&st, "PBSZ 0", 503);
    expect_reply(&st, "PBSZ", 503);

    st.tls_active = 1;
    expect_action(&st, "PBSZ 0", POLICY_PBSZ);
    /* RFC 4217 §9: any size is accepted, the reply is always PBSZ=0. */
    expect_action(&st, "pbsz 1024", POLICY_PBSZ);
    expect_action(&st, "PBSZ 4294967295", POLICY_PBSZ);
    expect_reply(&st, "PBSZ 4294967296", 501);
    expect_reply(&st, "PBSZ abc", 501);
    expect_reply(&st, "PBSZ -1", 501);
    expect_reply(&st, "PBSZ 0x10", 501);
    expect_reply(&st, "PBSZ", 501);
    /* A second PBSZ is harmless. */
    st.pbsz_done = 1;
    expect_action(&st, "PBSZ 0", POLICY_PBSZ);
}

static void test_prot(void)
{
    policy_state_t st = st_initial();
    expect_reply(&st, "PROT P", 503); /* before TLS */
    st.tls_active = 1;
    expect_reply(&st, "PROT P", 503); /* before PBSZ */
    st.pbsz_done = 1;

    /* protection: private */
    policy_decision_t d = decide(&st, "PROT P");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    CHECK_EQ_INT(d.prot, 'P');
    d = decide(&st, "prot p");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    CHECK_EQ_INT(d.prot, 'P');
    expect_reply(&st, "PROT C", 534);
    expect_reply(&st, "PROT c", 534);

    /* protection: any */
    st.protection = st.listing_protection = PROTECT_ANY;
    d = decide(&st, "PROT C");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    CHECK_EQ_INT(d.prot, 'C');
    d = decide(&st, "prot c");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    CHECK_EQ_INT(d.prot, 'C');
    d = decide(&st, "PROT P");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    CHECK_EQ_INT(d.prot, 'P');

    /* protection: clear */
    st.protection = st.listing_protection = PROTECT_CLEAR;
    expect_reply(&st, "PROT P", 534);
    d = decide(&st, "PROT C");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    CHECK_EQ_INT(d.prot, 'C');

    /* Mixed: a level is refused only when neither files nor listings may use it. */
    st.protection = PROTECT_PRIVATE;
    st.listing_protection = PROTECT_ANY;
    d = decide(&st, "PROT C");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    CHECK_EQ_INT(d.prot, 'C');
    st.listing_protection = PROTECT_CLEAR;
    d = decide(&st, "PROT C");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    CHECK_EQ_INT(d.prot, 'C');
    d = decide(&st, "PROT P");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    CHECK_EQ_INT(d.prot, 'P');
    st.protection = PROTECT_CLEAR;
    st.listing_protection = PROTECT_PRIVATE;
    d = decide(&st, "PROT C");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    d = decide(&st, "PROT P");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    st.listing_protection = PROTECT_ANY;
    d = decide(&st, "PROT P");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    st.protection = PROTECT_ANY;
    st.listing_protection = PROTECT_PRIVATE;
    d = decide(&st, "PROT C");
    CHECK_EQ_INT(d.action, POLICY_PROT);
    st.listing_protection = PROTECT_CLEAR;
    d = decide(&st, "PROT P");
    CHECK_EQ_INT(d.action, POLICY_PROT);

    /* levels whatever the policy */
    static const data_protection_t all[] = {PROTECT_PRIVATE, PROTECT_ANY, PROTECT_CLEAR};
    for (size_t i = 0; i < 3; i++) {
        st.protection = st.listing_protection = all[i];
        expect_reply(&st, "PROT S", 536);
        expect_reply(&st, "PROT E", 536);
        expect_reply(&st, "prot s", 536);
        expect_reply(&st, "prot e", 536);
        expect_reply(&st, "PROT X", 504);
        expect_reply(&st, "PROT PP", 504);
        expect_reply(&st, "PROT P ", 504);
        expect_reply(&st, "PROT", 501);
    }
}

static void test_ccc(void)
{
    /* Default (ccc off): 533 in every state. */
    policy_state_t st = st_secured('P', PROTECT_PRIVATE);
    expect_reply(&st, "CCC", 533);
    st = st_initial();
    expect_reply(&st, "CCC", 533);

    /* Allowed by policy: only under TLS. */
    st = st_initial();
    st.ccc_allowed = 1;
    expect_reply(&st, "CCC", 503);
    st.tls_active = 1;
    expect_action(&st, "CCC", POLICY_CCC);
    expect_action(&st, "ccc", POLICY_CCC);
    st = st_secured('P', PROTECT_PRIVATE);
    st.ccc_allowed = 1;
    expect_action(&st, "CCC", POLICY_CCC);

    /* MS-FTPS: never on an implicit session, even if the flag were set. */
    st.implicit_mode = 1;
    expect_reply(&st, "CCC", 533);
    st.ccc_allowed = 0;
    expect_reply(&st, "CCC", 533);
}

static void test_login(void)
{
    static const char *const lines[] = {"USER alice", "PASS secret", "ACCT acct", "user bob",
                                        "PASS"};
    policy_state_t st = st_initial();
    for (size_t i = 0; i < 5; i++)
        expect_reply(&st, lines[i], 534);
    st.tls_active = 1;
    for (size_t i = 0; i < 5; i++)
        expect_action(&st, lines[i], POLICY_FORWARD);
    st = st_initial();
    st.login_requires_tls = 0;
    for (size_t i = 0; i < 5; i++)
        expect_action(&st, lines[i], POLICY_FORWARD);
    st.tls_active = 1;
    for (size_t i = 0; i < 5; i++)
        expect_action(&st, lines[i], POLICY_FORWARD);
}

static void test_feat_passive(void)
{
    policy_state_t st = st_secured('P', PROTECT_PRIVATE);
    expect_action(&st, "FEAT", POLICY_FEAT);
    expect_action(&st, "feat", POLICY_FEAT);
    st = st_initial();
    expect_action(&st, "FEAT", POLICY_FEAT); /* before TLS too: clients ask first */

    st = st_secured('P', PROTECT_PRIVATE);
    expect_action(&st, "PASV", POLICY_PASSIVE);
    expect_action(&st, "EPSV", POLICY_PASSIVE);
    expect_action(&st, "EPSV 1", POLICY_PASSIVE);
    expect_reply(&st, "EPSV 2", 522); /* an IPv4 control connection */
    expect_action(&st, "EPSV ALL", POLICY_EPSV_ALL);
    expect_action(&st, "epsv all", POLICY_EPSV_ALL);
    expect_action(&st, "PORT 127,0,0,1,4,1", POLICY_ACTIVE);
    expect_action(&st, "EPRT |1|127.0.0.1|1025|", POLICY_ACTIVE);
    expect_action(&st, "eprt |2|::|1025|", POLICY_ACTIVE); /* lftp: "::" means the client itself */
    expect_reply(&st, "LPSV", 502);
    expect_reply(&st, "LPRT 4,4,127,0,0,1,2,4,1", 502);
    expect_action(&st, "REIN", POLICY_REIN);
    st = st_initial();
    expect_action(&st, "REIN", POLICY_REIN);
    st = st_secured('P', PROTECT_PRIVATE);

    /* RFC 2428 §4: after EPSV ALL only EPSV may set up a data connection. */
    st.epsv_all = 1;
    expect_reply(&st, "PASV", 501);
    expect_reply(&st, "PORT 127,0,0,1,4,1", 501);
    expect_reply(&st, "EPRT |1|127.0.0.1|1025|", 501);
    expect_action(&st, "EPSV", POLICY_PASSIVE);
    expect_action(&st, "EPSV ALL", POLICY_EPSV_ALL);
    expect_reply(&st, "LPSV", 502);
    expect_reply(&st, "LPRT 4,4,127,0,0,1,2,4,1", 502);
}

static const char *const files[] = {"RETR f", "STOR f", "STOU", "APPE f", "retr a b"};
static const char *const lists[] = {"LIST", "NLST", "MLSD", "list -la", "NLST dir"};
#define N_FILES (sizeof files / sizeof files[0])
#define N_LISTS (sizeof lists / sizeof lists[0])

/* want_files / want_lists: 0 for POLICY_TRANSFER, else the reply code. */
static void expect_transfers(data_protection_t prot_files, data_protection_t prot_lists, char prot,
                             int want_files, int want_lists)
{
    policy_state_t st = st_secured(prot, prot_files);
    st.listing_protection = prot_lists;
    for (size_t i = 0; i < N_FILES; i++) {
        if (want_files)
            expect_reply(&st, files[i], want_files);
        else
            expect_action(&st, files[i], POLICY_TRANSFER);
    }
    for (size_t i = 0; i < N_LISTS; i++) {
        if (want_lists)
            expect_reply(&st, lists[i], want_lists);
        else
            expect_action(&st, lists[i], POLICY_TRANSFER);
    }
}

static void test_transfer(void)
{
    /* Same protection for files and listings. */
    expect_transfers(PROTECT_PRIVATE, PROTECT_PRIVATE, 'C', 521, 521);
    expect_transfers(PROTECT_PRIVATE, PROTECT_PRIVATE, 'P', 0, 0);
    expect_transfers(PROTECT_ANY, PROTECT_ANY, 'C', 0, 0);
    expect_transfers(PROTECT_ANY, PROTECT_ANY, 'P', 0, 0);
    expect_transfers(PROTECT_CLEAR, PROTECT_CLEAR, 'C', 0, 0);
    expect_transfers(PROTECT_CLEAR, PROTECT_CLEAR, 'P', 521, 521);

    /* Listings governed separately. */
    expect_transfers(PROTECT_PRIVATE, PROTECT_ANY, 'C', 521, 0);
    expect_transfers(PROTECT_PRIVATE, PROTECT_ANY, 'P', 0, 0);
    expect_transfers(PROTECT_PRIVATE, PROTECT_CLEAR, 'C', 521, 0);
    expect_transfers(PROTECT_PRIVATE, PROTECT_CLEAR, 'P', 0, 521);
    expect_transfers(PROTECT_ANY, PROTECT_PRIVATE, 'C', 0, 521);
    expect_transfers(PROTECT_ANY, PROTECT_CLEAR, 'P', 0, 521);
    expect_transfers(PROTECT_CLEAR, PROTECT_PRIVATE, 'C', 0, 521);
    expect_transfers(PROTECT_CLEAR, PROTECT_PRIVATE, 'P', 521, 0);
    expect_transfers(PROTECT_CLEAR, PROTECT_ANY, 'P', 521, 0);

    /* Before TLS at all (login not required): still refused under private. */
    policy_state_t st = st_initial();
    st.login_requires_tls = 0;
    for (size_t i = 0; i < N_FILES; i++)
        expect_reply(&st, files[i], 521);
    for (size_t i = 0; i < N_LISTS; i++)
        expect_reply(&st, lists[i], 521);
}

static void test_forward_and_quit(void)
{
    policy_state_t st = st_secured('P', PROTECT_PRIVATE);
    expect_action(&st, "QUIT", POLICY_QUIT);
    expect_action(&st, "quit", POLICY_QUIT);
    st = st_initial();
    expect_action(&st, "QUIT", POLICY_QUIT);

    static const char *const fwd[] = {"NOOP", "SYST", "CWD /pub", "PWD",  "TYPE I", "MKD x",
                                      "REST 100", "ABOR", "STAT", "OPTS UTF8 ON", "HELP",
                                      "SIZE f", "MDTM f", "HOST example.com"};
    st = st_secured('P', PROTECT_PRIVATE);
    for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++)
        expect_action(&st, fwd[i], POLICY_FORWARD);
    st = st_initial();
    expect_action(&st, "NOOP", POLICY_FORWARD);
    expect_action(&st, "SYST", POLICY_FORWARD);
    expect_action(&st, "CWD /", POLICY_FORWARD);
}

static void test_decision_reset(void)
{
    /* policy_decide fills every field: stale values from a previous decision never leak. */
    policy_state_t st = st_initial();
    ftp_cmd_t cmd;
    policy_decision_t d;
    memset(&d, 0x5a, sizeof d);
    CHECK_EQ_INT(ftp_cmd_parse("NOOP", 4, &cmd), FG_OK);
    policy_decide(&st, &cmd, &d);
    CHECK_EQ_INT(d.action, POLICY_FORWARD);
    CHECK_EQ_INT(d.code, 0);
    CHECK(d.text == NULL);
    CHECK_EQ_INT(d.prot, 0);
}

static void test_init(void)
{
    config_listener_t l = listener_defaults();
    policy_state_t st;
    policy_init(&st, &l, (const struct sockaddr *)&client_v4, 1);
    CHECK_EQ_INT(st.tls_active, 0);
    CHECK_EQ_INT(st.pbsz_done, 0);
    CHECK_EQ_INT(st.prot, 'C');
    CHECK_EQ_INT(st.data_prot, 0);
    /* MS-FTPS: implicit sessions start under TLS, PBSZ implied, PROT P ... */
    l.mode = LISTEN_IMPLICIT;
    policy_init(&st, &l, (const struct sockaddr *)&client_v4, 1);
    CHECK_EQ_INT(st.tls_active, 1);
    CHECK_EQ_INT(st.pbsz_done, 1);
    CHECK_EQ_INT(st.prot, 'P');
    CHECK_EQ_INT(st.implicit_mode, 1);
    /* ... or PROT C where the policy allows only clear data. */
    l.policy.data_protection = PROTECT_CLEAR;
    policy_init(&st, &l, (const struct sockaddr *)&client_v4, 1);
    CHECK_EQ_INT(st.prot, 'C');
    /* REIN reuses policy_init: nothing of the old state survives. */
    st.epsv_all = 1;
    st.data_prot = 'P';
    policy_init(&st, &l, (const struct sockaddr *)&client_v4, 1);
    CHECK_EQ_INT(st.epsv_all, 0);
    CHECK_EQ_INT(st.data_prot, 0);
}

/* A refusal by the command policy: code, refusal set, nothing else to do. */
static void expect_refused(const policy_state_t *st, const char *line, int code)
{
    policy_decision_t d = decide(st, line);
    expect_reply(st, line, code);
    if (!d.refusal)
        fprintf(stderr, "  line \"%s\": not marked as a refusal\n", line);
    CHECK_EQ_INT(d.refusal, 1);
    /* a refused transfer takes its prepared data channel with it */
    ftp_cmd_t cmd;
    CHECK_EQ_INT(ftp_cmd_parse(line, strlen(line), &cmd), FG_OK);
    CHECK_EQ_INT(d.drop_data, ftp_cmd_is_transfer(cmd.id));
}

/* The state of listener l after AUTH TLS, PBSZ and PROT P, with a channel prepared. */
static policy_state_t st_logged_in(const config_listener_t *l)
{
    policy_state_t st;
    policy_init(&st, l, (const struct sockaddr *)&client_v4, 1);
    st.tls_active = st.pbsz_done = 1;
    st.prot = st.data_prot = 'P';
    return st;
}

static void test_read_only(void)
{
    config_listener_t l = listener_defaults();
    l.policy.read_only = 1;
    policy_state_t st = st_logged_in(&l);
    CHECK_EQ_INT(st.read_only, 1);

    /* RFC 959 §5.4: 550 where the command's list has it, 532 for STOR/STOU/RNTO
     * (no 550 there), 502 for SITE as a whole. Any case of the verb. */
    static const struct {
        const char *line;
        int code;
    } refused[] = {
        {"STOR f", 532}, {"stor f", 532}, {"STOU", 532},      {"STOU f", 532}, {"APPE f", 550},
        {"DELE f", 550}, {"RMD d", 550},  {"XRMD d", 550},    {"MKD d", 550},  {"xmkd d", 550},
        {"RNFR a", 550}, {"RNTO b", 532}, {"SITE CHMOD 777 f", 502},           {"SITE HELP", 502},
        {"SITE", 502},   {"MFMT 20260101000000 f", 550},      {"MFCT 20260101000000 f", 550},
        {"MFF modify=20260101000000; f", 550},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        expect_refused(&st, refused[i].line, refused[i].code);

    /* reading and moving around stay allowed */
    expect_action(&st, "RETR f", POLICY_TRANSFER);
    expect_action(&st, "LIST", POLICY_TRANSFER);
    expect_action(&st, "MLSD", POLICY_TRANSFER);
    expect_action(&st, "NLST", POLICY_TRANSFER);
    static const char *const allowed[] = {"CWD d", "XCWD d", "CDUP", "XCUP", "PWD", "XPWD", "SIZE f", "MDTM f",
                                          "MLST f", "TYPE I", "REST 10", "NOOP", "SYST", "STAT", "ALLO 10"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        expect_action(&st, allowed[i], POLICY_FORWARD);
    expect_action(&st, "QUIT", POLICY_QUIT);

    /* read_only is checked before the data protection rule: a refused upload
     * under PROT C gets the read-only answer, not 521 */
    st.prot = 'C';
    expect_refused(&st, "STOR f", 532);

    /* without read_only the same commands go on as before */
    l.policy.read_only = 0;
    st = st_logged_in(&l);
    expect_action(&st, "STOR f", POLICY_TRANSFER);
    expect_action(&st, "DELE f", POLICY_FORWARD);
    expect_action(&st, "SITE CHMOD 777 f", POLICY_FORWARD);
    expect_action(&st, "MKD d", POLICY_FORWARD);
}

static void test_deny_commands(void)
{
    char deny[4][5] = {"SITE", "DELE", "EPSV", "LIST"};
    config_listener_t l = listener_defaults();
    l.policy.deny_commands = deny;
    l.policy.n_deny_commands = 4;
    policy_state_t st = st_logged_in(&l);
    CHECK_EQ_INT(st.n_deny, 4);
    expect_refused(&st, "LIST /", 502);
    CHECK_EQ_INT(decide(&st, "LIST").drop_data, 1);

    expect_refused(&st, "SITE CHMOD 777 f", 502);
    expect_refused(&st, "dele f", 502);
    expect_refused(&st, "EPSV", 502); /* a verb ftpsgate knows is denied too */
    expect_refused(&st, "EPSV ALL", 502);
    CHECK_EQ_INT(decide(&st, "DELE f").drop_data, 0);
    expect_action(&st, "PASV", POLICY_PASSIVE);
    expect_action(&st, "STOR f", POLICY_TRANSFER);
    expect_action(&st, "SIT x", POLICY_FORWARD); /* whole verbs only */
    expect_action(&st, "SIZE f", POLICY_FORWARD);

    /* deny_commands comes before read_only: DELE gets 502, RMD read_only's 550 */
    l.policy.read_only = 1;
    policy_init(&st, &l, (const struct sockaddr *)&client_v4, 1);
    expect_refused(&st, "DELE f", 502);
    expect_refused(&st, "RMD d", 550);
    /* ... and before login and TLS: the verb is refused in any state */
    expect_refused(&st, "SITE HELP", 502);
}

/* RFC 2577 §3 (anti-bounce) and RFC 2428 §2 through policy_decide. */
static void test_active(void)
{
    policy_state_t st = st_secured('P', PROTECT_PRIVATE);
    policy_decision_t d = decide(&st, "PORT 127,0,0,1,4,1");
    CHECK_EQ_INT(d.action, POLICY_ACTIVE);
    CHECK_EQ_INT(netaddr_port((const struct sockaddr *)&d.target), 1025);
    CHECK(netaddr_same_ip((const struct sockaddr *)&d.target, (const struct sockaddr *)&client_v4));
    /* A third host: refused, counted as a refusal, the address kept for the log. */
    d = decide(&st, "PORT 10,0,0,9,4,1");
    CHECK_EQ_INT(d.action, POLICY_REPLY);
    CHECK_EQ_INT(d.code, 500);
    CHECK_EQ_INT(d.refusal, 1);
    char ip[64];
    CHECK_STR(netaddr_format_ip((const struct sockaddr *)&d.target, ip, sizeof ip), "10.0.0.9");
    d = decide(&st, "EPRT |1|127.0.0.2|2000|");
    CHECK_EQ_INT(d.code, 500);
    CHECK_EQ_INT(d.refusal, 1);
    /* Privileged ports are services, not FTP clients. */
    d = decide(&st, "PORT 127,0,0,1,0,21");
    CHECK_EQ_INT(d.code, 500);
    CHECK_EQ_INT(d.refusal, 1);
    st.allow_low_ports = 1;
    expect_action(&st, "PORT 127,0,0,1,0,21", POLICY_ACTIVE);
    st.allow_low_ports = 0;
    expect_reply(&st, "EPRT |3|x|1025|", 522);
    expect_reply(&st, "PORT 127,0,0,1", 501);
    expect_reply(&st, "PORT", 501);
    expect_reply(&st, "EPRT |1|127.0.0.1|0|", 501);
    /* Active mode off: 502 before any address is looked at. */
    st.active_enabled = 0;
    expect_reply(&st, "PORT 127,0,0,1,4,1", 502);
    expect_reply(&st, "EPRT |1|127.0.0.1|1025|", 502);
    expect_action(&st, "PASV", POLICY_PASSIVE);
}

static void test_transfer_channel(void)
{
    /* No channel prepared: 425, nothing forwarded. */
    policy_state_t st = st_secured('P', PROTECT_PRIVATE);
    st.data_prot = 0;
    expect_reply(&st, "RETR f", 425);
    expect_reply(&st, "LIST", 425);
    /* PROT changed since PASV: 425, and the channel is dropped. */
    st = st_secured('P', PROTECT_ANY);
    st.data_prot = 'C';
    policy_decision_t d = decide(&st, "RETR f");
    CHECK_EQ_INT(d.code, 425);
    CHECK_EQ_INT(d.drop_data, 1);
    /* The protection rule comes first: 521 without a channel too. */
    st = st_secured('C', PROTECT_PRIVATE);
    st.data_prot = 0;
    expect_reply(&st, "RETR f", 521);
}

static void test_data_tls(void)
{
    policy_data_tls_t own = {.resumed_own = 1}, client = {.resumed_same_client = 1, .offered_session = 1},
                      foreign = {.offered_session = 1}, full = {0};
    CHECK(policy_data_tls_refusal(SESSION_REUSE_CONNECTION, &own) == NULL);
    CHECK_STR(policy_data_tls_refusal(SESSION_REUSE_CONNECTION, &client), "another connection's session");
    CHECK_STR(policy_data_tls_refusal(SESSION_REUSE_CONNECTION, &foreign), "another connection's session");
    CHECK_STR(policy_data_tls_refusal(SESSION_REUSE_CONNECTION, &full), "full handshake");
    CHECK(policy_data_tls_refusal(SESSION_REUSE_CLIENT, &own) == NULL);
    CHECK(policy_data_tls_refusal(SESSION_REUSE_CLIENT, &client) == NULL);
    CHECK_STR(policy_data_tls_refusal(SESSION_REUSE_CLIENT, &foreign), "another connection's session");
    CHECK_STR(policy_data_tls_refusal(SESSION_REUSE_CLIENT, &full), "full handshake");
    CHECK(policy_data_tls_refusal(SESSION_REUSE_OFF, &full) == NULL);
    CHECK(policy_data_tls_refusal(SESSION_REUSE_OFF, &foreign) == NULL);
}

static void test_data_peer(void)
{
    struct sockaddr_storage a, b, mapped;
    netaddr_parse_ip("127.0.0.1", 4000, &a);
    netaddr_parse_ip("127.0.0.2", 4000, &b);
    netaddr_parse_ip("::ffff:127.0.0.1", 6000, &mapped);
    CHECK(policy_data_peer_allowed((const struct sockaddr *)&client_v4, (const struct sockaddr *)&a));
    CHECK(!policy_data_peer_allowed((const struct sockaddr *)&client_v4, (const struct sockaddr *)&b));
    CHECK(policy_data_peer_allowed((const struct sockaddr *)&client_v4, (const struct sockaddr *)&mapped));
    CHECK(policy_data_peer_allowed(NULL, (const struct sockaddr *)&b));
}

static void test_intercept(void)
{
    config_listener_t l = listener_defaults();
    config_t all;
    memset(&all, 0, sizeof all);
    config_cidr_t allow;
    CHECK_EQ_INT(config_parse_cidr("10.9.0.0/16", &allow), FG_OK);
    l.backend.allow = &allow;
    l.backend.n_allow = 1;
    l.bind.port = 2121;
    struct sockaddr_storage local, dst;
    netaddr_parse_ip("10.9.0.1", 2121, &local);
    netaddr_parse_ip("10.9.3.4", 21, &dst);
    CHECK(policy_intercept_refusal(&l, &all, (struct sockaddr *)&dst, (struct sockaddr *)&local) == NULL);
    netaddr_parse_ip("10.8.3.4", 21, &dst);
    CHECK_STR(policy_intercept_refusal(&l, &all, (struct sockaddr *)&dst, (struct sockaddr *)&local),
              "outside backend.allow");
    netaddr_parse_ip("127.0.0.5", 21, &dst);
    CHECK_STR(policy_intercept_refusal(&l, &all, (struct sockaddr *)&dst, (struct sockaddr *)&local),
              "loopback destination");
    netaddr_parse_ip("::1", 21, &dst);
    CHECK_STR(policy_intercept_refusal(&l, &all, (struct sockaddr *)&dst, (struct sockaddr *)&local),
              "loopback destination");
    netaddr_parse_ip("10.9.0.1", 2121, &dst);
    CHECK_STR(policy_intercept_refusal(&l, &all, (struct sockaddr *)&dst, (struct sockaddr *)&local),
              "not diverted (the client dialled ftpsgate itself)");
    all.admin.enabled = 1;
    all.admin.bind.port = 9121;
    netaddr_parse_ip("10.9.3.4", 9121, &dst);
    CHECK_STR(policy_intercept_refusal(&l, &all, (struct sockaddr *)&dst, (struct sockaddr *)&local),
              "the admin port");
}

static void test_features(void)
{
    /* RFC 4217 §5: AUTH, PBSZ, PROT listed in every state. */
    feat_policy_t fp;
    policy_state_t st = st_initial();
    policy_features(&st, &fp);
    CHECK_EQ_INT(fp.tls_available, 1);
    CHECK_EQ_INT(fp.eprt_allowed, 1);
    CHECK_EQ_INT(fp.ccc_allowed, 0);
    st.tls_active = 1;
    st.ccc_allowed = 1;
    policy_features(&st, &fp);
    CHECK_EQ_INT(fp.tls_available, 1);
    CHECK_EQ_INT(fp.ccc_allowed, 1);
    st.implicit_mode = 1;
    st.active_enabled = 0;
    policy_features(&st, &fp);
    CHECK_EQ_INT(fp.ccc_allowed, 0);
    CHECK_EQ_INT(fp.eprt_allowed, 0);
}

int main(void)
{
    test_init();
    test_active();
    test_transfer_channel();
    test_data_tls();
    test_data_peer();
    test_intercept();
    test_features();
    test_auth();
    test_pbsz();
    test_prot();
    test_ccc();
    test_login();
    test_feat_passive();
    test_transfer();
    test_forward_and_quit();
    test_decision_reset();
    test_read_only();
    test_deny_commands();
    return check_report();
}
