#include "policy.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "dataaddr.h"
#include "netaddr.h"
#include "numparse.h"

void policy_init(policy_state_t *st, const config_listener_t *cfg, const struct sockaddr *client,
                 int control_is_ipv4)
{
    memset(st, 0, sizeof *st);
    st->implicit_mode = cfg->mode == LISTEN_IMPLICIT;
    st->login_requires_tls = cfg->policy.login_requires_tls;
    st->protection = cfg->policy.data_protection;
    st->listing_protection = cfg->policy.listing_protection;
    st->ccc_allowed = cfg->policy.ccc_allowed;
    st->active_enabled = cfg->active.enabled;
    st->allow_low_ports = cfg->active.allow_low_ports;
    st->read_only = cfg->policy.read_only;
    st->deny = (const char (*)[5])cfg->policy.deny_commands;
    st->n_deny = cfg->policy.n_deny_commands;
    st->host_answered = cfg->n_routes > 0;
    st->client_addr = client;
    st->control_is_ipv4 = control_is_ipv4;
    if (st->implicit_mode) {
        /* MS-FTPS §3.2.5: TLS from the first byte, PBSZ implied, PROT P. */
        st->tls_active = 1;
        st->pbsz_done = 1;
        st->prot = cfg->policy.data_protection == PROTECT_CLEAR ? 'C' : 'P';
    } else {
        st->prot = 'C'; /* RFC 4217 §9: PROT C until the client says otherwise */
    }
}

static void reply(policy_decision_t *out, int code, const char *text)
{
    out->action = POLICY_REPLY;
    out->code = code;
    out->text = text;
}

static int arg_is(const ftp_cmd_t *cmd, const char *word)
{
    size_t n = strlen(word);
    return cmd->arg && cmd->arg_len == n && strncasecmp(cmd->arg, word, n) == 0;
}

static void decide_auth(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out)
{
    if (!cmd->arg) {
        reply(out, 501, "Syntax: AUTH TLS");
        return;
    }
    if (st->tls_active) {
        /* RFC 4217 §4 / MS-FTPS §3.2.5: no second AUTH, none on implicit sessions. */
        reply(out, 503, "Already using TLS");
        return;
    }
    if (arg_is(cmd, "TLS") || arg_is(cmd, "SSL") || arg_is(cmd, "TLS-C") || arg_is(cmd, "TLS-P")) {
        out->action = POLICY_AUTH;
        return;
    }
    reply(out, 504, "Unsupported security mechanism; use AUTH TLS");
}

static void decide_epsv(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out)
{
    if (arg_is(cmd, "ALL")) {
        out->action = POLICY_EPSV_ALL;
        return;
    }
    switch (dataaddr_check_epsv_arg(cmd->arg, cmd->arg_len, st->control_is_ipv4)) {
    case EPSV_ARG_OK:
        out->action = POLICY_PASSIVE;
        return;
    case EPSV_ARG_USE_1:
        reply(out, 522, "Network protocol not supported, use (1)");
        return;
    case EPSV_ARG_USE_2:
        reply(out, 522, "Network protocol not supported, use (2)");
        return;
    default:
        reply(out, 501, "Syntax: EPSV [1|2|ALL]");
        return;
    }
}

static void decide_active(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out)
{
    if (st->epsv_all) {
        reply(out, 501, "EPSV ALL in effect: use EPSV");
        return;
    }
    if (!st->active_enabled) {
        reply(out, 502, "Active mode is disabled; use PASV or EPSV");
        return;
    }
    int eprt = cmd->id == FTP_CMD_EPRT;
    switch (dataaddr_check_active(eprt, cmd->arg, cmd->arg_len, st->client_addr, st->allow_low_ports,
                                  &out->target)) {
    case DATAADDR_OK:
        out->action = POLICY_ACTIVE;
        return;
    case DATAADDR_PROTOCOL:
        reply(out, 522, "Network protocol not supported, use (1,2)");
        return;
    case DATAADDR_FOREIGN_HOST:
        /* SECURITY: FTP bounce (RFC 2577 §3). */
        reply(out, 500, eprt ? "Illegal EPRT command: the address must be your own"
                             : "Illegal PORT command: the address must be your own");
        out->refusal = 1;
        return;
    case DATAADDR_LOW_PORT:
        reply(out, 500, eprt ? "Illegal EPRT command: port below 1024" : "Illegal PORT command: port below 1024");
        out->refusal = 1;
        return;
    default:
        reply(out, 501, "Syntax error in parameters");
        return;
    }
}

/* A transfer runs over the data channel prepared by the last PASV/EPSV/
 * PORT/EPRT, with the protection it was prepared with. */
static void decide_transfer(const policy_state_t *st, data_protection_t rule, const char *must_protect,
                            const char *must_clear, policy_decision_t *out)
{
    if (rule == PROTECT_PRIVATE && st->prot != 'P') {
        /* SECURITY: refused before the backend sees it (RFC 4217 §9). */
        reply(out, 521, must_protect);
        out->refusal = 1;
        return;
    }
    if (rule == PROTECT_CLEAR && st->prot == 'P') {
        reply(out, 521, must_clear);
        out->refusal = 1;
        return;
    }
    if (!st->data_prot) {
        reply(out, 425, "Use PASV or EPSV first");
        return;
    }
    if (st->data_prot != st->prot) {
        reply(out, 425, "Protection level changed since PASV; send PASV or EPSV again");
        out->drop_data = 1;
        return;
    }
    out->action = POLICY_TRANSFER;
}

static void decide_pbsz(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out)
{
    uint64_t size;
    if (!st->tls_active) {
        reply(out, 503, "PBSZ requires AUTH TLS first");
        return;
    }
    if (!cmd->arg || num_parse_u64(cmd->arg, cmd->arg_len, UINT32_MAX, &size) != 0) {
        reply(out, 501, "Syntax: PBSZ 0");
        return;
    }
    /* RFC 4217 §9: a TLS stream has no buffer size; always answer PBSZ=0. */
    out->action = POLICY_PBSZ;
}

static void decide_prot(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out)
{
    if (!st->tls_active) {
        reply(out, 503, "PROT requires AUTH TLS first");
        return;
    }
    if (!st->pbsz_done) {
        reply(out, 503, "PROT requires PBSZ first");
        return;
    }
    if (!cmd->arg || cmd->arg_len != 1) {
        reply(out, cmd->arg ? 504 : 501, cmd->arg ? "Unknown protection level" : "Syntax: PROT C|P");
        return;
    }
    switch (cmd->arg[0]) {
    case 'C':
    case 'c':
        if (st->protection == PROTECT_PRIVATE && st->listing_protection == PROTECT_PRIVATE) {
            /* SECURITY: policy forbids clear data channels. */
            reply(out, 534, "Policy requires PROT P");
            out->refusal = 1;
            return;
        }
        out->action = POLICY_PROT;
        out->prot = 'C';
        return;
    case 'P':
    case 'p':
        if (st->protection == PROTECT_CLEAR && st->listing_protection == PROTECT_CLEAR) {
            reply(out, 534, "Policy allows only PROT C");
            out->refusal = 1;
            return;
        }
        out->action = POLICY_PROT;
        out->prot = 'P';
        return;
    case 'S':
    case 's':
    case 'E':
    case 'e':
        reply(out, 536, "Only PROT C or P is supported");
        return;
    default:
        reply(out, 504, "Unknown protection level");
        return;
    }
}

/* policy.read_only: the commands that change the server's files, and their
 * refusal. The codes are taken from each command's list in RFC 959 §5.4:
 * - 550 ("Requested action not taken. File unavailable (e.g., ... no
 *   access)") where the list has it: APPE, DELE, RMD, MKD, RNFR (and the
 *   RFC 775 aliases XRMD, XMKD); also MFMT, MFCT, MFF, whose draft
 *   (draft-somers-ftp-mfxx) answers a refused change with 550.
 * - STOR, STOU and RNTO have no 550 in their lists. They have 532 ("Need
 *   account for storing files") and 553 ("File name not allowed"). 532 is
 *   taken: in RFC 959 the account is what grants the right to store, so 532
 *   says "this login may not store files", which is what read-only means;
 *   553 would blame the name, and any name is refused.
 * - SITE: 502 ("Command not implemented"): the command as a whole is not
 *   offered here. Its list (200, 202, 500, 501, 530) has nothing closer: 202
 *   is a success, 500/501 blame the syntax, 530 the login. */
static const struct {
    const char verb[5];
    int code;
    const char *text;
} read_only_refused[] = {
    { "STOR", 532, "Storing files is not allowed: read-only access" },
    { "STOU", 532, "Storing files is not allowed: read-only access" },
    { "APPE", 550, "Storing files is not allowed: read-only access" },
    { "DELE", 550, "Deleting files is not allowed: read-only access" },
    { "RMD", 550, "Removing directories is not allowed: read-only access" },
    { "XRMD", 550, "Removing directories is not allowed: read-only access" },
    { "MKD", 550, "Creating directories is not allowed: read-only access" },
    { "XMKD", 550, "Creating directories is not allowed: read-only access" },
    { "RNFR", 550, "Renaming is not allowed: read-only access" },
    { "RNTO", 532, "Renaming is not allowed: read-only access" },
    { "SITE", 502, "SITE commands are not allowed: read-only access" },
    { "MFMT", 550, "Changing file facts is not allowed: read-only access" },
    { "MFCT", 550, "Changing file facts is not allowed: read-only access" },
    { "MFF", 550, "Changing file facts is not allowed: read-only access" },
};

/* The command policy of the listener (policy.deny_commands, policy.read_only):
 * 1 when cmd is refused (out filled). Refused commands never reach the
 * backend: a read-only gate must not depend on the backend's permissions. A
 * refused transfer also discards the data channel prepared for it: the client
 * gives up its data connection after the 5xx, and a new PASV/PORT comes
 * before its next transfer (RFC 959 §3.2). */
static int decide_command_policy(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out)
{
    int refused = 0;
    for (size_t i = 0; !refused && i < st->n_deny; i++)
        if (strcmp(cmd->verb, st->deny[i]) == 0) {
            /* RFC 959 §4.2: 502 "Command not implemented" - not offered here. */
            reply(out, 502, "Command not allowed here");
            refused = 1;
        }
    for (size_t i = 0; !refused && st->read_only && i < sizeof read_only_refused / sizeof read_only_refused[0]; i++)
        if (strcmp(cmd->verb, read_only_refused[i].verb) == 0) {
            reply(out, read_only_refused[i].code, read_only_refused[i].text);
            refused = 1;
        }
    if (refused) {
        out->refusal = 1;
        out->drop_data = ftp_cmd_is_transfer(cmd->id);
    }
    return refused;
}

void policy_decide(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out)
{
    memset(out, 0, sizeof *out);
    out->action = POLICY_FORWARD;
    if (decide_command_policy(st, cmd, out))
        return;
    switch (cmd->id) {
    case FTP_CMD_AUTH:
        decide_auth(st, cmd, out);
        return;
    case FTP_CMD_PBSZ:
        decide_pbsz(st, cmd, out);
        return;
    case FTP_CMD_PROT:
        decide_prot(st, cmd, out);
        return;
    case FTP_CMD_CCC:
        if (st->implicit_mode || !st->ccc_allowed) {
            /* MS-FTPS: no CCC on implicit sessions; otherwise the policy decides. */
            reply(out, 533, "CCC not allowed by policy");
            return;
        }
        if (!st->tls_active) {
            reply(out, 503, "CCC requires an active TLS session");
            return;
        }
        out->action = POLICY_CCC;
        return;
    case FTP_CMD_USER:
    case FTP_CMD_PASS:
    case FTP_CMD_ACCT:
        if (st->login_requires_tls && !st->tls_active) {
            /* SECURITY: credentials never cross the network in clear (RFC 4217 §11). */
            reply(out, 534, "Policy requires AUTH TLS before login");
            out->refusal = 1;
            return;
        }
        return;
    case FTP_CMD_FEAT:
        out->action = POLICY_FEAT;
        return;
    case FTP_CMD_PASV:
        if (st->epsv_all) {
            reply(out, 501, "EPSV ALL in effect: use EPSV");
            return;
        }
        out->action = POLICY_PASSIVE;
        return;
    case FTP_CMD_EPSV:
        decide_epsv(st, cmd, out);
        return;
    case FTP_CMD_PORT:
    case FTP_CMD_EPRT:
        decide_active(st, cmd, out);
        return;
    case FTP_CMD_LPSV:
    case FTP_CMD_LPRT:
        reply(out, 502, "Long addresses are not supported; use EPSV");
        return;
    case FTP_CMD_REIN:
        out->action = POLICY_REIN;
        return;
    case FTP_CMD_LIST:
    case FTP_CMD_NLST:
    case FTP_CMD_MLSD:
        decide_transfer(st, st->listing_protection,
                        "Directory listings must be protected: use PBSZ 0 and PROT P",
                        "Policy allows only clear directory listings: use PROT C", out);
        return;
    case FTP_CMD_RETR:
    case FTP_CMD_STOR:
    case FTP_CMD_STOU:
    case FTP_CMD_APPE:
        decide_transfer(st, st->protection, "Data connections must be protected: use PBSZ 0 and PROT P",
                        "Policy allows only clear data connections: use PROT C", out);
        return;
    case FTP_CMD_QUIT:
        out->action = POLICY_QUIT;
        return;
    default:
        return;
    }
}

void policy_features(const policy_state_t *st, feat_policy_t *out)
{
    memset(out, 0, sizeof *out);
    out->tls_available = 1;
    out->ccc_allowed = st->ccc_allowed && !st->implicit_mode;
    out->eprt_allowed = st->active_enabled;
    out->host_answered = st->host_answered;
}

const char *policy_data_tls_refusal(session_reuse_t rule, const policy_data_tls_t *f)
{
    if (rule == SESSION_REUSE_OFF || f->resumed_own)
        return NULL;
    if (rule == SESSION_REUSE_CLIENT && f->resumed_same_client)
        return NULL;
    /* SECURITY: data-connection theft with a TLS session of its own (RFC 4217
     * §10.2): only a resumption proves who opened the data connection. */
    return f->offered_session ? "another connection's session" : "full handshake";
}

int policy_data_peer_allowed(const struct sockaddr *expected, const struct sockaddr *peer)
{
    return !expected || netaddr_same_ip(peer, expected);
}

const char *policy_intercept_refusal(const config_listener_t *l, const config_t *all, const struct sockaddr *dst,
                                     const struct sockaddr *local)
{
    struct in_addr v4;
    /* SECURITY: never a relay to arbitrary hosts, to ourselves or to loopback. */
    if (netaddr_ipv4(dst, &v4) ? (ntohl(v4.s_addr) >> 24) == 127
                               : dst->sa_family == AF_INET6 &&
                                     IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)dst)->sin6_addr))
        return "loopback destination";
    if (netaddr_same_ip(dst, local) && netaddr_port(dst) == l->bind.port)
        return "not diverted (the client dialled ftpsgate itself)";
    if (all->admin.enabled && netaddr_port(dst) == all->admin.bind.port)
        return "the admin port";
    if (!config_cidr_any(l->backend.allow, l->backend.n_allow, dst))
        return "outside backend.allow";
    return NULL;
}
