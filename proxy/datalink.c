#include "datalink.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataopen.h"
#include "defer.h"
#include "fgerr.h"
#include "log.h"
#include "netaddr.h"
#include "policy.h"
#include "pump.h"
#include "tls_engine.h"
#include "tstream.h"

#define DATALINK_LINGER_MS 3000

enum { DIR_UNKNOWN = -1, DIR_DOWNLOAD = 0, DIR_UPLOAD = 1 };

/* Lifetime: the link counts its live handles (timers, streams, and its
 * dataopen while that has handles of its own: listening sockets, dials) in
 * `handles`; each close callback takes one off, and the memory goes in the
 * last one, never earlier. The timer is closed last, so the
 * free always happens in a close callback, whatever the owner does in its
 * done callback. */
struct datalink {
    uv_loop_t *loop;
    datalink_done_cb cb;
    void *owner;
    defer_t report; /* the outcome, told to the owner from the loop */
    int report_code, report_backend_failed;
    char report_text[128];
    datalink_opts_t o;
    dataopen_t *open; /* how the two connections come; NULL once closed */
    unsigned stalled_s;
    tstream_t *client, *backend;
    pump_t up, down; /* client -> backend, backend -> client */
    uv_timer_t timer;
    int direction;
    unsigned handles;
    unsigned finished : 1, detached : 1, failed : 1, lingering : 1, timer_closing : 1, client_up : 1,
        backend_up : 1, running : 1;
    uint64_t progress_mark;
    const char *tls_version, *tls_cipher; /* the client side's, after its handshake */
    int tls_resumed;
};

static void on_stall_tick(uv_timer_t *t);
static void on_connect_timeout(uv_timer_t *t);
static void dl_fail_side(datalink_t *dl, int code, const char *text, int backend_failed);
static void dl_maybe_connect_backend(datalink_t *dl);

/* ---- lifetime ---------------------------------------------------------------- */

static void dl_release_handle(datalink_t *dl);

static void dl_timer_closed(uv_handle_t *h)
{
    dl_release_handle(h->data);
}

/* Called where the owner lets go: closes the timer once nothing else is open. */
static void dl_maybe_free(datalink_t *dl)
{
    if (dl->detached && dl->handles == 1 && !dl->timer_closing) {
        dl->timer_closing = 1;
        uv_close((uv_handle_t *)&dl->timer, dl_timer_closed);
    }
}

static void dl_release_handle(datalink_t *dl)
{
    assert(dl->handles > 0);
    dl->handles--;
    if (dl->detached && dl->handles == 0) {
        defer_cancel(&dl->report);
        pump_release(&dl->up);
        pump_release(&dl->down);
        free(dl);
        return;
    }
    dl_maybe_free(dl);
}

static void dl_pump_closed(void *owner)
{
    dl_release_handle(owner);
}

/* The pumps' rate timers go as soon as the transfer is over (their handles count). */
static void dl_close_pumps(datalink_t *dl)
{
    pump_close(&dl->up, dl_pump_closed);
    pump_close(&dl->down, dl_pump_closed);
}

static void dl_close_streams(datalink_t *dl, int reset)
{
    if (dl->client)
        tstream_close(dl->client, reset);
    if (dl->backend)
        tstream_close(dl->backend, reset);
}

static void dl_run_report(defer_t *d)
{
    datalink_t *dl = (datalink_t *)((char *)d - offsetof(datalink_t, report));
    datalink_done_cb cb = dl->cb;
    dl->cb = NULL;
    if (cb && !dl->detached)
        cb(dl->owner, dl->report_code, dl->report_text, dl->report_backend_failed);
}

/* The outcome goes to the owner from the loop, so the owner may tear the
 * link down in its callback while none of the link's code is on the stack. */
static void dl_report(datalink_t *dl, int code, const char *text, int backend_failed)
{
    dl->report_code = code;
    dl->report_backend_failed = backend_failed;
    snprintf(dl->report_text, sizeof dl->report_text, "%s", text ? text : "");
    defer_call(&dl->report, dl_run_report);
}

static void dl_account(datalink_t *dl, int ok)
{
    if (ok)
        METRIC_INC(dl->o.metrics, transfers_ok);
    else
        METRIC_INC(dl->o.metrics, transfers_failed);
    METRIC_ADD(dl->o.metrics, bytes_to_backend, dl->up.bytes);
    METRIC_ADD(dl->o.metrics, bytes_to_client, dl->down.bytes);
}

static void dl_fail_side(datalink_t *dl, int code, const char *text, int backend_failed)
{
    if (dl->finished)
        return;
    dl->finished = 1;
    dl->failed = 1;
    dl_close_pumps(dl);
    dl_account(dl, 0);
    if (code == 522)
        METRIC_INC(dl->o.metrics, data_tls_failures);
    /* Counted as read: on a failure some of the backend's bytes never reached the client. */
    LOG_INFO(dl->o.session_id, dl->o.peer,
             "data transfer failed (%d %s); %llu bytes read from the client, %llu from the backend", code, text,
             (unsigned long long)dl->up.bytes, (unsigned long long)dl->down.bytes);
    uv_timer_stop(&dl->timer);
    dataopen_stop(dl->open);
    /* SECURITY: reset, not FIN, so the backend cannot take a cut upload as complete. */
    dl_close_streams(dl, 1);
    if (dl->direction != DIR_UNKNOWN)
        dataopen_poke_backend(dl->open);
    dl_report(dl, code, text, backend_failed);
}

static void dl_fail(datalink_t *dl, int code, const char *text)
{
    dl_fail_side(dl, code, text, 0);
}

static void dl_linger_check(datalink_t *dl)
{
    /* After success each side is closed once its reading ended and our
     * shutdown went out, so neither peer sees a reset after a good transfer. */
    if (dl->client && !tstream_closing(dl->client) && tstream_ended(dl->client) &&
        tstream_shutdown_done(dl->client))
        tstream_close(dl->client, 0);
    if (dl->backend && !tstream_closing(dl->backend) && tstream_ended(dl->backend) &&
        tstream_shutdown_done(dl->backend))
        tstream_close(dl->backend, 0);
}

static void on_linger_timeout(uv_timer_t *t)
{
    datalink_t *dl = t->data;
    dl_close_streams(dl, 0);
}

static void dl_evaluate(datalink_t *dl)
{
    if (dl->finished) {
        if (dl->lingering)
            dl_linger_check(dl);
        return;
    }
    /* DESIGN §4: complete when the pump of the transfer's direction ended
     * clean and its sink shut down after the last byte. */
    if (dl->direction == DIR_UNKNOWN || !pump_complete(dl->direction == DIR_UPLOAD ? &dl->up : &dl->down))
        return;
    dl->finished = 1;
    dl->lingering = 1;
    dl_close_pumps(dl);
    dl_account(dl, 1);
    LOG_DEBUG(dl->o.session_id, dl->o.peer, "data transfer complete: %llu bytes to backend, %llu to client",
              (unsigned long long)dl->up.bytes, (unsigned long long)dl->down.bytes);
    if (dl->client)
        tstream_shutdown(dl->client);
    if (dl->backend)
        tstream_shutdown(dl->backend);
    uv_timer_start(&dl->timer, on_linger_timeout, DATALINK_LINGER_MS, 0);
    dl_report(dl, 0, NULL, 0);
    dl_linger_check(dl);
}

/* Both ends are connected: from now on the timer watches for stalls. */
static void dl_check_running(datalink_t *dl)
{
    if (dl->running || dl->finished || !dl->client_up || !dl->backend_up)
        return;
    dl->running = 1;
    uv_timer_start(&dl->timer, on_stall_tick, 1000, 1000);
}

/* A write toward one side failed after its peer had ended reading (it
 * half-closed, then went away): the transfer cannot complete. */
static void dl_write_failed(datalink_t *dl, int backend_side, const char *reason)
{
    if (dl->finished) {
        dl_evaluate(dl);
        return;
    }
    LOG_INFO(dl->o.session_id, dl->o.peer, "%s data connection failed while sending: %s",
             backend_side ? "backend" : "client", reason);
    dl_fail_side(dl, 426, backend_side ? "Server data connection failed; transfer aborted"
                                       : "Data connection closed abnormally; transfer aborted",
                 backend_side);
}

/* ---- client side ---------------------------------------------------------------- */

static void client_on_handshake(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    const char *how = "";
    const char *refusal = datatls_judge(&dl->o.tls, s, &how);
    tls_engine_t *e = tstream_engine(s);
    dl->tls_version = tls_engine_version(e);
    dl->tls_cipher = tls_engine_cipher(e);
    dl->tls_resumed = tls_engine_session_reused(e);
    LOG_DEBUG(dl->o.session_id, dl->o.peer, "data TLS established (%s, %s)", tstream_tls_desc(s), how);
    if (refusal) {
        /* SECURITY: data-connection theft with a TLS session of its own (RFC 4217 §10.2). */
        LOG_WARN(dl->o.session_id, dl->o.peer,
                 "SECURITY: data TLS did not resume the control session (%s); refused", refusal);
        dl_fail(dl, 522, "Data connection must resume the control connection's TLS session");
    }
}

static void client_on_data(tstream_t *s, const char *buf, size_t len)
{
    datalink_t *dl = tstream_userdata(s);
    int rc = pump_push(&dl->up, buf, len);
    if (rc == FG_RANGE) {
        /* SECURITY: policy.max_upload_bytes: the backend's data connection is
         * reset (dl_fail), so it cannot keep the cut file as complete. */
        METRIC_INC(dl->o.metrics, upload_limit_cuts);
        LOG_WARN(dl->o.session_id, dl->o.peer, "upload cut at %llu bytes: over the %llu byte limit",
                 (unsigned long long)(dl->up.bytes + len), (unsigned long long)dl->o.max_upload_bytes);
        dl_fail(dl, 552, "Exceeded storage allocation: upload limit reached; transfer aborted");
        return;
    }
    if (rc != FG_OK)
        dl_fail_side(dl, 426, "Connection closed; transfer aborted", 1);
}

static void client_on_end(tstream_t *s, tstream_end_t how, const char *reason)
{
    datalink_t *dl = tstream_userdata(s);
    /* Policy "upload_requires_close_notify": false — a bare FIN after the
     * handshake ends the upload (vsftpd's strict_ssl_read_eof=NO). */
    if (how == TSTREAM_END_TRUNCATED && dl->o.accept_upload_without_close_notify && tstream_handshake_done(s) &&
        dl->direction != DIR_DOWNLOAD && !tstream_eof_was_reset(s)) {
        LOG_INFO(dl->o.session_id, dl->o.peer, "upload ended without TLS close_notify; accepted by policy");
        how = TSTREAM_END_CLEAN;
    }
    pump_source_ended(&dl->up, how);
    if (dl->finished) {
        dl_evaluate(dl);
        return;
    }
    if (how == TSTREAM_END_TLS_FAILED && !tstream_handshake_done(s)) {
        LOG_WARN(dl->o.session_id, dl->o.peer, "data TLS handshake failed: %s", reason);
        dl_fail(dl, 522, "Data connection TLS handshake failed");
        return;
    }
    if (how == TSTREAM_END_CLEAN) {
        dl_evaluate(dl);
        return;
    }
    if (how == TSTREAM_END_TRUNCATED && dl->direction == DIR_DOWNLOAD)
        return; /* the client stops sending; what we send it still counts */
    LOG_INFO(dl->o.session_id, dl->o.peer, "client data connection ended badly: %s", reason);
    if (how == TSTREAM_END_TLS_FAILED)
        METRIC_INC(dl->o.metrics, data_tls_failures); /* mid-transfer: a TLS failure, answered as a broken transfer */
    dl_fail(dl, 426, "Data connection closed abnormally; transfer aborted");
}

static void client_on_write_failed(tstream_t *s, const char *reason)
{
    dl_write_failed(tstream_userdata(s), 0, reason);
}

static void client_on_drain(tstream_t *s)
{
    pump_sink_drained(&((datalink_t *)tstream_userdata(s))->down);
}

static void client_on_shutdown(tstream_t *s, int status)
{
    datalink_t *dl = tstream_userdata(s);
    if (status < 0 && !dl->finished) {
        dl_fail(dl, 426, "Data connection to client failed; transfer aborted");
        return;
    }
    pump_sink_shut(&dl->down);
    dl_evaluate(dl);
}

static void client_on_close(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    dl->client = NULL;
    pump_stream_gone(&dl->up, s);
    pump_stream_gone(&dl->down, s);
    if (!dl->finished)
        dl_fail(dl, 426, "Data connection closed; transfer aborted");
    else if (dl->lingering && dl->backend && tstream_ended(dl->backend))
        tstream_close(dl->backend, 0);
    dl_release_handle(dl);
}

static const tstream_cbs_t client_cbs = {
    .on_handshake = client_on_handshake,
    .on_data = client_on_data,
    .on_end = client_on_end,
    .on_write_failed = client_on_write_failed,
    .on_drain = client_on_drain,
    .on_shutdown = client_on_shutdown,
    .on_close = client_on_close,
};

/* The client endpoint is connected (accepted, or our dial to it connected). */
static void dl_client_up(datalink_t *dl, tstream_t *cs)
{
    tstream_set_userdata(cs, &client_cbs, dl);
    dl->client = cs;
    pump_set_source(&dl->up, cs);
    dl->handles++;
    if (dl->o.tls.ctx && datatls_start(&dl->o.tls, cs) != FG_OK) {
        dl_fail(dl, 425, "Cannot start TLS on the data connection");
        return;
    }
    dl->client_up = 1;
    uv_tcp_nodelay(tstream_tcp(cs), 1);
    if (tstream_start_read(cs) != FG_OK) {
        dl_fail(dl, 425, "Cannot open data connection");
        return;
    }
    if (pump_attach_sink(&dl->down, cs) != FG_OK) {
        dl_fail(dl, 426, "Connection closed; transfer aborted");
        return;
    }
    dl_maybe_connect_backend(dl);
    dl_check_running(dl);
}

/* Active client (PORT/EPRT): RFC 959 §3.2 — the server side dials the
 * client's port once the transfer command is in. */
static void dl_dial_client(datalink_t *dl)
{
    dataopen_failure_t f;
    if (!dl->finished && dataopen_dial(dl->open, DATAOPEN_CLIENT, &f) != FG_OK)
        dl_fail_side(dl, f.code, f.text, f.backend_failed);
}

/* ---- backend side --------------------------------------------------------------- */

static void backend_on_data(tstream_t *s, const char *buf, size_t len)
{
    datalink_t *dl = tstream_userdata(s);
    if (pump_push(&dl->down, buf, len) != FG_OK)
        dl_fail(dl, 426, "Connection closed; transfer aborted");
}

static void backend_on_end(tstream_t *s, tstream_end_t how, const char *reason)
{
    datalink_t *dl = tstream_userdata(s);
    pump_source_ended(&dl->down, how);
    if (dl->finished) {
        dl_evaluate(dl);
        return;
    }
    if (how != TSTREAM_END_CLEAN) {
        LOG_INFO(dl->o.session_id, dl->o.peer, "backend data connection failed: %s", reason);
        dl_fail_side(dl, 426, "Server data connection failed; transfer aborted", 1);
        return;
    }
    dl_evaluate(dl);
}

static void backend_on_write_failed(tstream_t *s, const char *reason)
{
    dl_write_failed(tstream_userdata(s), 1, reason);
}

static void backend_on_drain(tstream_t *s)
{
    pump_sink_drained(&((datalink_t *)tstream_userdata(s))->up);
}

static void backend_on_shutdown(tstream_t *s, int status)
{
    datalink_t *dl = tstream_userdata(s);
    if (status < 0 && !dl->finished) {
        dl_fail_side(dl, 426, "Data connection to server failed; transfer aborted", 1);
        return;
    }
    pump_sink_shut(&dl->up);
    dl_evaluate(dl);
}

static void backend_on_close(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    dl->backend = NULL;
    pump_stream_gone(&dl->up, s);
    pump_stream_gone(&dl->down, s);
    if (!dl->finished)
        dl_fail_side(dl, 426, "Server data connection closed; transfer aborted", 1);
    else if (dl->lingering && dl->client && tstream_ended(dl->client) && tstream_shutdown_done(dl->client))
        tstream_close(dl->client, 0);
    dl_release_handle(dl);
}

static const tstream_cbs_t backend_cbs = {
    .on_data = backend_on_data,
    .on_end = backend_on_end,
    .on_write_failed = backend_on_write_failed,
    .on_drain = backend_on_drain,
    .on_shutdown = backend_on_shutdown,
    .on_close = backend_on_close,
};

static void dl_guard_upload(datalink_t *dl);

/* The backend endpoint is connected (our dial, or accepted after PORT/EPRT). */
static void dl_backend_up(datalink_t *dl, tstream_t *bs)
{
    tstream_set_userdata(bs, &backend_cbs, dl);
    dl->backend = bs;
    pump_set_source(&dl->down, bs);
    dl->handles++;
    dl_guard_upload(dl);
    dl->backend_up = 1;
    uv_tcp_nodelay(tstream_tcp(bs), 1);
    if (tstream_start_read(bs) != FG_OK) {
        dl_fail_side(dl, 425, "Cannot open data connection to the server", 1);
        return;
    }
    if (pump_attach_sink(&dl->up, bs) != FG_OK) {
        dl_fail_side(dl, 426, "Connection closed; transfer aborted", 1);
        return;
    }
    dl_check_running(dl);
}

/* SECURITY: an upload whose end the backend has not been told of is reset if
 * ftpsgate dies (kill -9, OOM), so the server records a failure, never a
 * complete file (tstream_reset_if_killed). */
static void dl_guard_upload(datalink_t *dl)
{
    if (dl->direction != DIR_UPLOAD || dl->finished)
        return;
    if (dl->backend)
        tstream_reset_if_killed(dl->backend);
    dataopen_guard_upload(dl->open); /* a dial still connecting */
}

/* The backend's passive port is dialled only once the real client is here, so
 * a refused or absent client never reaches the backend. */
static void dl_maybe_connect_backend(datalink_t *dl)
{
    dataopen_failure_t f;
    if (dl->client_up && !dl->finished && dataopen_dial(dl->open, DATAOPEN_BACKEND, &f) != FG_OK)
        dl_fail_side(dl, f.code, f.text, f.backend_failed);
}

/* A connection is here (dataopen.h). */
static void on_open_connected(void *owner, dataopen_side_t side, tstream_t *st)
{
    datalink_t *dl = owner;
    if (dl->finished || (side == DATAOPEN_CLIENT ? dl->client : dl->backend)) {
        tstream_close(st, 1);
        return;
    }
    if (side == DATAOPEN_CLIENT)
        dl_client_up(dl, st);
    else
        dl_backend_up(dl, st);
}

static void on_open_failed(void *owner, const dataopen_failure_t *f)
{
    dl_fail_side(owner, f->code, f->text, f->backend_failed);
}

static void on_open_closed(void *owner)
{
    datalink_t *dl = owner;
    dl->open = NULL;
    dl_release_handle(dl);
}

/* ---- timers -------------------------------------------------------------------------- */

/* Once a second while the transfer runs: a peer that neither sends nor reads
 * for stall_timeout_s seconds ends it, so a stuck transfer cannot pin a
 * session and its buffers forever. */
static void on_stall_tick(uv_timer_t *t)
{
    datalink_t *dl = t->data;
    uint64_t mark = dl->up.bytes + dl->down.bytes;
    if (dl->client)
        mark += tstream_queued(dl->client);
    if (dl->backend)
        mark += tstream_queued(dl->backend);
    if (mark != dl->progress_mark) {
        dl->progress_mark = mark;
        dl->stalled_s = 0;
        return;
    }
    if (++dl->stalled_s >= dl->o.stall_timeout_s) {
        LOG_INFO(dl->o.session_id, dl->o.peer, "data transfer stalled for %u s", dl->stalled_s);
        dl_fail(dl, 426, "Transfer stalled; aborted");
    }
}

static void on_connect_timeout(uv_timer_t *t)
{
    datalink_t *dl = t->data;
    dl_fail(dl, 425, "Data connection timed out");
}

/* ---- public ------------------------------------------------------------------------------ */

/* The two ends as the modes say, for dataopen.h. */
static int dl_open(datalink_t *dl)
{
    static const dataopen_cbs_t open_cbs = {
        .on_connected = on_open_connected,
        .on_failed = on_open_failed,
        .on_closed = on_open_closed,
    };
    const datalink_opts_t *o = &dl->o;
    dataopen_end_t client = {.transparent = o->transparent}, backend = {0};
    if (o->client_mode == DL_CLIENT_PASSIVE) {
        /* TPROXY: the passive port listens on the server's address, not ours. */
        client.addr = o->listen_addr;
        client.pool = o->pool;
        client.has_expect = o->check_peer_ip;
        client.expect = o->client_addr;
    } else {
        client.dial = 1;
        client.addr = o->client_target;
        client.has_source = o->has_active_source;
        client.source = o->active_source;
    }
    if (o->backend_mode == DL_BACKEND_LISTEN) {
        /* SECURITY: only the backend itself may connect to the PORT we give it.
         * With source-IP transparency the port is on the client's address. */
        backend.addr = o->backend_local;
        backend.has_expect = 1;
        backend.expect = o->backend_addr;
        backend.transparent = o->has_backend_source;
    } else {
        backend.dial = 1;
        backend.addr = o->backend_addr;
        /* Source-IP transparency: the backend sees the client's address (README). */
        backend.has_source = o->has_backend_source && o->backend_source.ss_family == o->backend_addr.ss_family;
        backend.source = o->backend_source;
        netaddr_set_port((struct sockaddr *)&backend.source, 0);
        backend.transparent = 1;
    }
    int rc = dataopen_new(dl->loop, &client, &backend, o->metrics, o->session_id, o->peer, &open_cbs, dl, &dl->open);
    if (rc == FG_OK)
        dl->handles++;
    return rc;
}

int datalink_new(uv_loop_t *loop, const datalink_opts_t *opts, datalink_done_cb cb, void *owner,
                 datalink_t **out)
{
    datalink_t *dl = calloc(1, sizeof *dl);
    if (!dl)
        return FG_NOMEM;
    dl->loop = loop;
    dl->cb = cb;
    dl->owner = owner;
    dl->o = *opts;
    dl->direction = DIR_UNKNOWN;
    pump_init(&dl->up, loop, dl);
    pump_init(&dl->down, loop, dl);
    uv_timer_init(loop, &dl->timer);
    dl->timer.data = dl;
    dl->handles = 3; /* the timer and the pumps' */
    pump_set_limits(&dl->up, dl->o.rate_limit, dl->o.max_upload_bytes);
    pump_set_limits(&dl->down, dl->o.rate_limit, 0);
    int rc = dl_open(dl);
    if (rc != FG_OK) {
        dl->detached = 1;
        dl->finished = 1;
        dl_close_pumps(dl);
        dl_maybe_free(dl);
        return rc;
    }
    /* A passive port waits for its client from now; active ends start at the command. */
    if (dl->o.client_mode == DL_CLIENT_PASSIVE)
        uv_timer_start(&dl->timer, on_connect_timeout, dl->o.connect_timeout_ms, 0);
    *out = dl;
    return FG_OK;
}

uint16_t datalink_client_port(const datalink_t *dl)
{
    return dataopen_client_port(dl->open);
}

const struct sockaddr *datalink_backend_listen_addr(const datalink_t *dl)
{
    return dataopen_backend_listen_addr(dl->open);
}

void datalink_set_backend_port(datalink_t *dl, uint16_t port)
{
    dataopen_set_port(dl->open, port);
    dl_maybe_connect_backend(dl);
}

void datalink_set_direction(datalink_t *dl, int upload)
{
    dl->direction = upload ? DIR_UPLOAD : DIR_DOWNLOAD;
    dl_guard_upload(dl);
    if (dl->failed)
        dataopen_poke_backend(dl->open);
    if (dl->finished)
        return;
    /* A client that connected and then failed before the command: report now. */
    if (dl->direction == DIR_UPLOAD && dl->up.ended && !dl->up.clean) {
        dl_fail(dl, 426, "Data connection closed abnormally; transfer aborted");
        return;
    }
    if (!dl->running && (dl->o.client_mode == DL_CLIENT_ACTIVE || dl->o.backend_mode == DL_BACKEND_LISTEN))
        uv_timer_start(&dl->timer, on_connect_timeout, dl->o.connect_timeout_ms, 0);
    if (dl->o.client_mode == DL_CLIENT_ACTIVE)
        dl_dial_client(dl);
    dl_evaluate(dl);
}

int datalink_tls_info(const datalink_t *dl, const char **version, const char **cipher, int *resumed)
{
    if (!dl->tls_version)
        return 0;
    *version = dl->tls_version;
    *cipher = dl->tls_cipher;
    *resumed = dl->tls_resumed;
    return 1;
}

void datalink_progress(const datalink_t *dl, uint64_t *to_client, uint64_t *to_backend)
{
    *to_client = dl->down.bytes;
    *to_backend = dl->up.bytes;
}

void datalink_detach(datalink_t *dl)
{
    if (!dl || dl->detached)
        return;
    dl->detached = 1;
    dl->cb = NULL;
    dl->owner = NULL;
    defer_cancel(&dl->report);
    if (!dl->finished) {
        dl->finished = 1;
        dl_close_pumps(dl);
        if (dl->direction != DIR_UNKNOWN) /* ABOR, or the session ended mid-transfer */
            dl_account(dl, 0);
        dl_close_streams(dl, 1);
    }
    dataopen_close(dl->open);
    dl_maybe_free(dl);
}
