/* datalink.h for the session fuzzer: a data link with no socket, whose
 * outcome the fuzz script decides (fzd_done). It keeps datalink.h's rules:
 * the outcome is reported once, from the loop (defer.h), never after
 * datalink_detach; success only once the transfer's direction is known. A
 * passive link takes a port of the pool as the real one does, so a session
 * that forgets a link shows as a port that never comes back. The memory goes
 * at detach: any later use by the session is a use after free (ASan). */
#include "datalink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "fake_world.h"
#include "fgerr.h"
#include "netaddr.h"

struct datalink {
    datalink_t *next;
    datalink_opts_t o;
    datalink_done_cb cb;
    void *owner;
    unsigned id;
    uint16_t port; /* passive: from the pool */
    struct sockaddr_storage listen_addr;
    int direction_set, upload;
    int reported, queued;
    int code, backend_failed;
    const char *text;
    uint64_t moved;
    defer_t later;
};

static struct {
    datalink_t *live;
    unsigned next_id;
    int fail_next;
} W;

void fzd_fail_next(int rc)
{
    W.fail_next = rc;
}

unsigned fzd_live(void)
{
    unsigned n = 0;
    for (datalink_t *l = W.live; l; l = l->next)
        n++;
    return n;
}

int fzd_current(fzd_info_t *out)
{
    memset(out, 0, sizeof *out);
    if (!W.live)
        return 0;
    out->id = W.live->id;
    out->direction_set = W.live->direction_set;
    out->upload = W.live->upload;
    out->tls = W.live->o.tls.ctx != NULL;
    out->tls_ctx = W.live->o.tls.ctx;
    return 1;
}

void fzd_reset_world(void)
{
    if (W.live)
        FZ_FAIL("a data link outlived its session");
    W.fail_next = 0;
}

static void report(defer_t *d)
{
    datalink_t *l = (datalink_t *)((char *)d - offsetof(datalink_t, later));
    l->queued = 0;
    l->reported = 1;
    fz_trace("data link %u: done, %d %s", l->id, l->code, l->code ? l->text : "every byte delivered");
    fz_obs_link_done(l->id, l->code);
    l->cb(l->owner, l->code, l->text, l->backend_failed);
}

void fzd_done(int kind)
{
    static const struct {
        int code, backend_failed;
        const char *text;
    } outcomes[] = {
        {0, 0, ""},
        {425, 0, "Cannot open data connection"},
        {426, 1, "Connection closed; transfer aborted (server side)"},
        {522, 0, "Data connection TLS failed"},
        {426, 0, "Connection closed; transfer aborted"},
    };
    datalink_t *l = W.live;
    if (!l || l->reported || l->queued)
        return;
    if (kind < 0 || kind > 4)
        kind = 4;
    if (kind == 0 && !l->direction_set)
        return; /* nothing can complete before the transfer command */
    l->code = outcomes[kind].code;
    l->backend_failed = outcomes[kind].backend_failed;
    l->text = outcomes[kind].text;
    if (kind == 0)
        l->moved = 1000;
    l->queued = 1;
    defer_call(&l->later, report);
}

int datalink_new(uv_loop_t *loop, const datalink_opts_t *opts, datalink_done_cb cb, void *owner, datalink_t **out)
{
    (void)loop;
    *out = NULL;
    if (W.live)
        FZ_FAIL("a second data link while link %u is live (the session holds one)", W.live->id);
    if (!opts->metrics || !cb)
        FZ_FAIL("datalink_new with incomplete options");
    if (opts->client_mode == DL_CLIENT_ACTIVE) {
        /* SECURITY (checked): RFC 2577 §3, the proxy dials only the client's
         * own address (FTP bounce), and no low port unless allowed. */
        if (!netaddr_same_ip((const struct sockaddr *)&opts->client_target,
                             (const struct sockaddr *)&fz_env.real_client))
            FZ_FAIL("an active data link to an address that is not the client's (bounce)");
        if (netaddr_port((const struct sockaddr *)&opts->client_target) < 1024 && !fz_env.cfg->active.allow_low_ports)
            FZ_FAIL("an active data link to a port below 1024");
    }
    if (W.fail_next) {
        int rc = W.fail_next;
        W.fail_next = 0;
        fz_trace("data link: cannot be prepared (%d)", rc);
        return rc;
    }
    datalink_t *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    l->o = *opts;
    l->cb = cb;
    l->owner = owner;
    l->id = ++W.next_id;
    if (opts->client_mode == DL_CLIENT_PASSIVE) {
        if (!opts->pool)
            FZ_FAIL("passive data link without a port pool");
        if (portpool_acquire(opts->pool, &l->port) != FG_OK) {
            free(l);
            return FG_RANGE;
        }
    }
    if (opts->backend_mode == DL_BACKEND_LISTEN) {
        memcpy(&l->listen_addr, &opts->backend_local, sizeof l->listen_addr);
        netaddr_set_port((struct sockaddr *)&l->listen_addr, (uint16_t)(40000 + l->id % 1000));
    }
    l->next = W.live;
    W.live = l;
    fz_trace("data link %u: new (client %s, backend %s, %s)", l->id,
             opts->client_mode == DL_CLIENT_PASSIVE ? "passive" : "active",
             opts->backend_mode == DL_BACKEND_LISTEN ? "listen" : "connect", opts->tls.ctx ? "TLS" : "clear");
    *out = l;
    return FG_OK;
}

static void check(const datalink_t *dl, const char *call)
{
    for (const datalink_t *l = W.live; l; l = l->next)
        if (l == dl)
            return;
    FZ_FAIL("%s on a link that is not live (detached or never made)", call);
}

uint16_t datalink_client_port(const datalink_t *dl)
{
    check(dl, "datalink_client_port");
    return dl->port;
}

const struct sockaddr *datalink_backend_listen_addr(const datalink_t *dl)
{
    check(dl, "datalink_backend_listen_addr");
    if (dl->o.backend_mode != DL_BACKEND_LISTEN)
        FZ_FAIL("datalink_backend_listen_addr on a link that connects to the backend");
    return (const struct sockaddr *)&dl->listen_addr;
}

void datalink_set_backend_port(datalink_t *dl, uint16_t port)
{
    check(dl, "datalink_set_backend_port");
    (void)port;
}

void datalink_set_direction(datalink_t *dl, int upload)
{
    check(dl, "datalink_set_direction");
    if (dl->direction_set)
        FZ_FAIL("datalink_set_direction twice on link %u", dl->id);
    dl->direction_set = 1;
    dl->upload = upload;
}

void datalink_progress(const datalink_t *dl, uint64_t *to_client, uint64_t *to_backend)
{
    check(dl, "datalink_progress");
    *to_client = dl->upload ? 0 : dl->moved;
    *to_backend = dl->upload ? dl->moved : 0;
}

/* The fake negotiates nothing: a TLS link reports TLS 1.3 resumed, as a
 * client that follows the session rules would. */
int datalink_tls_info(const datalink_t *dl, const char **version, const char **cipher, int *resumed)
{
    check(dl, "datalink_tls_info");
    if (!dl->o.tls.ctx)
        return 0;
    *version = "TLSv1.3";
    *cipher = "TLS_AES_256_GCM_SHA384";
    *resumed = 1;
    return 1;
}

void datalink_detach(datalink_t *dl)
{
    if (!dl)
        return;
    check(dl, "datalink_detach");
    for (datalink_t **p = &W.live; *p; p = &(*p)->next)
        if (*p == dl) {
            *p = dl->next;
            break;
        }
    defer_cancel(&dl->later);
    if (dl->port)
        portpool_release(dl->o.pool, dl->port);
    fz_trace("data link %u: detached", dl->id);
    free(dl);
}
