#ifndef FTPSGATE_POLICY_H
#define FTPSGATE_POLICY_H
#include "config.h"
#include "ftp_cmd.h"

/* The command table of DESIGN.md §2 as one pure function of the session's
 * protection state and the command: answer locally, or forward (and how).
 * No I/O, so every row is unit-tested (tests/unit/test_policy.c). */

typedef struct {
    int implicit_mode;
    int tls_active;       /* the control connection is under TLS now */
    int pbsz_done;
    char prot;            /* 'C' or 'P' */
    int login_requires_tls;
    data_protection_t protection;         /* file transfers */
    data_protection_t listing_protection; /* LIST, NLST, MLSD */
    int ccc_allowed;
    int epsv_all;         /* RFC 2428 §4: EPSV ALL was accepted */
} policy_state_t;

typedef enum {
    POLICY_FORWARD = 0, /* send to the backend, relay its reply */
    POLICY_REPLY,       /* answer with code/text; the backend never sees it */
    POLICY_AUTH,        /* reply 234 then the TLS handshake */
    POLICY_PBSZ,        /* reply 200 PBSZ=0 */
    POLICY_PROT,        /* reply 200 and set prot */
    POLICY_PASSIVE,     /* PASV/EPSV: a data channel through the backend */
    POLICY_ACTIVE,      /* PORT/EPRT: the proxy dials the client (after anti-bounce checks) */
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
    const char *text; /* for POLICY_REPLY: reply text without code and CRLF */
    char prot;        /* for POLICY_PROT */
} policy_decision_t;

void policy_decide(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out);

#endif
