#ifndef FTPSGATE_DATAPLAN_H
#define FTPSGATE_DATAPLAN_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include <openssl/ssl.h>

#include "auditlog.h"
#include "client.h"
#include "config.h"
#include "datalink.h"
#include "ftp_cmd.h"
#include "ftp_reply.h"
#include "liveview.h"
#include "metrics.h"
#include "portpool.h"
#include "upstream.h"

/* A session's data channels (DESIGN.md §3): PASV/EPSV/PORT/EPRT prepare a
 * data link (the client's side as the client asked, the backend's side as
 * backend.data_mode says) and ask the backend for its side; the transfer
 * command then runs over it; the transfer's final reply is held until the
 * link has delivered every byte (DESIGN.md §2), and replaced when it did not;
 * ABOR tears the link down and relays the backend's replies.
 *
 * The plan writes its replies to the client itself and its data commands to
 * the upstream it is given. It tells the session when it needs no more
 * backend replies: by the return value of a call (DATAPLAN_IDLE), or through
 * on_idle from the loop once a held reply is released. */

typedef struct dataplan dataplan_t;

enum { DATAPLAN_IDLE = 0, DATAPLAN_BUSY = 1 };

/* What the plan borrows from its session for its whole life. */
typedef struct {
    uv_loop_t *loop;
    const config_listener_t *cfg;
    const config_limits_t *limits;
    portpool_t *pool;
    metrics_t *metrics;
    const struct sockaddr *client_addr;     /* the real client */
    const struct sockaddr *data_peer;       /* who may connect to a passive port: the client or its balancer */
    const struct sockaddr *local_addr;      /* our end of the control connection */
    const struct sockaddr *intercepted_dst; /* the server an intercepted client dialled; NULL when not */
    SSL_CTX *tls;                           /* the control connection's context */
    const tls_sni_t *sni;
    const unsigned char *tls_token;
    tls_engine_foreign_check_cb same_client;
    void *same_client_ctx;
    unsigned long long sid;
    const char *peer;
} dataplan_env_t;

/* One transfer as it ended, for the audit log (auditlog.h): the command, its
 * path, which way the bytes went and how many, when it started, the final
 * reply code the client got, and the data connection's TLS. */
typedef auditlog_transfer_t dataplan_transfer_t;

typedef struct {
    void (*on_idle)(void *owner);  /* from the loop: the session may take commands again */
    void (*on_transfer)(void *owner, const dataplan_transfer_t *t); /* a transfer ended */
} dataplan_cbs_t;

dataplan_t *dataplan_new(const dataplan_env_t *env, client_t *client, const dataplan_cbs_t *cbs, void *owner);
/* Tears down any link; no callback afterwards. NULL is fine. */
void dataplan_free(dataplan_t *dp);

/* PASV, EPSV (cmd) or PORT/EPRT with the target the policy validated, for
 * the protection level prot, toward the session's backend (its data mode and
 * source rule; up is its control connection). A new channel replaces the previous one.
 * DATAPLAN_BUSY: the backend was asked (its replies go to
 * dataplan_backend_reply); DATAPLAN_IDLE: the client was answered already. */
int dataplan_prepare(dataplan_t *dp, upstream_t *up, const config_backend_t *backend, ftp_cmd_id_t cmd,
                     const struct sockaddr *active_target, char prot);

/* The protection level of the prepared channel; 0 when none is prepared. */
char dataplan_prot(const dataplan_t *dp);

/* A transfer command is about to be forwarded. FG_OK: forward it now (the
 * plan waits for its replies); otherwise the client was answered (the
 * prepared channel had failed) and the command must not go out. */
int dataplan_transfer_begins(dataplan_t *dp, const ftp_cmd_t *cmd);
int dataplan_in_transfer(const dataplan_t *dp);

/* A backend reply line while the plan is busy. DATAPLAN_BUSY or DATAPLAN_IDLE. */
int dataplan_backend_reply(dataplan_t *dp, upstream_t *up, const ftp_reply_line_t *r, const char *line, size_t len);

/* ABOR during a transfer (RFC 959 §4.1.3): the link goes, the backend gets
 * ABOR with the Telnet Synch, and the replies owed are relayed. */
int dataplan_abort(dataplan_t *dp, upstream_t *up); /* FG_OK, or FG_STATE when no transfer runs */
/* The running transfer for the live view (liveview.h), its rate sampled
 * now (loop_now: uv_now; wall_now: the wall clock in ms). 1 and *t filled
 * while a transfer runs, else 0. */
int dataplan_snapshot(dataplan_t *dp, liveview_transfer_t *t, uint64_t loop_now, int64_t wall_now);
/* STAT during a transfer: the multi-line 213 reply. */
void dataplan_stat(dataplan_t *dp);
/* Drops the prepared channel (REIN, a refused transfer). */
void dataplan_discard(dataplan_t *dp);

#endif
