#include "tstream.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "defer.h"
#include "fgerr.h"
#include "heldq.h"
#include "tls_engine.h"

#define TSTREAM_READ_CHUNK (64u * 1024u)
#define TSTREAM_PLAIN_CHUNK (16u * 1024u) /* one TLS record at most */
#define TSTREAM_PLAIN_BATCH (4u * TSTREAM_PLAIN_CHUNK)
/* A 64 KiB read becomes four records of 16 KiB plus their overhead (22 bytes
 * each in TLS 1.3, 29 with TLS 1.2's GCM): room for that, so that they leave
 * in one write instead of 65,536 bytes and a second write of the rest. */
#define TSTREAM_CIPHER_CHUNK (64u * 1024u + 1024u)
#define TSTREAM_LEFTOVER_MAX (16u * 1024u) /* clear bytes right after a close_notify (CCC, REIN) */

typedef struct {
    uv_write_t req;
    tstream_t *stream;
    size_t len;
    char data[];
} write_req_t;

struct tstream {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    defer_t later; /* what is reported from the loop (stream_run_later) */
    const tstream_cbs_t *cbs;
    void *userdata;
    tls_engine_t *tls;
    heldq_t held;   /* writes made before the stream can carry them */
    void (*on_tls_stopped)(tstream_t *s);
    char *leftover; /* bytes after the peer's close_notify, kept until on_tls_stopped ran */
    size_t leftover_len;
    size_t queued;
    int shutdown_status;
    const char *fail_reason; /* static text */
    unsigned connected : 1, reading : 1, paused : 1, ended : 1, read_eof : 1, closing : 1,
        shutdown_wanted : 1, shutdown_started : 1, shutdown_done : 1, close_notify_queued : 1,
        handshake_reported : 1, in_deliver : 1, above_high : 1, read_started : 1, write_failed : 1,
        tls_stopped_pending : 1, later_fail : 1, later_shutdown : 1, later_deliver : 1, abortive : 1, eof_was_reset : 1;
    char desc[96];
};

/* SO_LINGER {1, 0}: the kernel resets the connection when the socket is
 * closed, also by the process's death, instead of ending it with a FIN. */
static void set_abortive(tstream_t *s, int on)
{
    uv_os_fd_t fd;
    if (s->abortive == (unsigned)on || uv_fileno((const uv_handle_t *)&s->tcp, &fd) != 0)
        return;
    struct linger l = {.l_onoff = on, .l_linger = 0};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0)
        s->abortive = on ? 1 : 0;
}

/* libuv reports UV_EOF without reading when poll() says POLLHUP after a short
 * read, so a reset can arrive as an end of stream; the socket's pending error
 * tells them apart (a FIN leaves none, a reset leaves ECONNRESET). Without it a
 * clear upload cut by a reset would pass for the whole file. */
static int pending_socket_error(tstream_t *s)
{
    uv_os_fd_t fd;
    int err = 0;
    socklen_t len = sizeof err;
    if (uv_fileno((const uv_handle_t *)&s->tcp, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return 0;
    return err;
}

/* libuv calls read_cb synchronously after alloc_cb and the bytes are consumed
 * before read_cb returns (copied into the sink's queue or the TLS engine), so
 * one read buffer per thread serves every stream of that thread's loop. */
static _Thread_local char read_scratch[TSTREAM_READ_CHUNK];
/* The same holds for decrypted bytes: on_data consumes them before it
 * returns, and no delivery runs inside another (deliveries that an API call
 * makes due run from the loop, defer.h), so one decrypt buffer per thread
 * serves every TLS stream instead of 16 KiB per connection. */
static _Thread_local char plain_scratch[TSTREAM_PLAIN_BATCH];
static _Thread_local int plain_in_use;
/* Ciphertext on its way out: written from here straight to the socket, or
 * copied into a write request when the socket cannot take it now. */
static _Thread_local char cipher_scratch[TSTREAM_CIPHER_CHUNK];

static void stream_deliver(tstream_t *s);
static void stream_try_shutdown(tstream_t *s);
static void stream_update_reading(tstream_t *s);
static void stream_run_later(defer_t *d);

static void stream_later(tstream_t *s)
{
    defer_call(&s->later, stream_run_later);
}

tstream_t *tstream_new(uv_loop_t *loop, const tstream_cbs_t *cbs, void *userdata)
{
    tstream_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (uv_tcp_init(loop, &s->tcp) != 0) {
        free(s);
        return NULL;
    }
    s->tcp.data = s;
    s->cbs = cbs;
    s->userdata = userdata;
    return s;
}

void *tstream_userdata(const tstream_t *s)
{
    return s->userdata;
}

void tstream_set_userdata(tstream_t *s, const tstream_cbs_t *cbs, void *userdata)
{
    s->cbs = cbs;
    s->userdata = userdata;
}

uv_tcp_t *tstream_tcp(tstream_t *s)
{
    return &s->tcp;
}

uv_stream_t *tstream_uv(tstream_t *s)
{
    return (uv_stream_t *)&s->tcp;
}

static int stream_ready(const tstream_t *s)
{
    return s->connected && (!s->tls || s->handshake_reported);
}

static void stream_end(tstream_t *s, tstream_end_t how, const char *reason)
{
    if (s->ended || s->closing)
        return;
    s->ended = 1;
    stream_update_reading(s);
    if (s->cbs->on_end)
        s->cbs->on_end(s, how, reason);
}

static void drop_held(tstream_t *s)
{
    s->queued -= s->held.bytes;
    heldq_clear(&s->held);
}

/* A write (or the TLS output behind it) failed: nothing more reaches the
 * peer. Reported from the loop, once: as the end of reading when reading
 * is still on, else as on_write_failed. */
static void stream_write_failed(tstream_t *s, const char *reason)
{
    if (s->write_failed)
        return;
    s->write_failed = 1;
    s->fail_reason = reason;
    drop_held(s);
    s->later_fail = 1;
    stream_later(s);
}

static void on_write_done(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    tstream_t *s = w->stream;
    s->queued -= w->len;
    free(w);
    if (s->closing)
        return;
    if (status < 0) {
        stream_write_failed(s, uv_strerror(status));
        return;
    }
    if (s->above_high && s->queued <= TSTREAM_LOW_MARK) {
        s->above_high = 0;
        if (s->cbs->on_drain)
            s->cbs->on_drain(s);
        if (s->closing)
            return;
    }
    stream_try_shutdown(s);
}

static int stream_uv_write(tstream_t *s, write_req_t *w)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    w->stream = s;
    s->queued += w->len;
    int rc = uv_write(&w->req, tstream_uv(s), &b, 1, on_write_done);
    if (rc != 0) {
        s->queued -= w->len;
        free(w);
        stream_write_failed(s, uv_strerror(rc));
        return FG_IO;
    }
    return FG_OK;
}

/* Writes data: straight to the socket when nothing is queued and it takes it
 * now (no copy, no request), the rest copied into a write request that
 * libuv owns until its callback. FG_OK, FG_NOMEM or FG_IO. */
static int stream_write_out(tstream_t *s, const char *data, size_t len)
{
    if (s->queued == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write(tstream_uv(s), &b, 1);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            stream_write_failed(s, uv_strerror(n));
            return FG_IO;
        }
        if (len == 0)
            return FG_OK;
    }
    write_req_t *w = malloc(sizeof *w + len);
    if (!w)
        return FG_NOMEM;
    memcpy(w->data, data, len);
    w->len = len;
    return stream_uv_write(s, w);
}

/* Sends the ciphertext the engine has produced. */
static int stream_flush_tls(tstream_t *s)
{
    size_t got;
    while (!s->closing && !s->write_failed && tls_engine_pending_out(s->tls) > 0) {
        got = tls_engine_take_out(s->tls, cipher_scratch, sizeof cipher_scratch);
        if (got == 0)
            break;
        int rc = stream_write_out(s, cipher_scratch, got);
        if (rc == FG_NOMEM) /* never a FIN where TLS records (a close_notify) were due */
            stream_write_failed(s, "out of memory");
        if (rc != FG_OK)
            return rc;
    }
    return s->write_failed ? FG_IO : FG_OK;
}

static int stream_send_now(tstream_t *s, const void *data, size_t len)
{
    if (s->tls) {
        int rc = tls_engine_write(s->tls, data, len);
        if (rc != FG_OK)
            return rc;
        return stream_flush_tls(s);
    }
    return stream_write_out(s, data, len);
}

static void stream_flush_held(tstream_t *s)
{
    while (!heldq_empty(&s->held) && stream_ready(s) && !s->closing && !s->write_failed) {
        heldq_chunk_t *h = heldq_take(&s->held);
        s->queued -= h->len;
        int rc = stream_send_now(s, h->data, h->len);
        free(h);
        if (rc != FG_OK) {
            stream_write_failed(s, fg_strerror(rc));
            return;
        }
    }
    stream_try_shutdown(s);
}

int tstream_write(tstream_t *s, const void *data, size_t len)
{
    if (s->closing || s->shutdown_wanted)
        return FG_STATE;
    if (s->write_failed)
        return FG_IO;
    if (len == 0)
        return FG_OK;
    int rc;
    if (!stream_ready(s) || !heldq_empty(&s->held)) {
        if (heldq_push(&s->held, data, len) != FG_OK)
            return FG_NOMEM;
        s->queued += len;
        rc = FG_OK;
    } else {
        rc = stream_send_now(s, data, len);
    }
    if (s->queued > TSTREAM_HIGH_MARK)
        s->above_high = 1;
    return rc;
}

size_t tstream_queued(const tstream_t *s)
{
    return s->queued;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_scratch, sizeof read_scratch);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    tstream_t *s = stream->data;
    if (s->closing || s->ended)
        return;
    if (nread > 0) {
        if (s->tls) {
            if (tls_engine_feed(s->tls, buf->base, (size_t)nread) != FG_OK) {
                stream_end(s, TSTREAM_END_RESET, "out of memory");
                return;
            }
            stream_deliver(s);
        } else if (s->cbs->on_data) {
            s->cbs->on_data(s, buf->base, (size_t)nread);
        }
        return;
    }
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
        int err = pending_socket_error(s);
        if (err != 0 && !s->tls) {
            stream_end(s, TSTREAM_END_RESET, strerror(err));
            return;
        }
        /* Under TLS, records received before the reset may still wait for a
         * paused stream (a close_notify among them still ends it cleanly), and
         * an end without close_notify is a truncation anyway: the reset is only
         * noted (tstream_eof_was_reset). */
        if (err != 0)
            s->eof_was_reset = 1;
        s->read_eof = 1;
        stream_update_reading(s);
        if (s->tls) {
            tls_engine_feed_eof(s->tls);
            stream_deliver(s);
        } else {
            stream_end(s, TSTREAM_END_CLEAN, "end of stream");
        }
        return;
    }
    stream_end(s, TSTREAM_END_RESET, uv_strerror((int)nread));
}

static void stream_update_reading(tstream_t *s)
{
    int want = s->read_started && !s->paused && !s->ended && !s->read_eof && !s->closing &&
               !s->tls_stopped_pending;
    if (want && !s->reading) {
        int rc = uv_read_start(tstream_uv(s), on_alloc, on_read);
        if (rc == 0) {
            s->reading = 1;
        } else {
            /* A stream that cannot read is dead: said from the loop. */
            stream_write_failed(s, uv_strerror(rc));
        }
    } else if (!want && s->reading) {
        uv_read_stop(tstream_uv(s));
        s->reading = 0;
    }
}

/* The peer answered our close_notify: drop TLS, keep the connection. The
 * owner hears it from the loop (tls_stopped_done); until then nothing is
 * read, so bytes stay in order. */
static void stream_tls_stopped(tstream_t *s)
{
    /* Bytes after the peer's close_notify are clear text (a command sent right
     * after CCC) or the next ClientHello (implicit REIN): small, kept in order. */
    char *keep = malloc(TSTREAM_LEFTOVER_MAX);
    size_t n = 0, got;
    if (!keep) {
        stream_end(s, TSTREAM_END_RESET, "out of memory");
        return;
    }
    while (n < TSTREAM_LEFTOVER_MAX &&
           (got = tls_engine_take_leftover(s->tls, keep + n, TSTREAM_LEFTOVER_MAX - n)) > 0)
        n += got;
    char more;
    if (n == TSTREAM_LEFTOVER_MAX && tls_engine_take_leftover(s->tls, &more, 1) > 0) {
        /* More than a few commands' worth: end the stream rather than lose bytes. */
        free(keep);
        stream_end(s, TSTREAM_END_RESET, "too much data right after TLS close_notify");
        return;
    }
    tls_engine_free(s->tls);
    s->tls = NULL;
    s->handshake_reported = 0;
    s->close_notify_queued = 0;
    s->leftover = keep;
    s->leftover_len = n;
    s->tls_stopped_pending = 1;
    stream_update_reading(s);
    stream_later(s);
}

static void tls_stopped_done(tstream_t *s)
{
    void (*cb)(tstream_t *) = s->on_tls_stopped;
    char *keep = s->leftover;
    size_t n = s->leftover_len;
    s->on_tls_stopped = NULL;
    s->leftover = NULL;
    s->leftover_len = 0;
    s->tls_stopped_pending = 0;
    cb(s);
    if (!s->closing && n > 0) {
        /* After REIN on an implicit session the callback started a new TLS
         * engine: what followed the close_notify is the next ClientHello. */
        if (s->tls) {
            if (tls_engine_feed(s->tls, keep, n) != FG_OK)
                stream_end(s, TSTREAM_END_RESET, "out of memory");
            else
                stream_deliver(s);
        } else if (s->cbs->on_data) {
            s->cbs->on_data(s, keep, n);
        }
    }
    free(keep);
    if (!s->closing)
        stream_update_reading(s);
}

static void stream_deliver(tstream_t *s)
{
    if (s->in_deliver || !s->tls)
        return;
    assert(!plain_in_use); /* plain_scratch: one delivery at a time per thread */
    plain_in_use = 1;
    s->in_deliver = 1;
    while (!s->closing && !s->ended && !s->paused && s->tls) {
        size_t got = 0;
        int rc = tls_engine_read(s->tls, plain_scratch, TSTREAM_PLAIN_CHUNK, &got);
        /* Once the handshake was reported, the records already received are
         * decrypted together, up to 64 KiB, and handed on in one piece: one
         * write toward the other side instead of one per record (an upload's
         * backend writes were 16 KiB each). What stops the batch (no more
         * input, close_notify, a failure) is sticky in the engine: the next
         * turn of the loop reads it again, after this data went out. */
        while (rc == FG_OK && s->handshake_reported && got + TSTREAM_PLAIN_CHUNK <= TSTREAM_PLAIN_BATCH) {
            size_t more = 0;
            if (tls_engine_read(s->tls, plain_scratch + got, TSTREAM_PLAIN_CHUNK, &more) != FG_OK)
                break;
            got += more;
        }
        /* Handshake replies and session tickets are produced while reading. */
        stream_flush_tls(s);
        if (s->closing)
            break;
        if (!s->handshake_reported && tls_engine_handshake_done(s->tls)) {
            s->handshake_reported = 1;
            snprintf(s->desc, sizeof s->desc, "%s %s", tls_engine_version(s->tls),
                     tls_engine_cipher(s->tls));
            if (s->cbs->on_handshake)
                s->cbs->on_handshake(s);
            if (s->closing)
                break;
            stream_flush_held(s);
            if (s->closing || s->ended)
                break;
        }
        if (rc == FG_OK) {
            if (s->cbs->on_data)
                s->cbs->on_data(s, plain_scratch, got);
            continue;
        }
        if (rc == FG_NEED_MORE)
            break;
        if (rc == FG_CLOSED) {
            if (s->on_tls_stopped && !s->tls_stopped_pending)
                stream_tls_stopped(s);
            else
                stream_end(s, TSTREAM_END_CLEAN, "TLS close_notify");
            break;
        }
        stream_flush_tls(s); /* the alert, if any */
        tstream_end_t how = tls_engine_failure(s->tls) == TLS_FAIL_TRUNCATED
                                ? TSTREAM_END_TRUNCATED
                                : TSTREAM_END_TLS_FAILED;
        stream_end(s, how, tls_engine_reason(s->tls));
        break;
    }
    s->in_deliver = 0;
    plain_in_use = 0;
    if (!s->closing)
        stream_update_reading(s);
}

/* Everything a call of this API made due, reported from the loop. */
static void stream_run_later(defer_t *d)
{
    tstream_t *s = (tstream_t *)((char *)d - offsetof(tstream_t, later));
    if (s->closing)
        return;
    if (s->later_fail) {
        s->later_fail = 0;
        if (!s->ended)
            stream_end(s, TSTREAM_END_RESET, s->fail_reason);
        else if (s->cbs->on_write_failed)
            s->cbs->on_write_failed(s, s->fail_reason);
        if (s->closing)
            return;
    }
    if (s->later_shutdown) {
        s->later_shutdown = 0;
        if (s->cbs->on_shutdown)
            s->cbs->on_shutdown(s, s->shutdown_status);
        if (s->closing)
            return;
    }
    if (s->tls_stopped_pending) {
        tls_stopped_done(s);
        if (s->closing)
            return;
    }
    if (s->later_deliver) {
        s->later_deliver = 0;
        stream_deliver(s);
    }
}

int tstream_inject_tls(tstream_t *s, const void *data, size_t len)
{
    if (!s->tls)
        return FG_STATE;
    if (len == 0 || s->closing || s->ended)
        return FG_OK;
    if (tls_engine_feed(s->tls, data, len) != FG_OK)
        return FG_NOMEM;
    s->later_deliver = 1;
    stream_later(s);
    return FG_OK;
}

int tstream_start_read(tstream_t *s)
{
    s->read_started = 1;
    stream_update_reading(s);
    return s->reading || s->ended || s->paused || s->read_eof ? FG_OK : FG_IO;
}

void tstream_pause(tstream_t *s)
{
    s->paused = 1;
    stream_update_reading(s);
}

void tstream_resume(tstream_t *s)
{
    if (!s->paused)
        return;
    s->paused = 0;
    if (s->closing)
        return;
    stream_update_reading(s);
    if (s->tls) {
        /* Plaintext already decrypted or buffered comes first, from the loop. */
        s->later_deliver = 1;
        stream_later(s);
    }
}

void tstream_set_connected(tstream_t *s)
{
    s->connected = 1;
    stream_flush_held(s);
}

static void on_connected(uv_connect_t *req, int status)
{
    tstream_t *s = req->handle->data;
    if (s->closing)
        return;
    if (status == 0)
        tstream_set_connected(s);
    if (s->cbs->on_connect)
        s->cbs->on_connect(s, status);
}

int tstream_connect(tstream_t *s, const struct sockaddr *addr)
{
    int rc = uv_tcp_connect(&s->connect_req, &s->tcp, addr, on_connected);
    return rc == 0 ? FG_OK : FG_IO;
}

int tstream_start_tls(tstream_t *s, SSL_CTX *ctx)
{
    if (s->tls)
        return FG_STATE;
    s->tls = tls_engine_new(ctx);
    if (!s->tls)
        return FG_NOMEM;
    return FG_OK;
}

int tstream_stop_tls(tstream_t *s, void (*on_tls_stopped)(tstream_t *s))
{
    if (!s->tls || !s->handshake_reported || s->on_tls_stopped || s->closing)
        return FG_STATE;
    if (tls_engine_shutdown(s->tls) != FG_OK)
        return FG_TLS;
    s->on_tls_stopped = on_tls_stopped;
    stream_flush_tls(s);
    return FG_OK;
}

int tstream_tls_stopping(const tstream_t *s)
{
    return s->on_tls_stopped != NULL;
}

int tstream_is_tls(const tstream_t *s)
{
    return s->tls != NULL;
}

int tstream_handshake_done(const tstream_t *s)
{
    return s->tls && s->handshake_reported;
}

struct tls_engine *tstream_engine(tstream_t *s)
{
    return s->tls;
}

const char *tstream_tls_desc(tstream_t *s)
{
    if (!s->tls)
        return "clear";
    return s->handshake_reported ? s->desc : "TLS handshaking";
}

static void on_shutdown_done(uv_shutdown_t *req, int status)
{
    tstream_t *s = req->handle->data;
    s->shutdown_done = 1;
    if (s->closing)
        return;
    if (s->cbs->on_shutdown)
        s->cbs->on_shutdown(s, status);
}

static void stream_try_shutdown(tstream_t *s)
{
    if (!s->shutdown_wanted || s->shutdown_started || s->closing || s->write_failed)
        return;
    if (!stream_ready(s) || !heldq_empty(&s->held))
        return; /* resumes from stream_flush_held */
    if (s->tls && !s->close_notify_queued) {
        s->close_notify_queued = 1;
        if (tls_engine_shutdown(s->tls) != FG_OK || stream_flush_tls(s) != FG_OK) {
            stream_write_failed(s, "cannot send TLS close_notify");
            return;
        }
    }
    if (s->queued > 0 || s->closing)
        return; /* resumes from on_write_done */
    s->shutdown_started = 1;
    set_abortive(s, 0); /* a graceful end from here on */
    int rc = uv_shutdown(&s->shutdown_req, tstream_uv(s), on_shutdown_done);
    if (rc != 0) {
        s->shutdown_done = 1;
        s->shutdown_status = rc;
        s->later_shutdown = 1;
        stream_later(s);
    }
}

void tstream_shutdown(tstream_t *s)
{
    if (s->closing || s->shutdown_wanted)
        return;
    s->shutdown_wanted = 1;
    stream_try_shutdown(s);
}

int tstream_shutdown_done(const tstream_t *s)
{
    return s->shutdown_done;
}

int tstream_eof_was_reset(const tstream_t *s)
{
    return s->eof_was_reset;
}

int tstream_ended(const tstream_t *s)
{
    return s->ended;
}

int tstream_closing(const tstream_t *s)
{
    return s->closing;
}

static void on_closed(uv_handle_t *h)
{
    tstream_t *s = h->data;
    defer_cancel(&s->later);
    drop_held(s);
    if (s->cbs->on_close)
        s->cbs->on_close(s);
    tls_engine_free(s->tls);
    free(s->leftover);
    free(s);
}

void tstream_reset_if_killed(tstream_t *s)
{
    set_abortive(s, 1);
}

void tstream_close(tstream_t *s, int reset)
{
    if (s->closing)
        return;
    s->closing = 1;
    if (!reset)
        set_abortive(s, 0);
    stream_update_reading(s); /* stops: closing */
    /* SECURITY: a reset tells the peer the stream did not end normally, so a
     * backend cannot store a truncated upload as a complete file, and a
     * refused data connection (another host's) is not mistaken for a
     * finished transfer. */
    if (reset && !s->shutdown_started && uv_tcp_close_reset(&s->tcp, on_closed) == 0)
        return;
    uv_close((uv_handle_t *)&s->tcp, on_closed);
}
