#ifndef FTPSGATE_POLICY_H
#define FTPSGATE_POLICY_H
#include <sys/socket.h>

#include "config.h"
#include "feat.h"
#include "ftp_cmd.h"

/* Every policy decision of a session, as pure functions of its state and
 * the command (or the facts of a data connection): the command table of
 * DESIGN.md §2, the data-channel rules of §3 (anti-bounce, EPSV, active mode
 * off, the protection level a data channel was prepared with) and the data
 * TLS session-reuse rule. No I/O: the session replies, logs and counts; every
 * row is unit-tested (tests/unit/test_policy.c). */

typedef struct {
    /* From the listener's configuration (policy_init). */
    int implicit_mode;
    int login_requires_tls;
    data_protection_t protection;         /* file transfers */
    data_protection_t listing_protection; /* LIST, NLST, MLSD */
    int ccc_allowed;
    int active_enabled;                   /* PORT/EPRT served */
    int allow_low_ports;                  /* PORT/EPRT to ports below 1024 */
    int read_only;                        /* policy.read_only: commands that change files refused */
    const char (*deny)[5];                /* policy.deny_commands (borrowed from the config, which
                                             outlives the session): verbs refused with 502 */
    size_t n_deny;
    int host_answered;                    /* the listener has routes: HOST is ftpsgate's (route.h) */
    /* The connection (kept across REIN). */
    const struct sockaddr *client_addr;   /* borrowed: the control connection's peer */
    int control_is_ipv4;
    /* What the client has done so far. */
    int tls_active;       /* the control connection is under TLS now */
    int pbsz_done;
    char prot;            /* 'C' or 'P' */
    int epsv_all;         /* RFC 2428 §4: EPSV ALL was accepted */
    char data_prot;       /* the PROT a prepared data channel was made with; 0: none prepared */
} policy_state_t;

/* The state at TCP connect, and after REIN (RFC 959 §4.1.1: "as if the user
 * had just connected"): explicit sessions start clear with PROT C; implicit
 * ones under TLS with PBSZ done and PROT P (C when the policy is clear). */
void policy_init(policy_state_t *st, const config_listener_t *cfg, const struct sockaddr *client,
                 int control_is_ipv4);

typedef enum {
    POLICY_FORWARD = 0, /* send to the backend, relay its reply */
    POLICY_REPLY,       /* answer with code/text; the backend never sees it */
    POLICY_AUTH,        /* reply 234 then the TLS handshake */
    POLICY_PBSZ,        /* reply 200 PBSZ=0 */
    POLICY_PROT,        /* reply 200 and set prot */
    POLICY_PASSIVE,     /* PASV/EPSV: a data channel through the backend */
    POLICY_ACTIVE,      /* PORT/EPRT: the proxy dials target when the transfer starts */
    POLICY_EPSV_ALL,    /* reply 200; PASV/PORT/EPRT refused from now on */
    POLICY_FEAT,        /* forward, merge the reply */
    POLICY_TRANSFER,    /* forward as a transfer over the prepared data channel */
    POLICY_QUIT,        /* forward; close both after the reply */
    POLICY_CCC,         /* reply 200, then end TLS on the control connection */
    POLICY_REIN         /* reset the session to its state at connect */
} policy_action_t;

typedef struct {
    policy_action_t action;
    int code;         /* for POLICY_REPLY */
    const char *text; /* for POLICY_REPLY: reply text without code and CRLF (static) */
    char prot;        /* for POLICY_PROT */
    int refusal;      /* POLICY_REPLY refused by the security or command policy (read_only,
                         deny_commands): logged and counted, never forwarded */
    int drop_data;    /* POLICY_REPLY: the prepared data channel is discarded too */
    struct sockaddr_storage target; /* POLICY_ACTIVE: where to dial; a bounce refusal: the refused address */
} policy_decision_t;

/* The command policy comes first: a verb of policy.deny_commands gets 502,
 * then under policy.read_only the commands that change files are refused
 * (uploads STOR STOU APPE, DELE, RMD XRMD, MKD XMKD, RNFR RNTO, SITE, and
 * the MFMT MFCT MFF of draft-somers-ftp-mfxx), with the codes of RFC 959
 * §5.4 (policy.c says which and why). Both are refusals (refusal = 1). */
void policy_decide(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out);

/* The proxy's own FEAT lines for this state (feat.h). */
void policy_features(const policy_state_t *st, feat_policy_t *out);

/* A data connection under PROT P has finished its handshake: may it carry
 * the transfer? (RFC 4217 §10.2: a data connection proves it comes from the
 * control connection's client by resuming that connection's TLS session.)
 * Returns NULL to accept, or the reason of the refusal for the log. */
typedef struct {
    int resumed_own;         /* resumed a session of this control connection */
    int resumed_same_client; /* resumed a session issued to the same address and login elsewhere */
    int offered_session;     /* the ClientHello offered a session to resume */
} policy_data_tls_t;
const char *policy_data_tls_refusal(session_reuse_t rule, const policy_data_tls_t *facts);

/* A data connection arrived from peer: may it be accepted? expected is the
 * only IP allowed (RFC 2577 §3, data-port theft), NULL when the check is off. */
int policy_data_peer_allowed(const struct sockaddr *expected, const struct sockaddr *peer);

/* Interception (backend "original-destination"): may a diverted client be
 * relayed to dst, the address it dialled (local: where the connection
 * arrived)? NULL to serve it, else the reason of the refusal. */
const char *policy_intercept_refusal(const config_listener_t *l, const config_t *all, const struct sockaddr *dst,
                                     const struct sockaddr *local);

#endif
