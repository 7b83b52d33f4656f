#include "policy.h"

#include <string.h>
#include <strings.h>

#include "numparse.h"

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
            return;
        }
        out->action = POLICY_PROT;
        out->prot = 'C';
        return;
    case 'P':
    case 'p':
        if (st->protection == PROTECT_CLEAR && st->listing_protection == PROTECT_CLEAR) {
            reply(out, 534, "Policy allows only PROT C");
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

void policy_decide(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out)
{
    memset(out, 0, sizeof *out);
    out->action = POLICY_FORWARD;
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
        if (arg_is(cmd, "ALL")) {
            out->action = POLICY_EPSV_ALL;
            return;
        }
        out->action = POLICY_PASSIVE;
        return;
    case FTP_CMD_PORT:
    case FTP_CMD_EPRT:
        if (st->epsv_all) {
            reply(out, 501, "EPSV ALL in effect: use EPSV");
            return;
        }
        out->action = POLICY_ACTIVE;
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
        if (st->listing_protection == PROTECT_PRIVATE && st->prot != 'P') {
            /* SECURITY: refused before the backend sees it (RFC 4217 §9). */
            reply(out, 521, "Directory listings must be protected: use PBSZ 0 and PROT P");
            return;
        }
        if (st->listing_protection == PROTECT_CLEAR && st->prot == 'P') {
            reply(out, 521, "Policy allows only clear directory listings: use PROT C");
            return;
        }
        out->action = POLICY_TRANSFER;
        return;
    case FTP_CMD_RETR:
    case FTP_CMD_STOR:
    case FTP_CMD_STOU:
    case FTP_CMD_APPE:
        if (st->protection == PROTECT_PRIVATE && st->prot != 'P') {
            /* SECURITY: refused before the backend sees it (RFC 4217 §9). */
            reply(out, 521, "Data connections must be protected: use PBSZ 0 and PROT P");
            return;
        }
        if (st->protection == PROTECT_CLEAR && st->prot == 'P') {
            reply(out, 521, "Policy allows only clear data connections: use PROT C");
            return;
        }
        out->action = POLICY_TRANSFER;
        return;
    case FTP_CMD_QUIT:
        out->action = POLICY_QUIT;
        return;
    default:
        return;
    }
}
