/* Unit tests for common/tls_engine.c (and common/tls_ctx.c): the I/O-free TLS
 * server driven against an OpenSSL client over memory BIOs. A throwaway P-256
 * key and self-signed certificate are generated into a mkdtemp directory so
 * that the server SSL_CTX comes from tls_ctx_new exactly as in the daemon. */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "fgerr.h"
#include "ticketkeys.h"
#include "tls_ctx.h"
#include "tls_engine.h"

/* ---- fixtures: key, certificate, files ------------------------------------ */

static char tmp_dir[64];
static char cert_path[128], key_path[128], key2_path[128], junk_path[128], missing_path[128];
static char tls_id[] = "main";

static EVP_PKEY *make_key(void)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    CHECK(pk != NULL);
    return pk;
}

static X509 *make_cert(EVP_PKEY *pk)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    X509_NAME *name = X509_get_subject_name(x);
    int ok = X509_set_version(x, 2) == 1 &&
             ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(x), -60) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL &&
             X509_set_pubkey(x, pk) == 1 &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        (const unsigned char *)"localhost", -1, -1, 0) == 1 &&
             X509_set_issuer_name(x, name) == 1 && X509_sign(x, pk, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static int setup_files(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/fg-tls-test-XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 0;
    }
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", tmp_dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", tmp_dir);
    snprintf(key2_path, sizeof key2_path, "%s/key2.pem", tmp_dir);
    snprintf(junk_path, sizeof junk_path, "%s/junk.pem", tmp_dir);
    snprintf(missing_path, sizeof missing_path, "%s/does-not-exist.pem", tmp_dir);

    EVP_PKEY *pk = make_key(), *pk2 = make_key();
    X509 *x = pk ? make_cert(pk) : NULL;
    int ok = pk && pk2 && x;
    BIO *b;
    if (ok && (b = BIO_new_file(cert_path, "w")) != NULL) {
        ok = PEM_write_bio_X509(b, x) == 1;
        BIO_free(b);
    } else {
        ok = 0;
    }
    if (ok && (b = BIO_new_file(key_path, "w")) != NULL) {
        ok = PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL) == 1;
        BIO_free(b);
    } else {
        ok = 0;
    }
    if (ok && (b = BIO_new_file(key2_path, "w")) != NULL) {
        ok = PEM_write_bio_PrivateKey(b, pk2, NULL, NULL, 0, NULL, NULL) == 1;
        BIO_free(b);
    } else {
        ok = 0;
    }
    static const char junk[] = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
                               "-----END CERTIFICATE-----\n";
    ok = ok && write_file(junk_path, junk, sizeof junk - 1);
    X509_free(x);
    EVP_PKEY_free(pk);
    EVP_PKEY_free(pk2);
    CHECK(ok);
    return ok;
}

static void cleanup_files(void)
{
    unlink(cert_path);
    unlink(key_path);
    unlink(key2_path);
    unlink(junk_path);
    rmdir(tmp_dir);
}

static config_tls_t tls_config(void)
{
    config_tls_t t;
    memset(&t, 0, sizeof t);
    t.id = tls_id;
    t.cert = cert_path;
    t.key = key_path;
    return t;
}

static SSL_CTX *server_ctx(void)
{
    char err[256] = "";
    static config_tls_t t; /* tls_ctx_new keeps a pointer (for SNI): static */
    t = tls_config();
    SSL_CTX *ctx = tls_ctx_new(&t, err, sizeof err);
    if (!ctx)
        fprintf(stderr, "  tls_ctx_new: %s\n", err);
    CHECK(ctx != NULL);
    return ctx;
}

/* max_version: 0 for no maximum, else TLS1_2_VERSION / TLS1_3_VERSION. */
static SSL_CTX *client_ctx(int max_version)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    CHECK(c != NULL);
    if (!c)
        return NULL;
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    if (max_version)
        SSL_CTX_set_max_proto_version(c, max_version);
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL); /* self-signed; identity is not under test */
    return c;
}

/* ---- a growable byte buffer and a deterministic byte pattern -------------- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf_t;

static void buf_append(buf_t *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *np = realloc(b->p, cap);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            abort();
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static unsigned char *pattern(size_t n, uint32_t seed)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p)
        abort();
    uint32_t x = seed ? seed : 0x9e3779b9u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
    return p;
}

/* ---- a client and an engine joined by memory BIOs ------------------------- */

typedef struct {
    SSL *cli;
    BIO *to_cli;   /* the client's rbio: ciphertext from the engine */
    BIO *from_cli; /* the client's wbio: ciphertext for the engine */
    tls_engine_t *eng;
    buf_t srx;     /* plaintext tls_engine_read returned */
    buf_t crx;     /* plaintext the client read */
    size_t rd_cap; /* cap passed to tls_engine_read */
    int srv_rc;    /* the last non-FG_OK result of tls_engine_read */
    int cli_err;   /* SSL_get_error of the client's last failed SSL_read */
    int io_fail;   /* anomalies in the shuttle helpers (checked once, in pair_free) */
    SSL_CTX *own_cctx; /* the client context pair_open made, freed by pair_free */
} pair_t;

static int pair_init(pair_t *p, SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess)
{
    memset(p, 0, sizeof *p);
    p->rd_cap = 16384;
    p->srv_rc = FG_NEED_MORE;
    p->eng = tls_engine_new(sctx);
    p->cli = SSL_new(cctx);
    p->to_cli = BIO_new(BIO_s_mem());
    p->from_cli = BIO_new(BIO_s_mem());
    if (!p->eng || !p->cli || !p->to_cli || !p->from_cli) {
        CHECK(0);
        tls_engine_free(p->eng);
        SSL_free(p->cli);
        BIO_free(p->to_cli);
        BIO_free(p->from_cli);
        memset(p, 0, sizeof *p);
        return 0;
    }
    SSL_set_bio(p->cli, p->to_cli, p->from_cli);
    SSL_set_connect_state(p->cli);
    if (sess)
        CHECK_EQ_INT(SSL_set_session(p->cli, sess), 1);
    return 1;
}

static void pair_free(pair_t *p)
{
    CHECK_EQ_INT(p->io_fail, 0);
    tls_engine_free(p->eng);
    SSL_free(p->cli); /* frees both BIOs */
    buf_free(&p->srx);
    buf_free(&p->crx);
    SSL_CTX_free(p->own_cctx);
    memset(p, 0, sizeof *p);
}

/* pair_init with a fresh client context (client_ctx(max_version)) of its own. */
static int pair_open(pair_t *p, SSL_CTX *sctx, int max_version)
{
    SSL_CTX *cctx = client_ctx(max_version);
    if (!cctx || !pair_init(p, sctx, cctx, NULL)) {
        SSL_CTX_free(cctx);
        return 0;
    }
    p->own_cctx = cctx;
    return 1;
}

static size_t c2s(pair_t *p)
{
    unsigned char tmp[4096];
    size_t moved = 0, n = 0;
    while (BIO_ctrl_pending(p->from_cli) > 0 && BIO_read_ex(p->from_cli, tmp, sizeof tmp, &n) == 1) {
        if (tls_engine_feed(p->eng, tmp, n) != FG_OK) {
            fprintf(stderr, "  tls_engine_feed failed\n");
            p->io_fail++;
        }
        moved += n;
    }
    return moved;
}

static size_t s2c(pair_t *p)
{
    /* An odd size so that records straddle take_out calls. */
    unsigned char tmp[1500];
    size_t moved = 0, n;
    while ((n = tls_engine_take_out(p->eng, tmp, sizeof tmp)) > 0) {
        size_t w = 0;
        if (BIO_write_ex(p->to_cli, tmp, n, &w) != 1 || w != n) {
            fprintf(stderr, "  BIO_write_ex to the client failed\n");
            p->io_fail++;
        }
        moved += n;
    }
    if (tls_engine_pending_out(p->eng) != 0) {
        fprintf(stderr, "  take_out left bytes pending\n");
        p->io_fail++;
    }
    return moved;
}

static void s_poll(pair_t *p)
{
    unsigned char *tmp = malloc(p->rd_cap);
    if (!tmp)
        abort();
    for (;;) {
        size_t got = 12345;
        int rc = tls_engine_read(p->eng, tmp, p->rd_cap, &got);
        if (rc != FG_OK) {
            if (got != 0) {
                fprintf(stderr, "  tls_engine_read %d with got %zu\n", rc, got);
                p->io_fail++;
            }
            p->srv_rc = rc;
            break;
        }
        if (got == 0 || got > p->rd_cap) {
            fprintf(stderr, "  tls_engine_read FG_OK with got %zu\n", got);
            p->io_fail++;
        }
        buf_append(&p->srx, tmp, got);
    }
    free(tmp);
}

static void c_poll(pair_t *p)
{
    unsigned char tmp[16384];
    size_t n = 0;
    for (;;) {
        ERR_clear_error();
        int rc = SSL_read_ex(p->cli, tmp, sizeof tmp, &n);
        if (rc == 1) {
            buf_append(&p->crx, tmp, n);
            continue;
        }
        int err = SSL_get_error(p->cli, rc);
        /* Keep the first terminal error: OpenSSL reports later reads on a
         * failed connection differently. */
        if (p->cli_err == 0 || p->cli_err == SSL_ERROR_WANT_READ)
            p->cli_err = err;
        ERR_clear_error();
        break;
    }
}

/* Moves bytes both ways until nothing moves. Returns the rounds, or -1 when the
 * bound is hit (a livelock). */
static int pump(pair_t *p)
{
    for (int round = 1; round <= 200; round++) {
        size_t moved = c2s(p);
        s_poll(p);
        moved += s2c(p);
        c_poll(p);
        if (moved == 0 && BIO_ctrl_pending(p->from_cli) == 0)
            return round;
    }
    return -1;
}

static int handshake(pair_t *p)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(p->cli);
    CHECK(rc == 1 || SSL_get_error(p->cli, rc) == SSL_ERROR_WANT_READ);
    CHECK(pump(p) > 0);
    int ok = SSL_is_init_finished(p->cli) && tls_engine_state(p->eng) == TLS_ENGINE_OPEN &&
             tls_engine_handshake_done(p->eng);
    CHECK(ok);
    CHECK_EQ_INT(p->srv_rc, FG_NEED_MORE);
    CHECK_EQ_INT(p->cli_err, SSL_ERROR_WANT_READ);
    return ok;
}

/* Both close_notify alerts, client first. */
static void close_both(pair_t *p)
{
    ERR_clear_error();
    CHECK_EQ_INT(SSL_shutdown(p->cli), 0);
    CHECK(pump(p) > 0);
    CHECK_EQ_INT(p->srv_rc, FG_CLOSED);
    CHECK_EQ_INT(tls_engine_shutdown(p->eng), FG_OK);
    CHECK(pump(p) > 0);
    CHECK_EQ_INT(p->cli_err, SSL_ERROR_ZERO_RETURN);
    CHECK_EQ_INT(SSL_shutdown(p->cli), 1);
}

/* Client -> engine: total bytes in chunks of chunk, pumping after each. */
static int send_c2s(pair_t *p, const unsigned char *data, size_t total, size_t chunk)
{
    size_t before = p->srx.len;
    for (size_t off = 0; off < total; off += chunk) {
        size_t n = total - off < chunk ? total - off : chunk, w = 0;
        if (SSL_write_ex(p->cli, data + off, n, &w) != 1 || w != n)
            return 0;
        if (pump(p) < 0)
            return 0;
    }
    return p->srx.len - before == total && memcmp(p->srx.p + before, data, total) == 0;
}

/* Engine -> client. */
static int send_s2c(pair_t *p, const unsigned char *data, size_t total, size_t chunk)
{
    size_t before = p->crx.len;
    for (size_t off = 0; off < total; off += chunk) {
        size_t n = total - off < chunk ? total - off : chunk;
        if (tls_engine_write(p->eng, data + off, n) != FG_OK)
            return 0;
        if (pump(p) < 0)
            return 0;
    }
    return p->crx.len - before == total && memcmp(p->crx.p + before, data, total) == 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_before_handshake(SSL_CTX *sctx)
{
    tls_engine_free(NULL);
    tls_engine_t *e = tls_engine_new(sctx);
    CHECK(e != NULL);
    if (!e)
        return;
    CHECK_EQ_INT(tls_engine_state(e), TLS_ENGINE_HANDSHAKING);
    CHECK_EQ_INT(tls_engine_failure(e), TLS_FAIL_NONE);
    CHECK_STR(tls_engine_reason(e), "");
    CHECK_EQ_INT(tls_engine_handshake_done(e), 0);
    CHECK_EQ_INT(tls_engine_pending_out(e), 0);
    CHECK(tls_engine_ssl(e) != NULL);
    CHECK(tls_engine_cipher(e) != NULL);
    unsigned char buf[16];
    CHECK_EQ_INT(tls_engine_take_out(e, buf, sizeof buf), 0);
    CHECK_EQ_INT(tls_engine_write(e, "x", 1), FG_STATE);
    CHECK_EQ_INT(tls_engine_shutdown(e), FG_STATE);
    CHECK_EQ_INT(tls_engine_feed(e, "", 0), FG_OK);
    size_t got = 99;
    CHECK_EQ_INT(tls_engine_read(e, buf, sizeof buf, &got), FG_NEED_MORE);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(tls_engine_state(e), TLS_ENGINE_HANDSHAKING);
    CHECK_EQ_INT(tls_engine_pending_out(e), 0); /* a server speaks second */
    CHECK_EQ_INT(tls_engine_write(e, "x", 1), FG_STATE);
    tls_engine_free(e);
}

static void test_handshake_and_data(SSL_CTX *sctx, int version, const char *vname)
{
    pair_t p;
    if (!pair_open(&p, sctx, version))
        return;
    if (!handshake(&p))
        goto out;
    CHECK_STR(tls_engine_version(p.eng), vname);
    CHECK_STR(SSL_get_version(p.cli), vname);
    CHECK(tls_engine_cipher(p.eng)[0] != '\0');
    CHECK_STR(tls_engine_cipher(p.eng), SSL_get_cipher_name(p.cli));
    CHECK_EQ_INT(tls_engine_session_reused(p.eng), 0);
    CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_NONE);
    CHECK_STR(tls_engine_reason(p.eng), "");
    CHECK_EQ_INT(p.srx.len, 0);
    CHECK_EQ_INT(p.crx.len, 0);

    const size_t mib = 1024 * 1024;
    unsigned char *data = pattern(mib, (uint32_t)version);

    /* client -> engine; read caps of 1 and 7 force many partial reads */
    p.rd_cap = 1;
    CHECK(send_c2s(&p, data, 1, 1));
    CHECK(send_c2s(&p, data + 100, 5, 5));
    p.rd_cap = 7;
    CHECK(send_c2s(&p, data, 16385, 16385));
    p.rd_cap = 16384;
    CHECK(send_c2s(&p, data, 16385, 16385));
    CHECK(send_c2s(&p, data, mib, 65536));
    CHECK(send_c2s(&p, data, mib, 1000)); /* many small records */
    CHECK_EQ_INT(p.srx.len, 1 + 5 + 16385 * 2 + mib * 2);

    /* engine -> client */
    CHECK(send_s2c(&p, data + 7, 1, 1));
    CHECK(send_s2c(&p, data, 16385, 16385));
    CHECK(send_s2c(&p, data, mib, 65536));
    CHECK(send_s2c(&p, data, mib, mib)); /* one call for the whole MiB */
    CHECK_EQ_INT(p.crx.len, 1 + 16385 + mib * 2);

    /* interleaved both ways without pumping in between */
    size_t w = 0;
    size_t srx0 = p.srx.len, crx0 = p.crx.len;
    CHECK(SSL_write_ex(p.cli, "ping", 4, &w) == 1);
    CHECK_EQ_INT(tls_engine_write(p.eng, "pong", 4), FG_OK);
    CHECK(SSL_write_ex(p.cli, "PING", 4, &w) == 1);
    CHECK_EQ_INT(tls_engine_write(p.eng, "PONG", 4), FG_OK);
    CHECK(pump(&p) > 0);
    CHECK_EQ_MEM(p.srx.p + srx0, p.srx.len - srx0, "pingPING");
    CHECK_EQ_MEM(p.crx.p + crx0, p.crx.len - crx0, "pongPONG");
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_OPEN);
    /* a zero-length write is a no-op */
    CHECK_EQ_INT(tls_engine_write(p.eng, "", 0), FG_OK);
    free(data);
out:
    pair_free(&p);
}

/* The client's close_notify: FG_CLOSED and state CLOSED; data sent before it
 * is delivered first; the engine can still answer (half-close) and then
 * send its own close_notify. */
static void test_client_close(SSL_CTX *sctx, int version)
{
    pair_t p;
    if (!pair_open(&p, sctx, version))
        return;
    if (!handshake(&p))
        goto out;
    size_t w = 0;
    CHECK(SSL_write_ex(p.cli, "bye", 3, &w) == 1);
    CHECK_EQ_INT(SSL_shutdown(p.cli), 0); /* sent ours, theirs not yet seen */
    c2s(&p);
    /* data and close_notify in the same feed: the data comes first */
    unsigned char buf[64];
    size_t got = 0;
    CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_OK);
    CHECK_EQ_MEM(buf, got, "bye");
    CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_CLOSED);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_CLOSED);
    CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_NONE);
    /* sticky, and a transport EOF after close_notify is not a truncation */
    tls_engine_feed_eof(p.eng);
    CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_CLOSED);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_CLOSED);
    CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_NONE);

    /* half-close: the engine may still send, e.g. the last reply */
    CHECK_EQ_INT(tls_engine_write(p.eng, "221 ok", 6), FG_OK);
    s2c(&p);
    c_poll(&p);
    CHECK_EQ_MEM(p.crx.p, p.crx.len, "221 ok");
    CHECK_EQ_INT(tls_engine_shutdown(p.eng), FG_OK);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_CLOSED); /* stays CLOSED */
    CHECK(tls_engine_pending_out(p.eng) > 0);
    CHECK_EQ_INT(tls_engine_write(p.eng, "x", 1), FG_STATE);
    s2c(&p);
    c_poll(&p);
    CHECK_EQ_INT(p.cli_err, SSL_ERROR_ZERO_RETURN);
    CHECK_EQ_INT(SSL_shutdown(p.cli), 1); /* bidirectional shutdown complete */
out:
    pair_free(&p);
}

/* tls_engine_shutdown queues a close_notify that the client sees. */
static void test_engine_shutdown(SSL_CTX *sctx, int version)
{
    pair_t p;
    if (!pair_open(&p, sctx, version))
        return;
    if (!handshake(&p))
        goto out;
    CHECK_EQ_INT(tls_engine_write(p.eng, "226 done", 8), FG_OK);
    CHECK_EQ_INT(tls_engine_shutdown(p.eng), FG_OK);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_CLOSING);
    size_t pend = tls_engine_pending_out(p.eng);
    CHECK(pend > 0);
    /* idempotent: no second close_notify */
    CHECK_EQ_INT(tls_engine_shutdown(p.eng), FG_OK);
    CHECK_EQ_INT(tls_engine_pending_out(p.eng), pend);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_CLOSING);
    /* nothing more may be written after close_notify */
    CHECK_EQ_INT(tls_engine_write(p.eng, "x", 1), FG_STATE);

    s2c(&p);
    unsigned char buf[64];
    size_t got = 0;
    CHECK_EQ_INT(SSL_read_ex(p.cli, buf, sizeof buf, &got), 1);
    CHECK_EQ_MEM(buf, got, "226 done");
    ERR_clear_error();
    int rc = SSL_read(p.cli, buf, sizeof buf);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(SSL_get_error(p.cli, rc), SSL_ERROR_ZERO_RETURN);
    CHECK(SSL_get_shutdown(p.cli) & SSL_RECEIVED_SHUTDOWN);

    /* The client may still send before answering with its own close_notify. */
    size_t w = 0;
    CHECK(SSL_write_ex(p.cli, "late", 4, &w) == 1);
    CHECK_EQ_INT(SSL_shutdown(p.cli), 1);
    c2s(&p);
    CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_OK);
    CHECK_EQ_MEM(buf, got, "late");
    CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_CLOSED);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_CLOSED);
    CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_NONE);
    CHECK_EQ_INT(tls_engine_pending_out(p.eng), 0);
out:
    pair_free(&p);
}

/* After our close_notify the peer drops the TCP connection without its own.
 * The engine reports TRUNCATED here as well: it cannot tell a peer that is
 * done from a cut connection. (For CCC the peer must answer with close_notify;
 * after a plain shutdown the owner is closing anyway.) */
static void test_closing_then_eof(SSL_CTX *sctx)
{
    pair_t p;
    if (!pair_open(&p, sctx, 0))
        return;
    if (!handshake(&p))
        goto out;
    CHECK_EQ_INT(tls_engine_shutdown(p.eng), FG_OK);
    s2c(&p);
    tls_engine_feed_eof(p.eng);
    unsigned char buf[16];
    size_t got = 0;
    CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_TLS);
    CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_TRUNCATED);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_FAILED);
out:
    pair_free(&p);
}

static void test_eof_truncation(SSL_CTX *sctx)
{
    unsigned char buf[64];
    size_t got = 0;

    /* EOF before a single byte arrived */
    tls_engine_t *e = tls_engine_new(sctx);
    CHECK(e != NULL);
    if (e) {
        tls_engine_feed_eof(e);
        CHECK_EQ_INT(tls_engine_read(e, buf, sizeof buf, &got), FG_TLS);
        CHECK_EQ_INT(tls_engine_failure(e), TLS_FAIL_TRUNCATED);
        CHECK_EQ_INT(tls_engine_state(e), TLS_ENGINE_FAILED);
        CHECK(tls_engine_reason(e)[0] != '\0');
        /* sticky */
        CHECK_EQ_INT(tls_engine_read(e, buf, sizeof buf, &got), FG_TLS);
        CHECK_EQ_INT(tls_engine_failure(e), TLS_FAIL_TRUNCATED);
        tls_engine_free(e);
    }

    /* EOF mid-handshake: after the ClientHello, before the client's Finished */
    SSL_CTX *cctx = client_ctx(0);
    pair_t p;
    if (cctx && pair_init(&p, sctx, cctx, NULL)) {
        ERR_clear_error();
        CHECK_EQ_INT(SSL_do_handshake(p.cli), -1);
        CHECK(c2s(&p) > 0);
        tls_engine_feed_eof(p.eng);
        CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_TLS);
        CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_TRUNCATED);
        CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_FAILED);
        CHECK_EQ_INT(tls_engine_handshake_done(p.eng), 0);
        CHECK_EQ_INT(tls_engine_write(p.eng, "x", 1), FG_TLS);
        CHECK_EQ_INT(tls_engine_shutdown(p.eng), FG_STATE);
        pair_free(&p);
    }

    /* EOF with a partial record of the ClientHello: still truncated, not a protocol error */
    if (cctx && pair_init(&p, sctx, cctx, NULL)) {
        ERR_clear_error();
        SSL_do_handshake(p.cli);
        unsigned char hello[4096];
        size_t n = 0;
        CHECK(BIO_read_ex(p.from_cli, hello, sizeof hello, &n) == 1 && n > 10);
        CHECK_EQ_INT(tls_engine_feed(p.eng, hello, n / 2), FG_OK);
        CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_NEED_MORE);
        CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_HANDSHAKING);
        tls_engine_feed_eof(p.eng);
        CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_TLS);
        CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_TRUNCATED);
        pair_free(&p);
    }

    /* EOF after the handshake without close_notify; pending data first */
    if (cctx && pair_init(&p, sctx, cctx, NULL)) {
        if (handshake(&p)) {
            size_t w = 0;
            CHECK(SSL_write_ex(p.cli, "tail", 4, &w) == 1);
            c2s(&p);
            tls_engine_feed_eof(p.eng);
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_OK);
            CHECK_EQ_MEM(buf, got, "tail");
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_TLS);
            CHECK_EQ_INT(got, 0);
            CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_TRUNCATED);
            CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_FAILED);
            CHECK(strstr(tls_engine_reason(p.eng), "close_notify") != NULL);
            CHECK_EQ_INT(tls_engine_write(p.eng, "x", 1), FG_TLS);
            CHECK_EQ_INT(tls_engine_shutdown(p.eng), FG_STATE);
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_TLS);
        }
        pair_free(&p);
    }

    /* EOF in the middle of an application-data record */
    if (cctx && pair_init(&p, sctx, cctx, NULL)) {
        if (handshake(&p)) {
            size_t w = 0;
            CHECK(SSL_write_ex(p.cli, "0123456789", 10, &w) == 1);
            unsigned char rec[256];
            size_t n = 0;
            CHECK(BIO_read_ex(p.from_cli, rec, sizeof rec, &n) == 1 && n > 10);
            CHECK_EQ_INT(tls_engine_feed(p.eng, rec, n - 3), FG_OK);
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_NEED_MORE);
            tls_engine_feed_eof(p.eng);
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_TLS);
            CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_TRUNCATED);
        }
        pair_free(&p);
    }
    SSL_CTX_free(cctx);
}

/* An application-data record of 32 bytes that no key made: it fails
 * authentication (bad_record_mac) after any handshake. */
static const unsigned char forged[] = {
    0x17, 0x03, 0x03, 0x00, 0x20, /* application data, 32 bytes */
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
};

/* Bytes that are not TLS where the ClientHello should be. */
static void check_garbage(SSL_CTX *sctx, const void *data, size_t len, const char *what)
{
    tls_engine_t *e = tls_engine_new(sctx);
    CHECK(e != NULL);
    if (!e)
        return;
    unsigned char buf[64];
    size_t got = 0;
    CHECK_EQ_INT(tls_engine_feed(e, data, len), FG_OK);
    int rc = tls_engine_read(e, buf, sizeof buf, &got);
    if (rc != FG_TLS)
        fprintf(stderr, "  garbage \"%s\": rc %d\n", what, rc);
    CHECK_EQ_INT(rc, FG_TLS);
    CHECK_EQ_INT(tls_engine_failure(e), TLS_FAIL_PROTOCOL);
    CHECK_EQ_INT(tls_engine_state(e), TLS_ENGINE_FAILED);
    CHECK(strncmp(tls_engine_reason(e), "TLS handshake failed", 20) == 0);
    CHECK(strstr(tls_engine_reason(e), ": error:") != NULL); /* OpenSSL's reason appended */
    CHECK_EQ_INT(tls_engine_handshake_done(e), 0);
    /* An alert may be queued; whatever is there can be taken without error. */
    unsigned char out[512];
    size_t pend = tls_engine_pending_out(e);
    CHECK(pend < sizeof out);
    CHECK_EQ_INT(tls_engine_take_out(e, out, sizeof out), pend);
    if (pend > 0)
        CHECK_EQ_INT(out[0], 0x15); /* record type alert */
    CHECK_EQ_INT(tls_engine_read(e, buf, sizeof buf, &got), FG_TLS);
    CHECK_EQ_INT(tls_engine_write(e, "x", 1), FG_TLS);
    CHECK_EQ_INT(tls_engine_shutdown(e), FG_STATE);
    /* the failure left nothing on this thread's error queue */
    CHECK_EQ_INT(ERR_peek_error(), 0);
    tls_engine_free(e);
}

static void test_garbage(SSL_CTX *sctx)
{
    check_garbage(sctx, "USER x\r\n", 8, "USER x");
    check_garbage(sctx, "AUTH TLS\r\nUSER anonymous\r\n", 26, "AUTH TLS");
    check_garbage(sctx, "GET / HTTP/1.0\r\n\r\n", 18, "GET");
    /* A handshake record header with a wrong version and an absurd length. */
    static const unsigned char bad_len[] = {0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0};
    check_garbage(sctx, bad_len, sizeof bad_len, "oversized record");
    /* An alert record in place of the ClientHello. */
    static const unsigned char alert[] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28};
    check_garbage(sctx, alert, sizeof alert, "alert");
    /* Deterministic random bytes (several seeds). */
    for (uint32_t seed = 1; seed <= 8; seed++) {
        unsigned char *r = pattern(512, seed * 2654435761u);
        check_garbage(sctx, r, 512, "random");
        free(r);
    }

    /* Garbage after a good handshake: a forged record fails authentication. */
    SSL_CTX *cctx = client_ctx(0);
    pair_t p;
    if (cctx && pair_init(&p, sctx, cctx, NULL)) {
        if (handshake(&p)) {
            unsigned char buf[64];
            size_t got = 0;
            CHECK_EQ_INT(tls_engine_feed(p.eng, forged, sizeof forged), FG_OK);
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_TLS);
            CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_PROTOCOL);
            CHECK(strncmp(tls_engine_reason(p.eng), "TLS read failed", 15) == 0);
            CHECK_EQ_INT(tls_engine_write(p.eng, "x", 1), FG_TLS);
            /* The client learns of it from the alert. */
            s2c(&p);
            c_poll(&p);
            CHECK_EQ_INT(p.cli_err, SSL_ERROR_SSL);
        }
        pair_free(&p);
    }
    SSL_CTX_free(cctx);
}

/* Returns a resumable session from a full handshake at the given version. */
static SSL_SESSION *get_session(SSL_CTX *sctx, SSL_CTX *cctx)
{
    pair_t p;
    SSL_SESSION *s = NULL;
    if (!pair_init(&p, sctx, cctx, NULL))
        return NULL;
    if (handshake(&p)) {
        /* The TLS 1.3 NewSessionTicket arrives after the handshake: pump read it. */
        CHECK(pump(&p) > 0);
        s = SSL_get1_session(p.cli);
        CHECK(s != NULL);
        CHECK(s && SSL_SESSION_is_resumable(s));
        CHECK_EQ_INT(tls_engine_session_reused(p.eng), 0);
        CHECK_EQ_INT(SSL_shutdown(p.cli), 0);
        CHECK(pump(&p) > 0);
        CHECK_EQ_INT(p.srv_rc, FG_CLOSED);
    }
    pair_free(&p);
    return s;
}

static void test_resumption(SSL_CTX *sctx, int version)
{
    SSL_CTX *cctx = client_ctx(version);
    if (!cctx)
        return;
    SSL_SESSION *sess = get_session(sctx, cctx);
    pair_t p;
    if (sess && pair_init(&p, sctx, cctx, sess)) {
        if (handshake(&p)) {
            CHECK_EQ_INT(tls_engine_session_reused(p.eng), 1);
            CHECK_EQ_INT(SSL_session_reused(p.cli), 1);
            CHECK_EQ_INT(SSL_version(p.cli), version);
            unsigned char *d = pattern(3000, 77);
            CHECK(send_c2s(&p, d, 3000, 3000));
            CHECK(send_s2c(&p, d, 3000, 3000));
            free(d);
            /* A clean close: OpenSSL's client marks a TLS 1.2 session not
             * resumable when its SSL is freed without close_notify. */
            close_both(&p);
        }
        pair_free(&p);
    }
    /* A second data connection on the same session (TLS 1.2: the same
     * ticket; TLS 1.3: the client reuses its ticket, the server accepts it
     * since tickets are not single-use by default). */
    if (sess && pair_init(&p, sctx, cctx, sess)) {
        if (handshake(&p))
            CHECK_EQ_INT(tls_engine_session_reused(p.eng), 1);
        pair_free(&p);
    }
    /* A fresh client without a session: full handshake. */
    if (pair_init(&p, sctx, cctx, NULL)) {
        if (handshake(&p)) {
            CHECK_EQ_INT(tls_engine_session_reused(p.eng), 0);
            CHECK_EQ_INT(SSL_session_reused(p.cli), 0);
        }
        pair_free(&p);
    }
    /* The session offered to another identity's context (its own ticket keys
     * and cache) is not resumed: the handshake falls back to a full one. */
    SSL_CTX *other = server_ctx();
    if (sess && other && pair_init(&p, other, cctx, sess)) {
        if (handshake(&p)) {
            CHECK_EQ_INT(tls_engine_session_reused(p.eng), 0);
            CHECK_EQ_INT(SSL_session_reused(p.cli), 0);
        }
        pair_free(&p);
    }
    SSL_CTX_free(other);
    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);
}

/* One handshake of an engine holding token (a control connection when
 * control) with a client offering sess (or none). Returns the client's new
 * session when want_session, after checking what the engine saw. */
typedef struct {
    int reused, offered, with_token;
} token_seen_t;

static SSL_SESSION *token_handshake(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess, const unsigned char *token,
                                    int control, token_seen_t *seen)
{
    pair_t p;
    SSL_SESSION *out = NULL;
    memset(seen, 0xff, sizeof *seen);
    if (!pair_init(&p, sctx, cctx, sess))
        return NULL;
    tls_engine_set_token(p.eng, token, control);
    if (handshake(&p)) {
        CHECK(pump(&p) > 0); /* TLS 1.3 tickets */
        seen->reused = SSL_session_reused(p.cli);
        CHECK_EQ_INT(tls_engine_session_reused(p.eng), seen->reused);
        seen->offered = tls_engine_offered_session(p.eng);
        seen->with_token = tls_engine_resumed_with_token(p.eng, token);
        out = SSL_get1_session(p.cli);
        close_both(&p);
    }
    pair_free(&p);
    return out;
}

/* Data-session reuse (RFC 4217 §10.2): a control connection's token is the id
 * context of its sessions. Its data connections resume them; a data
 * connection of another control connection offering one gets a full
 * handshake (and the engine knows a session was offered); a second control
 * connection never resumes the first one's session, by ticket or by session
 * id (client_tickets 0), so the first one's data connections still resume. */
static void test_session_tokens(SSL_CTX *sctx, int version, int client_tickets)
{
    SSL_CTX *cctx = client_ctx(version);
    if (!cctx)
        return;
    if (!client_tickets)
        SSL_CTX_set_options(cctx, SSL_OP_NO_TICKET);
    unsigned char tok_a[TLS_ENGINE_TOKEN_LEN], tok_b[TLS_ENGINE_TOKEN_LEN];
    memset(tok_a, 0xa1, sizeof tok_a);
    memset(tok_b, 0xb2, sizeof tok_b);
    token_seen_t seen;
    SSL_SESSION *ctl_a = token_handshake(sctx, cctx, NULL, tok_a, 1, &seen);
    CHECK(ctl_a != NULL);
    CHECK_EQ_INT(seen.reused, 0);
    CHECK_EQ_INT(seen.offered, 0);
    if (ctl_a) {
        SSL_SESSION *s = token_handshake(sctx, cctx, ctl_a, tok_a, 0, &seen); /* A's data */
        CHECK_EQ_INT(seen.reused, 1);
        CHECK_EQ_INT(seen.offered, 1);
        CHECK_EQ_INT(seen.with_token, 1);
        SSL_SESSION_free(s);
        s = token_handshake(sctx, cctx, ctl_a, tok_b, 0, &seen); /* B's data with A's session */
        CHECK_EQ_INT(seen.reused, 0);
        CHECK_EQ_INT(seen.offered, 1);
        CHECK_EQ_INT(seen.with_token, 0);
        SSL_SESSION_free(s);
        s = token_handshake(sctx, cctx, ctl_a, tok_b, 1, &seen); /* control B offering A's session */
        CHECK_EQ_INT(seen.reused, 0);
        SSL_SESSION_free(s);
        s = token_handshake(sctx, cctx, ctl_a, tok_a, 0, &seen); /* A's data, afterwards */
        CHECK_EQ_INT(seen.reused, 1);
        CHECK_EQ_INT(seen.with_token, 1);
        SSL_SESSION_free(s);
    }
    SSL_SESSION_free(ctl_a);
    SSL_CTX_free(cctx);
}

/* A TLS 1.2 control connection with token tok whose session is made to look
 * age seconds old on the server. Returns the client's session; *kept is the
 * server's reference (for tls_session_forget), as the proxy keeps it. */
static SSL_SESSION *aged_control_session(SSL_CTX *sctx, SSL_CTX *cctx, const unsigned char *tok, long age,
                                        SSL_SESSION **kept)
{
    pair_t p;
    SSL_SESSION *ctl = NULL;
    *kept = NULL;
    if (!pair_init(&p, sctx, cctx, NULL))
        return NULL;
    tls_engine_set_token(p.eng, tok, 1);
    if (handshake(&p)) {
        ctl = SSL_get1_session(p.cli);
        *kept = tls_engine_get1_session(p.eng);
        CHECK(*kept != NULL);
        SSL_SESSION *cached = SSL_get_session(tls_engine_ssl(p.eng));
        CHECK(cached != NULL);
        if (cached)
            SSL_SESSION_set_time(cached, (long)time(NULL) - age);
        close_both(&p);
    }
    pair_free(&p);
    return ctl;
}

/* A control connection that lives for hours (a sync job) keeps its data
 * connections resuming: TLS 1.2 session ids have no fresh tickets to renew
 * them, so the server must keep a control session as long as the control
 * connection may live (the session ages from the control handshake); once
 * the control connection ends, tls_session_forget takes it out of the cache. */
static void test_old_control_session(SSL_CTX *sctx)
{
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION);
    if (!cctx)
        return;
    SSL_CTX_set_options(cctx, SSL_OP_NO_TICKET);
    unsigned char tok[TLS_ENGINE_TOKEN_LEN];
    memset(tok, 0x5c, sizeof tok);
    SSL_SESSION *kept = NULL;
    /* as if the control handshake had been 30 hours ago */
    SSL_SESSION *ctl = aged_control_session(sctx, cctx, tok, 30 * 3600, &kept);
    token_seen_t seen;
    if (ctl) {
        SSL_SESSION *s = token_handshake(sctx, cctx, ctl, tok, 0, &seen);
        CHECK_EQ_INT(seen.reused, 1);
        CHECK_EQ_INT(seen.with_token, 1);
        SSL_SESSION_free(s);
        /* The control connection ended: its session leaves the cache. */
        tls_session_forget(sctx, kept);
        kept = NULL;
        s = token_handshake(sctx, cctx, ctl, tok, 0, &seen);
        CHECK_EQ_INT(seen.reused, 0);
        SSL_SESSION_free(s);
    }
    tls_session_forget(NULL, kept);
    SSL_SESSION_free(ctl);
    SSL_CTX_free(cctx);
}

/* The control session's lifetime (README, tls: "7 days"): aged just under 7
 * days it still resumes, just over it does not (OpenSSL's own expiry). */
static void test_session_lifetime(SSL_CTX *sctx)
{
    static const struct {
        long age;
        int resumes;
    } cases[] = {{TLS_CTX_SESSION_LIFETIME_S - 60, 1}, {TLS_CTX_SESSION_LIFETIME_S + 60, 0}};
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION);
    if (!cctx)
        return;
    CHECK_EQ_INT(SSL_CTX_get_timeout(sctx), 7 * 24 * 3600);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char tok[TLS_ENGINE_TOKEN_LEN];
        memset(tok, 0x60 + (int)i, sizeof tok);
        SSL_SESSION *kept = NULL;
        SSL_SESSION *ctl = aged_control_session(sctx, cctx, tok, cases[i].age, &kept);
        token_seen_t seen;
        if (ctl) {
            SSL_SESSION_free(token_handshake(sctx, cctx, ctl, tok, 0, &seen));
            if (seen.reused != cases[i].resumes)
                fprintf(stderr, "  control session aged %ld s: resumed %d\n", cases[i].age, seen.reused);
            CHECK_EQ_INT(seen.reused, cases[i].resumes);
        }
        tls_session_forget(sctx, kept);
        SSL_SESSION_free(ctl);
    }
    SSL_CTX_free(cctx);
}

/* TLS 1.2 resumes by session id only: no ticket is issued (none in the
 * client's session, no lifetime hint), the data connection resumes the
 * control session from the server cache, and a data connection that ends
 * without the proxy's close_notify (an aborted or cut transfer) does not take
 * the control session out of the cache for the next one. */
static void test_tls12_session_ids(SSL_CTX *sctx)
{
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION); /* offers tickets */
    if (!cctx)
        return;
    unsigned char tok[TLS_ENGINE_TOKEN_LEN];
    memset(tok, 0x12, sizeof tok);
    token_seen_t seen;
    SSL_SESSION *ctl = token_handshake(sctx, cctx, NULL, tok, 1, &seen);
    CHECK(ctl != NULL);
    if (!ctl)
        goto out;
    unsigned int idlen = 0;
    SSL_SESSION_get_id(ctl, &idlen);
    CHECK(idlen > 0);
    CHECK_EQ_INT(SSL_SESSION_has_ticket(ctl), 0);
    CHECK_EQ_INT(SSL_SESSION_get_ticket_lifetime_hint(ctl), 0);
    SSL_SESSION *s = token_handshake(sctx, cctx, ctl, tok, 0, &seen);
    CHECK_EQ_INT(seen.reused, 1);
    CHECK_EQ_INT(seen.with_token, 1);
    CHECK(s == NULL || SSL_SESSION_has_ticket(s) == 0);
    SSL_SESSION_free(s);
    for (int round = 0; round < 2; round++) {
        pair_t p;
        if (!pair_init(&p, sctx, cctx, ctl))
            break;
        tls_engine_set_token(p.eng, tok, 0);
        if (handshake(&p)) {
            CHECK_EQ_INT(tls_engine_session_reused(p.eng), 1);
            /* The client's side is not under test: it closed cleanly. */
            CHECK_EQ_INT(SSL_shutdown(p.cli), 0);
            pump(&p);
        }
        pair_free(&p); /* the engine goes without sending close_notify */
        s = token_handshake(sctx, cctx, ctl, tok, 0, &seen);
        CHECK_EQ_INT(seen.reused, 1);
        CHECK_EQ_INT(seen.with_token, 1);
        SSL_SESSION_free(s);
    }
    SSL_SESSION_free(ctl);
out:
    SSL_CTX_free(cctx);
}

/* RFC 5246 §7.2.2: a fatal alert invalidates the session. A TLS 1.2 data
 * connection that fails with one (here a forged record: bad_record_mac) takes
 * its control session out of the cache (OpenSSL does it), so the next data
 * connection cannot resume it (README, Known limits). A TLS 1.3 ticket, which
 * no cache holds, still resumes. */
static void test_fatal_alert(SSL_CTX *sctx, int version)
{
    SSL_CTX *cctx = client_ctx(version);
    if (!cctx)
        return;
    unsigned char tok[TLS_ENGINE_TOKEN_LEN];
    memset(tok, 0x7a, sizeof tok);
    token_seen_t seen;
    SSL_SESSION *ctl = token_handshake(sctx, cctx, NULL, tok, 1, &seen);
    pair_t p;
    if (ctl && pair_init(&p, sctx, cctx, ctl)) {
        tls_engine_set_token(p.eng, tok, 0);
        if (handshake(&p)) {
            CHECK_EQ_INT(tls_engine_session_reused(p.eng), 1);
            unsigned char buf[16];
            size_t got = 0;
            CHECK_EQ_INT(tls_engine_feed(p.eng, forged, sizeof forged), FG_OK);
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_TLS);
        }
        SSL_set_shutdown(p.cli, SSL_SENT_SHUTDOWN); /* the client's side is not under test */
        pair_free(&p);
        SSL_SESSION_free(token_handshake(sctx, cctx, ctl, tok, 0, &seen));
        CHECK_EQ_INT(seen.offered, 1); /* the client still offered it: the server decided */
        CHECK_EQ_INT(seen.reused, version == TLS1_3_VERSION);
    }
    SSL_SESSION_free(ctl);
    SSL_CTX_free(cctx);
}

/* A TLS 1.3 resumption always makes a fresh (EC)DHE exchange (psk_dhe_ke),
 * even with a client that would accept psk_ke: a stolen ticket key gives
 * the tickets' secrets, never the traffic of the connections that resumed. */
static void test_tls13_resumption_dhe(SSL_CTX *sctx)
{
    CHECK_EQ_INT(SSL_CTX_get_options(sctx) & SSL_OP_ALLOW_NO_DHE_KEX, 0);
    SSL_CTX *cctx = client_ctx(TLS1_3_VERSION);
    if (!cctx)
        return;
    SSL_CTX_set_options(cctx, SSL_OP_ALLOW_NO_DHE_KEX);
    SSL_SESSION *sess = get_session(sctx, cctx);
    pair_t p;
    if (sess && pair_init(&p, sctx, cctx, sess)) {
        if (handshake(&p)) {
            CHECK_EQ_INT(tls_engine_session_reused(p.eng), 1);
            /* The server took part in a key exchange only with psk_dhe_ke. */
            CHECK(SSL_get_negotiated_group(tls_engine_ssl(p.eng)) > 0);
        }
        pair_free(&p);
    }
    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);
}

/* ---- ticket key rotation, on an injected clock ----------------------------- */

static int64_t fake_now;

static int64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

/* 1 when the ticket of sess was made under the key called name. */
static int ticket_key_is(SSL_SESSION *sess, const unsigned char name[TICKETKEYS_NAME_LEN])
{
    const unsigned char *tick = NULL;
    size_t len = 0;
    if (!sess)
        return 0;
    SSL_SESSION_get0_ticket(sess, &tick, &len);
    return tick && len > TICKETKEYS_NAME_LEN && memcmp(tick, name, TICKETKEYS_NAME_LEN) == 0;
}

/* A control connection's TLS 1.3 session (its client's newest ticket). */
static SSL_SESSION *control_ticket(SSL_CTX *sctx, SSL_CTX *cctx, const unsigned char *tok)
{
    token_seen_t seen;
    SSL_SESSION *s = token_handshake(sctx, cctx, NULL, tok, 1, &seen);
    CHECK(s != NULL && SSL_SESSION_has_ticket(s));
    return s;
}

/* Whether a data connection presenting sess resumes it. */
static int data_resumes(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess, const unsigned char *tok)
{
    token_seen_t seen;
    SSL_SESSION_free(token_handshake(sctx, cctx, sess, tok, 0, &seen));
    CHECK_EQ_INT(seen.offered, 1);
    return seen.reused == 1 && seen.with_token == 1;
}

/* Keys rotate daily; a ticket made before a rotation still resumes until its
 * key's retention (a day of use + the 7-day ticket lifetime) ends, and not
 * after; new tickets use the newest key; the ring holds 8 keys at most in
 * steady state. OpenSSL's own session expiry runs on the real clock, which
 * does not move here, so what is tested is the key ring alone. */
static void test_ticket_rotation(void)
{
    const int64_t day = 24 * 3600, retain = day + TLS_CTX_SESSION_LIFETIME_S;
    SSL_CTX *sctx = server_ctx();
    SSL_CTX *cctx = client_ctx(TLS1_3_VERSION);
    ticketkeys_t *k = sctx ? ticketkeys_of(sctx) : NULL;
    CHECK(k != NULL);
    unsigned char tok_a[TLS_ENGINE_TOKEN_LEN], tok_b[TLS_ENGINE_TOKEN_LEN], tok_c[TLS_ENGINE_TOKEN_LEN];
    unsigned char n0[TICKETKEYS_NAME_LEN], n1[TICKETKEYS_NAME_LEN], n[TICKETKEYS_NAME_LEN];
    memset(tok_a, 0xa0, sizeof tok_a);
    memset(tok_b, 0xb0, sizeof tok_b);
    memset(tok_c, 0xc0, sizeof tok_c);
    SSL_SESSION *sa = NULL, *sb = NULL, *sc = NULL;
    if (!k || !cctx)
        goto out;
    /* Far past the key made at start-up (on the real clock): it is erased
     * and a key of the fake clock's time takes its place. */
    const int64_t t0 = (int64_t)1 << 40;
    fake_now = t0;
    ticketkeys_set_clock(k, fake_clock, NULL);
    ticketkeys_maintain(k);
    CHECK_EQ_INT(ticketkeys_count(k), 1);
    CHECK_EQ_INT(ticketkeys_newest_name(k, n0), FG_OK);

    sa = control_ticket(sctx, cctx, tok_a);
    CHECK(ticket_key_is(sa, n0));
    fake_now = t0 + day - 1; /* not yet a day: the same key */
    sb = control_ticket(sctx, cctx, tok_b);
    CHECK(ticket_key_is(sb, n0));
    CHECK_EQ_INT(ticketkeys_count(k), 1);

    fake_now = t0 + day; /* rotation, with the next ticket */
    sc = control_ticket(sctx, cctx, tok_c);
    CHECK_EQ_INT(ticketkeys_newest_name(k, n1), FG_OK);
    CHECK(memcmp(n0, n1, sizeof n0) != 0);
    CHECK(ticket_key_is(sc, n1));
    CHECK(!ticket_key_is(sc, n0));
    CHECK_EQ_INT(ticketkeys_count(k), 2);
    CHECK(data_resumes(sctx, cctx, sa, tok_a)); /* made before the rotation */
    CHECK(data_resumes(sctx, cctx, sc, tok_c));

    fake_now = t0 + retain - 1; /* the last second of n0 */
    CHECK(data_resumes(sctx, cctx, sb, tok_b));
    fake_now = t0 + retain; /* n0 is erased: its tickets no longer resume */
    CHECK(!data_resumes(sctx, cctx, sa, tok_a));
    CHECK(!data_resumes(sctx, cctx, sb, tok_b));
    CHECK(data_resumes(sctx, cctx, sc, tok_c)); /* n1 has a day left */
    CHECK_EQ_INT(ticketkeys_newest_name(k, n), FG_OK);
    CHECK(memcmp(n, n0, sizeof n) != 0);
    fake_now = t0 + day + retain;
    CHECK(!data_resumes(sctx, cctx, sc, tok_c));

    /* A ticket every day for 20 days: 8 keys in steady state (ages 0-7 days). */
    for (int d = 0; d < 20; d++) {
        fake_now = t0 + (10 + d) * day;
        SSL_SESSION_free(control_ticket(sctx, cctx, tok_a));
    }
    CHECK_EQ_INT(ticketkeys_count(k), TLS_CTX_SESSION_LIFETIME_S / day + 1);
    /* An idle month: maintenance alone erases every old key. */
    fake_now += 30 * day;
    ticketkeys_maintain(k);
    CHECK_EQ_INT(ticketkeys_count(k), 1);
out:
    SSL_SESSION_free(sa);
    SSL_SESSION_free(sb);
    SSL_SESSION_free(sc);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}

/* A plain client/server handshake over a BIO pair: 1 when both finish. */
static int raw_handshake(SSL *srv, SSL *cli)
{
    BIO *bs = NULL, *bc = NULL;
    if (BIO_new_bio_pair(&bs, 0, &bc, 0) != 1)
        return 0;
    SSL_set_bio(srv, bs, bs);
    SSL_set_bio(cli, bc, bc);
    SSL_set_accept_state(srv);
    SSL_set_connect_state(cli);
    for (int i = 0; i < 20; i++) {
        int rc = SSL_do_handshake(cli), rs = SSL_do_handshake(srv);
        if (rc == 1 && rs == 1)
            return 1;
        int ec = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(cli, rc);
        int es = rs == 1 ? SSL_ERROR_NONE : SSL_get_error(srv, rs);
        if ((ec != SSL_ERROR_NONE && ec != SSL_ERROR_WANT_READ && ec != SSL_ERROR_WANT_WRITE) ||
            (es != SSL_ERROR_NONE && es != SSL_ERROR_WANT_READ && es != SSL_ERROR_WANT_WRITE))
            break;
    }
    ERR_clear_error();
    return 0;
}

/* SNI moves a handshake from the listener's default identity to another: the
 * other identity's TLS 1.3 suites and groups apply, also when it keeps the
 * defaults and the default identity does not. */
static void test_sni_switch_settings(void)
{
    static config_tls_t narrow, plain; /* tls_ctx_new keeps a pointer: static */
    narrow = tls_config();
    narrow.ciphersuites = "TLS_AES_256_GCM_SHA384";
    narrow.groups = "P-384";
    plain = tls_config();
    char err[256] = "";
    SSL_CTX *a = tls_ctx_new(&narrow, err, sizeof err);
    SSL_CTX *b = tls_ctx_new(&plain, err, sizeof err);
    SSL_CTX *cctx = client_ctx(TLS1_3_VERSION);
    CHECK(a && b && cctx);
    for (int to_plain = 0; a && b && cctx && to_plain <= 1; to_plain++) {
        /* A client offering only X25519 and AES-128-GCM: the plain identity's defaults
         * accept it, the narrow one's P-384 and AES-256-GCM do not. */
        SSL *srv = SSL_new(to_plain ? a : b), *cli = SSL_new(cctx);
        CHECK(srv && cli);
        if (srv && cli) {
            CHECK_EQ_INT(tls_ctx_switch(srv, to_plain ? b : a), 0);
            CHECK_EQ_INT(SSL_set1_groups_list(cli, "X25519"), 1);
            CHECK_EQ_INT(SSL_set_ciphersuites(cli, "TLS_AES_128_GCM_SHA256"), 1);
            CHECK_EQ_INT(raw_handshake(srv, cli), to_plain);
        }
        SSL_free(srv);
        SSL_free(cli);
    }
    SSL_CTX_free(cctx);
    SSL_CTX_free(a);
    SSL_CTX_free(b);
}

/* ---- DHE group and default groups ------------------------------------------- */

/* A certificate and key of pk written to tmp_dir/<name>.pem and .key. */
static int write_identity(EVP_PKEY *pk, const char *name, char *cert, char *key, size_t cap)
{
    snprintf(cert, cap, "%s/%s.pem", tmp_dir, name);
    snprintf(key, cap, "%s/%s.key", tmp_dir, name);
    X509 *x = make_cert(pk);
    BIO *bc = x ? BIO_new_file(cert, "w") : NULL, *bk = bc ? BIO_new_file(key, "w") : NULL;
    int ok = bc && bk && PEM_write_bio_X509(bc, x) == 1 &&
             PEM_write_bio_PrivateKey(bk, pk, NULL, NULL, 0, NULL, NULL) == 1;
    BIO_free(bc);
    BIO_free(bk);
    X509_free(x);
    CHECK(ok);
    return ok;
}

/* 1 when the DHE prime the server of cli sent is the one of group (a name
 * OpenSSL knows: "ffdhe2048", "modp_2048", ...). */
static int dhe_prime_is(SSL *cli, const char *group)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
    EVP_PKEY *ref = NULL, *peer = NULL;
    BIGNUM *p_ref = NULL, *p_peer = NULL;
    int same = pctx && EVP_PKEY_fromdata_init(pctx) == 1 &&
               EVP_PKEY_fromdata(pctx, &ref, EVP_PKEY_KEY_PARAMETERS, params) == 1 &&
               SSL_get_peer_tmp_key(cli, &peer) == 1 && EVP_PKEY_get_bn_param(ref, OSSL_PKEY_PARAM_FFC_P, &p_ref) &&
               EVP_PKEY_get_bn_param(peer, OSSL_PKEY_PARAM_FFC_P, &p_peer) && BN_cmp(p_ref, p_peer) == 0;
    BN_free(p_ref);
    BN_free(p_peer);
    EVP_PKEY_free(ref);
    EVP_PKEY_free(peer);
    EVP_PKEY_CTX_free(pctx);
    ERR_clear_error();
    return same;
}

/* A TLS 1.2 handshake offering only DHE-RSA-AES128-GCM-SHA256 with a server
 * SSL of sctx (moved to switch_to by SNI when not NULL); 1 when it completes
 * with that suite, and then *cli_out is the client (the caller frees it). */
static int dhe_handshake(SSL_CTX *sctx, SSL_CTX *switch_to, SSL **cli_out)
{
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION);
    SSL *srv = sctx ? SSL_new(sctx) : NULL, *cli = cctx ? SSL_new(cctx) : NULL;
    int ok = srv && cli && SSL_set_cipher_list(cli, "DHE-RSA-AES128-GCM-SHA256") == 1 &&
             (!switch_to || tls_ctx_switch(srv, switch_to) == 0) && raw_handshake(srv, cli) &&
             strcmp(SSL_get_cipher_name(cli), "DHE-RSA-AES128-GCM-SHA256") == 0;
    SSL_free(srv);
    if (ok)
        *cli_out = cli;
    else
        SSL_free(cli);
    SSL_CTX_free(cctx);
    return ok;
}

/* The TLS 1.2 DHE suites use RFC 7919's groups (README, ciphers), not RFC
 * 3526's MODP primes that SSL_CTX_set_dh_auto picks on OpenSSL 3.0: ffdhe2048
 * with an RSA-2048 key, ffdhe3072 with RSA-3072; also after SNI moved a
 * handshake from an ECDSA identity to an RSA one. */
static void test_dhe_group(void)
{
    static char cert2[160], key2[160], cert3[160], key3[160];
    static config_tls_t rsa2048, rsa3072, ec;
    EVP_PKEY *pk2 = EVP_RSA_gen(2048), *pk3 = EVP_RSA_gen(3072);
    CHECK(pk2 && pk3);
    if (!pk2 || !pk3 || !write_identity(pk2, "rsa2048", cert2, key2, sizeof cert2) ||
        !write_identity(pk3, "rsa3072", cert3, key3, sizeof cert3))
        goto out;
    rsa2048 = tls_config();
    rsa2048.cert = cert2;
    rsa2048.key = key2;
    rsa3072 = tls_config();
    rsa3072.cert = cert3;
    rsa3072.key = key3;
    ec = tls_config();
    char err[256] = "";
    SSL_CTX *c2 = tls_ctx_new(&rsa2048, err, sizeof err);
    SSL_CTX *c3 = tls_ctx_new(&rsa3072, err, sizeof err);
    SSL_CTX *cec = tls_ctx_new(&ec, err, sizeof err);
    CHECK(c2 && c3 && cec);
    SSL *cli = NULL;
    if (c2 && dhe_handshake(c2, NULL, &cli)) {
        CHECK(dhe_prime_is(cli, "ffdhe2048"));
        CHECK(!dhe_prime_is(cli, "modp_2048")); /* RFC 3526 group 14: what dh_auto gave */
        SSL_free(cli);
    } else {
        CHECK(0);
    }
    if (c3 && dhe_handshake(c3, NULL, &cli)) {
        CHECK(dhe_prime_is(cli, "ffdhe3072"));
        SSL_free(cli);
    } else {
        CHECK(0);
    }
    if (cec && c2 && dhe_handshake(cec, c2, &cli)) {
        CHECK(dhe_prime_is(cli, "ffdhe2048"));
        SSL_free(cli);
    } else {
        CHECK(0);
    }
    SSL_CTX_free(c2);
    SSL_CTX_free(c3);
    SSL_CTX_free(cec);
out:
    EVP_PKEY_free(pk2);
    EVP_PKEY_free(pk3);
    unlink(cert2);
    unlink(key2);
    unlink(cert3);
    unlink(key3);
}

/* The group a handshake between a server SSL of sctx (moved to switch_to by
 * SNI when not NULL) and a client of version offering client_groups (NULL:
 * the client's default) settles on: its NID, -1 when the handshake fails, -2
 * when this OpenSSL does not know client_groups. */
static int settled_group(SSL_CTX *sctx, SSL_CTX *switch_to, int version, const char *client_groups)
{
    SSL_CTX *cctx = client_ctx(version);
    SSL *srv = SSL_new(sctx), *cli = cctx ? SSL_new(cctx) : NULL;
    int g = -1;
    if (!srv || !cli) {
        CHECK(0);
    } else if (client_groups && SSL_set1_groups_list(cli, client_groups) != 1) {
        g = -2;
    } else if (switch_to && tls_ctx_switch(srv, switch_to) != 0) {
        CHECK(0);
    } else if (raw_handshake(srv, cli)) {
        g = SSL_get_negotiated_group(srv);
    }
    ERR_clear_error();
    SSL_free(srv);
    SSL_free(cli);
    SSL_CTX_free(cctx);
    return g;
}

/* README, groups: "OpenSSL's default". An identity without "groups" settles
 * on the same group as a server context that OpenSSL left alone (same
 * certificate, server preference), for TLS 1.3 and 1.2 clients offering their
 * default list, each group alone, and two orders of a pair; also after SNI
 * moved the handshake from an identity with "groups". On OpenSSL 3.5 and later
 * that default is X25519MLKEM768 first, which a written-out 3.0 list would
 * have replaced. */
static void test_default_groups(SSL_CTX *sctx)
{
    static config_tls_t narrow;
    narrow = tls_config();
    narrow.groups = "P-384";
    char err[256] = "";
    SSL_CTX *plain = SSL_CTX_new(TLS_server_method());
    SSL_CTX *from = tls_ctx_new(&narrow, err, sizeof err);
    CHECK(plain && from);
    if (!plain || !from || SSL_CTX_use_certificate_chain_file(plain, cert_path) != 1 ||
        SSL_CTX_use_PrivateKey_file(plain, key_path, SSL_FILETYPE_PEM) != 1) {
        CHECK(0);
        goto out;
    }
    SSL_CTX_set_options(plain, SSL_OP_CIPHER_SERVER_PREFERENCE);
    static const char *const offers[] = {
        NULL, "X25519", "P-256", "P-384", "P-521", "X448", "ffdhe2048", "ffdhe3072", "ffdhe4096",
        "ffdhe8192", "X25519MLKEM768", "SecP256r1MLKEM768", "P-256:X25519", "X25519:P-256", "P-521:P-384",
    };
    static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    int known = 0;
    for (size_t v = 0; v < 2; v++) {
        for (size_t i = 0; i < sizeof offers / sizeof offers[0]; i++) {
            int want = settled_group(plain, NULL, versions[v], offers[i]);
            if (want == -2)
                continue; /* a group this OpenSSL does not have */
            known++;
            int got = settled_group(sctx, NULL, versions[v], offers[i]);
            int switched = settled_group(from, sctx, versions[v], offers[i]);
            if (got != want || switched != want)
                fprintf(stderr, "  TLS %#x offering %s: OpenSSL's default gives %d, the identity %d, after SNI %d\n",
                        versions[v], offers[i] ? offers[i] : "(client default)", want, got, switched);
            CHECK_EQ_INT(got, want);
            CHECK_EQ_INT(switched, want);
        }
    }
    CHECK(known >= 20);
    /* The default settles on something (X25519 on 3.0) for a default client. */
    CHECK(settled_group(sctx, NULL, TLS1_3_VERSION, NULL) > 0);
out:
    SSL_CTX_free(plain);
    SSL_CTX_free(from);
}

/* TLS 1.2 client-initiated renegotiation. tls_ctx sets SSL_OP_NO_RENEGOTIATION,
 * so the server answers the second ClientHello with a warning
 * no_renegotiation alert and carries on; OpenSSL's client treats that refusal
 * as fatal (it asked for a renegotiation it expected to get) and sends
 * handshake_failure, which the engine then reports as a protocol failure. So
 * the engine never renegotiates, does not fail on its own, and ends with
 * FG_TLS when the client gives up. */
static void test_renegotiation(SSL_CTX *sctx)
{
    pair_t p;
    if (!pair_open(&p, sctx, TLS1_2_VERSION))
        return;
    if (!handshake(&p))
        goto out;
    CHECK_EQ_INT(SSL_get_secure_renegotiation_support(p.cli), 1);
    CHECK_EQ_INT(SSL_renegotiate(p.cli), 1);
    ERR_clear_error();
    int rc = SSL_do_handshake(p.cli);
    CHECK_EQ_INT(rc, -1);
    CHECK_EQ_INT(SSL_get_error(p.cli, rc), SSL_ERROR_WANT_READ);
    CHECK(c2s(&p) > 0); /* the renegotiation ClientHello */

    /* The engine refuses and stays open: nothing decrypted, an alert queued. */
    s_poll(&p);
    CHECK_EQ_INT(p.srv_rc, FG_NEED_MORE);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_OPEN);
    CHECK_EQ_INT(p.srx.len, 0);
    CHECK(tls_engine_pending_out(p.eng) > 0);
    CHECK_EQ_INT(SSL_renegotiate_pending(tls_engine_ssl(p.eng)), 0);

    /* The client sees the refusal and aborts. */
    s2c(&p);
    ERR_clear_error();
    rc = SSL_do_handshake(p.cli);
    CHECK(rc <= 0);
    CHECK_EQ_INT(SSL_get_error(p.cli, rc), SSL_ERROR_SSL);
    CHECK_EQ_INT(ERR_GET_REASON(ERR_peek_error()), SSL_R_NO_RENEGOTIATION);
    ERR_clear_error();

    /* Its fatal alert ends the connection on the engine side too. */
    CHECK(c2s(&p) > 0);
    s_poll(&p);
    CHECK_EQ_INT(p.srv_rc, FG_TLS);
    CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_PROTOCOL);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_FAILED);
    CHECK_EQ_INT(tls_engine_write(p.eng, "x", 1), FG_TLS);
out:
    pair_free(&p);
}

/* Right after refusing a renegotiation (before the client reacts), the engine
 * is still open and can write. */
static void test_renegotiation_then_write(SSL_CTX *sctx)
{
    pair_t p;
    if (!pair_open(&p, sctx, TLS1_2_VERSION))
        return;
    if (!handshake(&p))
        goto out;
    CHECK_EQ_INT(SSL_renegotiate(p.cli), 1);
    ERR_clear_error();
    SSL_do_handshake(p.cli);
    c2s(&p);
    s_poll(&p);
    CHECK_EQ_INT(p.srv_rc, FG_NEED_MORE);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_OPEN);
    /* The engine's side is still usable: it can write. */
    CHECK_EQ_INT(tls_engine_write(p.eng, "still here", 10), FG_OK);
    CHECK(tls_engine_pending_out(p.eng) > 0);
out:
    pair_free(&p);
}

/* TLS 1.3 KeyUpdate from the client (update_requested): the engine answers
 * with its own and data keeps flowing both ways. */
static void test_key_update(SSL_CTX *sctx)
{
    pair_t p;
    if (!pair_open(&p, sctx, TLS1_3_VERSION))
        return;
    if (!handshake(&p))
        goto out;
    CHECK(pump(&p) > 0); /* tickets */
    CHECK_EQ_INT(SSL_key_update(p.cli, SSL_KEY_UPDATE_REQUESTED), 1);
    size_t w = 0;
    CHECK(SSL_write_ex(p.cli, "after", 5, &w) == 1);
    CHECK(pump(&p) > 0);
    CHECK_EQ_MEM(p.srx.p, p.srx.len, "after");
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_OPEN);
    CHECK_EQ_INT(tls_engine_write(p.eng, "reply", 5), FG_OK);
    CHECK(pump(&p) > 0);
    CHECK_EQ_MEM(p.crx.p, p.crx.len, "reply");
    unsigned char *d = pattern(100000, 5);
    CHECK(send_c2s(&p, d, 100000, 30000));
    CHECK(send_s2c(&p, d, 100000, 30000));
    free(d);
out:
    pair_free(&p);
}

/* Key updates counted on the client: received (from the engine) and sent. */
static int key_updates_in, key_updates_out;

static void count_key_updates(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                              void *arg)
{
    (void)version;
    (void)ssl;
    (void)arg;
    if (content_type == SSL3_RT_HANDSHAKE && len > 0 && ((const unsigned char *)buf)[0] == SSL3_MT_KEY_UPDATE) {
        if (write_p)
            key_updates_out++;
        else
            key_updates_in++;
    }
}

/* A long TLS 1.3 data connection renews its keys by itself (RFC 8446 §5.5),
 * in both directions, and every byte still arrives intact. */
static void test_automatic_key_update(SSL_CTX *sctx)
{
    pair_t p;
    if (!pair_open(&p, sctx, TLS1_3_VERSION))
        return;
    SSL_set_msg_callback(p.cli, count_key_updates);
    key_updates_in = key_updates_out = 0;
    tls_engine_set_key_update_bytes(p.eng, 1 << 20);
    if (handshake(&p)) {
        CHECK(pump(&p) > 0); /* tickets */
        unsigned char *d = pattern(5 << 20, 11);
        CHECK(send_s2c(&p, d, 5 << 20, 256 << 10)); /* a download of 5 MiB */
        CHECK(key_updates_in >= 4);
        int in = key_updates_in;
        CHECK(send_c2s(&p, d, 3 << 20, 256 << 10)); /* an upload of 3 MiB */
        CHECK(key_updates_in >= in + 2);
        CHECK(key_updates_out >= 2); /* the client answered the requests with its own */
        CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_OPEN);
        free(d);
    }
    pair_free(&p);
}

/* CCC (RFC 4217 §12.3): after the close_notify exchange the connection goes on
 * in clear; bytes behind the peer's close_notify are handed back by
 * tls_engine_take_leftover. Both orders: the peer closes first, or we do. */
static void test_leftover(SSL_CTX *sctx, int version)
{
    SSL_CTX *cctx = client_ctx(version);
    pair_t p;
    unsigned char buf[64];
    size_t got = 0;
    if (!cctx)
        return;
    /* We send close_notify (the proxy's 200 reply to CCC came before it); the
     * client answers with its own and goes on in clear. */
    if (pair_init(&p, sctx, cctx, NULL)) {
        if (handshake(&p)) {
            CHECK_EQ_INT(tls_engine_write(p.eng, "200 CCC ok\r\n", 12), FG_OK);
            CHECK_EQ_INT(tls_engine_shutdown(p.eng), FG_OK);
            /* nothing to take while the engine is not CLOSED */
            CHECK_EQ_INT(tls_engine_take_leftover(p.eng, buf, sizeof buf), 0);
            s2c(&p);
            c_poll(&p);
            CHECK_EQ_MEM(p.crx.p, p.crx.len, "200 CCC ok\r\n");
            CHECK_EQ_INT(p.cli_err, SSL_ERROR_ZERO_RETURN);
            CHECK_EQ_INT(SSL_shutdown(p.cli), 1);
            size_t w = 0;
            CHECK(BIO_write_ex(p.from_cli, "PWD\r\nNOOP\r\n", 11, &w) == 1); /* clear text */
            c2s(&p);
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_CLOSED);
            CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_CLOSED);
            /* small caps: taken in pieces, in order */
            char left[32];
            size_t n = 0, k;
            while (n < sizeof left && (k = tls_engine_take_leftover(p.eng, left + n, 4)) > 0)
                n += k;
            CHECK_EQ_MEM(left, n, "PWD\r\nNOOP\r\n");
            CHECK_EQ_INT(tls_engine_take_leftover(p.eng, buf, sizeof buf), 0);
            CHECK_EQ_INT(tls_engine_take_leftover(p.eng, buf, 0), 0);
            /* more clear text fed later is available too */
            CHECK_EQ_INT(tls_engine_feed(p.eng, "QUIT\r\n", 6), FG_OK);
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_CLOSED);
            n = tls_engine_take_leftover(p.eng, buf, sizeof buf);
            CHECK_EQ_MEM(buf, n, "QUIT\r\n");
        }
        pair_free(&p);
    }
    /* The client's close_notify, data before it and clear text after it, in
     * one feed. */
    if (pair_init(&p, sctx, cctx, NULL)) {
        if (handshake(&p)) {
            size_t w = 0;
            CHECK(SSL_write_ex(p.cli, "CCC\r\n", 5, &w) == 1);
            CHECK_EQ_INT(SSL_shutdown(p.cli), 0);
            CHECK(BIO_write_ex(p.from_cli, "USER x\r\n", 8, &w) == 1);
            c2s(&p);
            CHECK_EQ_INT(tls_engine_take_leftover(p.eng, buf, sizeof buf), 0); /* not CLOSED yet */
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_OK);
            CHECK_EQ_MEM(buf, got, "CCC\r\n");
            CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_CLOSED);
            size_t n = tls_engine_take_leftover(p.eng, buf, sizeof buf);
            CHECK_EQ_MEM(buf, n, "USER x\r\n");
        }
        pair_free(&p);
    }
    /* No leftover on a plain close. */
    if (pair_init(&p, sctx, cctx, NULL)) {
        if (handshake(&p)) {
            close_both(&p);
            CHECK_EQ_INT(tls_engine_take_leftover(p.eng, buf, sizeof buf), 0);
        }
        pair_free(&p);
    }
    SSL_CTX_free(cctx);
}

/* TLS 1.3: the client's Finished and its first command arrive in one feed
 * (clients write right after their handshake completes). One read finishes
 * the handshake and returns the command. */
static void test_finished_and_data_together(SSL_CTX *sctx)
{
    pair_t p;
    if (!pair_open(&p, sctx, TLS1_3_VERSION))
        return;
    ERR_clear_error();
    CHECK_EQ_INT(SSL_do_handshake(p.cli), -1); /* ClientHello */
    c2s(&p);
    unsigned char buf[64];
    size_t got = 0;
    CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_NEED_MORE);
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_HANDSHAKING);
    CHECK(tls_engine_pending_out(p.eng) > 0); /* ServerHello .. Finished */
    s2c(&p);
    CHECK_EQ_INT(SSL_do_handshake(p.cli), 1); /* client done; its Finished queued */
    size_t w = 0;
    CHECK(SSL_write_ex(p.cli, "USER x\r\n", 8, &w) == 1);
    c2s(&p);
    CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_OK);
    CHECK_EQ_MEM(buf, got, "USER x\r\n");
    CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_OPEN);
    CHECK_EQ_INT(tls_engine_handshake_done(p.eng), 1);
    CHECK(tls_engine_pending_out(p.eng) > 0); /* session tickets */
    CHECK(pump(&p) > 0);
    CHECK_EQ_INT(tls_engine_write(p.eng, "331 ok\r\n", 8), FG_OK);
    CHECK(pump(&p) > 0);
    CHECK_EQ_MEM(p.crx.p, p.crx.len, "331 ok\r\n");
    pair_free(&p);
}

static void test_fail_reuse(SSL_CTX *sctx)
{
    pair_t p;
    if (!pair_open(&p, sctx, 0))
        return;
    if (handshake(&p)) {
        tls_engine_fail_reuse(p.eng, "data connection did not resume the control session");
        CHECK_EQ_INT(tls_engine_state(p.eng), TLS_ENGINE_FAILED);
        CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_REUSE);
        CHECK_STR(tls_engine_reason(p.eng), "data connection did not resume the control session");
        unsigned char buf[8];
        size_t got = 0;
        CHECK_EQ_INT(tls_engine_read(p.eng, buf, sizeof buf, &got), FG_TLS);
        CHECK_EQ_INT(tls_engine_write(p.eng, "x", 1), FG_TLS);
        /* a second failure does not overwrite the first */
        tls_engine_fail_reuse(p.eng, "other");
        CHECK_STR(tls_engine_reason(p.eng), "data connection did not resume the control session");
    }
    pair_free(&p);
}

/* min_version 1.3 on the server, a client capped at 1.2: protocol failure
 * with a protocol_version alert for the client. */
static void test_version_mismatch(void)
{
    char err[256] = "";
    char v13[] = "1.3";
    config_tls_t t = tls_config();
    t.min_version = v13;
    SSL_CTX *sctx = tls_ctx_new(&t, err, sizeof err);
    CHECK(sctx != NULL);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION);
    pair_t p;
    if (sctx && cctx && pair_init(&p, sctx, cctx, NULL)) {
        ERR_clear_error();
        SSL_do_handshake(p.cli);
        CHECK(pump(&p) > 0);
        CHECK_EQ_INT(p.srv_rc, FG_TLS);
        CHECK_EQ_INT(tls_engine_failure(p.eng), TLS_FAIL_PROTOCOL);
        CHECK(strstr(tls_engine_reason(p.eng), "TLS handshake failed: ") != NULL);
        CHECK_EQ_INT(p.cli_err, SSL_ERROR_SSL);
        CHECK_EQ_INT(SSL_is_init_finished(p.cli), 0);
        pair_free(&p);
    }
    /* ... and a TLS 1.3 client is fine */
    SSL_CTX_free(cctx);
    cctx = client_ctx(0);
    if (sctx && cctx && pair_init(&p, sctx, cctx, NULL)) {
        if (handshake(&p))
            CHECK_STR(tls_engine_version(p.eng), "TLSv1.3");
        pair_free(&p);
    }
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);

    /* max_version 1.2 on the server: a 1.3-capable client gets 1.2 */
    char v12[] = "1.2";
    t = tls_config();
    t.max_version = v12;
    sctx = tls_ctx_new(&t, err, sizeof err);
    CHECK(sctx != NULL);
    cctx = client_ctx(0);
    if (sctx && cctx && pair_init(&p, sctx, cctx, NULL)) {
        if (handshake(&p))
            CHECK_STR(tls_engine_version(p.eng), "TLSv1.2");
        pair_free(&p);
    }
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}

static void expect_ctx_error(config_tls_t *t, const char *prefix)
{
    char err[256];
    memset(err, 'x', sizeof err);
    err[sizeof err - 1] = '\0';
    SSL_CTX *ctx = tls_ctx_new(t, err, sizeof err);
    CHECK(ctx == NULL);
    SSL_CTX_free(ctx);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fprintf(stderr, "  err \"%s\", expected prefix \"%s\"\n", err, prefix);
    CHECK(strncmp(err, prefix, strlen(prefix)) == 0);
    CHECK(strchr(err, '\n') == NULL);
    CHECK(strstr(err, "PRIVATE KEY") == NULL);
    CHECK_EQ_INT(ERR_peek_error(), 0);
}

static void test_ctx_errors(void)
{
    config_tls_t t = tls_config();
    t.cert = missing_path;
    expect_ctx_error(&t, "tls.main.cert:");

    t = tls_config();
    t.cert = junk_path;
    expect_ctx_error(&t, "tls.main.cert:");

    t = tls_config();
    t.key = missing_path;
    expect_ctx_error(&t, "tls.main.key:");

    t = tls_config();
    t.key = key2_path; /* a valid key, but not the certificate's */
    expect_ctx_error(&t, "tls.main.key:");

    t = tls_config();
    t.key = cert_path; /* a certificate where the key should be */
    expect_ctx_error(&t, "tls.main.key:");

    char other_id[] = "backup";
    t = tls_config();
    t.id = other_id;
    t.cert = missing_path;
    expect_ctx_error(&t, "tls.backup.cert:");

    char bad_ciphers[] = "NO-SUCH-CIPHER";
    t = tls_config();
    t.ciphers = bad_ciphers;
    expect_ctx_error(&t, "tls.main.ciphers:");

    char bad_suites[] = "TLS_NO_SUCH_SUITE";
    t = tls_config();
    t.ciphersuites = bad_suites;
    expect_ctx_error(&t, "tls.main.ciphersuites:");

    char bad_groups[] = "no-such-group";
    t = tls_config();
    t.groups = bad_groups;
    expect_ctx_error(&t, "tls.main.groups:");

    /* The good configuration, for contrast. */
    t = tls_config();
    char err[256] = "";
    SSL_CTX *ctx = tls_ctx_new(&t, err, sizeof err);
    CHECK(ctx != NULL);
    if (ctx) {
        CHECK(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
        CHECK(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
        CHECK_EQ_INT(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    }
    SSL_CTX_free(ctx);
}

int main(void)
{
    if (!setup_files()) {
        cleanup_files();
        check_report();
        return 1;
    }
    SSL_CTX *sctx = server_ctx();
    if (sctx) {
        test_before_handshake(sctx);
        test_handshake_and_data(sctx, TLS1_2_VERSION, "TLSv1.2");
        test_handshake_and_data(sctx, TLS1_3_VERSION, "TLSv1.3");
        test_client_close(sctx, TLS1_2_VERSION);
        test_client_close(sctx, TLS1_3_VERSION);
        test_engine_shutdown(sctx, TLS1_2_VERSION);
        test_engine_shutdown(sctx, TLS1_3_VERSION);
        test_closing_then_eof(sctx);
        test_eof_truncation(sctx);
        test_garbage(sctx);
        test_resumption(sctx, TLS1_2_VERSION);
        test_resumption(sctx, TLS1_3_VERSION);
        test_session_tokens(sctx, TLS1_2_VERSION, 1);
        test_session_tokens(sctx, TLS1_2_VERSION, 0);
        test_session_tokens(sctx, TLS1_3_VERSION, 1);
        test_old_control_session(sctx);
        test_session_lifetime(sctx);
        test_tls12_session_ids(sctx);
        test_fatal_alert(sctx, TLS1_2_VERSION);
        test_fatal_alert(sctx, TLS1_3_VERSION);
        test_tls13_resumption_dhe(sctx);
        test_sni_switch_settings();
        test_default_groups(sctx);
        test_renegotiation(sctx);
        test_renegotiation_then_write(sctx);
        test_key_update(sctx);
        test_automatic_key_update(sctx);
        test_fail_reuse(sctx);
        test_leftover(sctx, TLS1_2_VERSION);
        test_leftover(sctx, TLS1_3_VERSION);
        test_finished_and_data_together(sctx);
    }
    SSL_CTX_free(sctx);
    test_ticket_rotation();
    test_dhe_group();
    test_version_mismatch();
    test_ctx_errors();
    cleanup_files();
    return check_report();
}
