#include "tls_ctx.h"

#include "tls_engine.h"
#include "ticketkeys.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void ctx_error(char *err, size_t errlen, const config_tls_t *tls, const char *key,
                      const char *what)
{
    char ebuf[160] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, ebuf, sizeof ebuf);
    ERR_clear_error();
    snprintf(err, errlen, "tls.%s.%s: %s%s%s", tls->id, key, what, ebuf[0] ? ": " : "", ebuf);
}

/* SSL_CTX ex_data: the identity's settings (owned by the config, which
 * outlives its contexts), for tls_ctx_switch. Created once at start-up. */
static int settings_index = -1;

/* TLS 1.2 without "ciphers": forward-secret AEAD suites only (Mozilla's
 * "intermediate" list; DHE for older Windows clients whose SChannel has GCM
 * only with DHE on RSA certificates, over an RFC 7919 group: set_dhe_group).
 * OpenSSL's own default also offers static RSA key exchange and CBC suites,
 * which scanners rightly flag; legacy clients can be let in with an explicit
 * "ciphers". TLS 1.3 suites are all AEAD. */
static const char tls12_default_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

/* Without "groups" a context keeps OpenSSL's own default (X25519MLKEM768
 * first from OpenSSL 3.5 on). Only an SSL that SNI moves from an identity
 * with "groups" to one without must be given the default back, by name: the
 * pseudo-group DEFAULT from 3.5 on, before it the built-in list, unchanged
 * from 3.0 to 3.4 (ssl/t1_lib.c, supported_groups_default). */
static const char groups_default_before_3_5[] =
    "X25519:P-256:X448:P-521:P-384:ffdhe2048:ffdhe3072:ffdhe4096:ffdhe6144:ffdhe8192";

static int set_default_groups(SSL *ssl)
{
    if (SSL_set1_groups_list(ssl, "DEFAULT") == 1)
        return 1;
    ERR_clear_error();
    return SSL_set1_groups_list(ssl, groups_default_before_3_5);
}

/* What an identity uses, configured or default. */
static const char *tls12_ciphers_of(const config_tls_t *t)
{
    return t->ciphers ? t->ciphers : tls12_default_ciphers;
}

static const char *tls13_suites_of(const config_tls_t *t)
{
    return t->ciphersuites ? t->ciphersuites : OSSL_default_ciphersuites();
}


static int version_of(const char *v)
{
    if (!v || strcmp(v, "1.2") == 0)
        return TLS1_2_VERSION;
    if (strcmp(v, "1.3") == 0)
        return TLS1_3_VERSION;
    return 0;
}

static const config_tls_t *settings_of(SSL_CTX *ctx)
{
    return settings_index >= 0 && ctx ? SSL_CTX_get_ex_data(ctx, settings_index) : NULL;
}

int tls_ctx_switch(SSL *ssl, SSL_CTX *ctx)
{
    const config_tls_t *from = settings_of(SSL_get_SSL_CTX(ssl));
    const config_tls_t *tls = settings_of(ctx);
    if (!tls || SSL_set_SSL_CTX(ssl, ctx) != ctx)
        return -1;
    /* SSL_set_SSL_CTX moves the certificate (and the DHE group with it) only;
     * the rest is per SSL, copied from the listener's default identity by
     * SSL_new: every setting is set, defaults included, or that identity's
     * choices would stay. An SSL without a groups list of its own follows its
     * current context's default. */
    int ok = SSL_set_min_proto_version(ssl, version_of(tls->min_version)) &&
             SSL_set_max_proto_version(ssl, tls->max_version ? version_of(tls->max_version) : 0) &&
             SSL_set_cipher_list(ssl, tls12_ciphers_of(tls)) && SSL_set_ciphersuites(ssl, tls13_suites_of(tls));
    if (ok && tls->groups)
        ok = SSL_set1_groups_list(ssl, tls->groups);
    else if (ok && (!from || from->groups))
        ok = set_default_groups(ssl);
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), NULL);
    return ok ? 0 : -1;
}

/* SECURITY: the finite-field group of the TLS 1.2 DHE-RSA suites, from RFC
 * 7919 (named, safe primes that clients can recognise and check):
 * SSL_CTX_set_dh_auto would pick RFC 3526's MODP primes on OpenSSL 3.0.
 * ffdhe2048 matches an RSA-2048 key (112-bit strength), ffdhe3072 a key of
 * 128 bits or more (RSA-3072 and up); larger groups buy nothing past the
 * 128-bit AEAD suites and would let any client that offers only DHE make each
 * handshake cost a 4096- or 8192-bit exponentiation. */
static int set_dhe_group(SSL_CTX *ctx)
{
    EVP_PKEY *key = SSL_CTX_get0_privatekey(ctx);
    char *group = key && EVP_PKEY_get_security_bits(key) >= 128 ? "ffdhe3072" : "ffdhe2048";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
    EVP_PKEY *dh = NULL;
    int ok = pctx && EVP_PKEY_fromdata_init(pctx) == 1 &&
             EVP_PKEY_fromdata(pctx, &dh, EVP_PKEY_KEY_PARAMETERS, params) == 1 &&
             SSL_CTX_set0_tmp_dh_pkey(ctx, dh) == 1;
    if (!ok)
        EVP_PKEY_free(dh); /* on success the context owns it */
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

SSL_CTX *tls_ctx_new(const config_tls_t *tls, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ctx_error(err, errlen, tls, "cert", "cannot create TLS context");
        return NULL;
    }
    /* SECURITY: TLS 1.2 minimum by default; no renegotiation (CVE-2009-3555
     * class attacks, CPU DoS) and no compression (CRIME). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (!SSL_CTX_set_min_proto_version(ctx, version_of(tls->min_version))) {
        ctx_error(err, errlen, tls, "min_version", "not supported");
        goto fail;
    }
    if (tls->max_version && !SSL_CTX_set_max_proto_version(ctx, version_of(tls->max_version))) {
        ctx_error(err, errlen, tls, "max_version", "not supported");
        goto fail;
    }
    if (!SSL_CTX_set_cipher_list(ctx, tls12_ciphers_of(tls))) {
        ctx_error(err, errlen, tls, "ciphers", "no usable cipher");
        goto fail;
    }
    if (!SSL_CTX_set_ciphersuites(ctx, tls13_suites_of(tls))) {
        ctx_error(err, errlen, tls, "ciphersuites", "no usable ciphersuite");
        goto fail;
    }
    if (tls->groups && !SSL_CTX_set1_groups_list(ctx, tls->groups)) {
        ctx_error(err, errlen, tls, "groups", "unknown group");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1) {
        ctx_error(err, errlen, tls, "cert", "cannot load certificate chain");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM) != 1) {
        /* Never echo key material: only the path and OpenSSL's reason. */
        ctx_error(err, errlen, tls, "key", "cannot load private key");
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ctx_error(err, errlen, tls, "key", "does not match the certificate");
        goto fail;
    }
    if (!set_dhe_group(ctx)) {
        ctx_error(err, errlen, tls, "key", "cannot set up the DHE group");
        goto fail;
    }
    if (tls->client_ca && tls->client_cert != CLIENT_CERT_NONE) {
        if (SSL_CTX_load_verify_locations(ctx, tls->client_ca, NULL) != 1) {
            ctx_error(err, errlen, tls, "client_ca", "cannot load CA file");
            goto fail;
        }
        int mode = SSL_VERIFY_PEER;
        if (tls->client_cert == CLIENT_CERT_REQUIRED)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    /* Data connections resume the control connection's session (RFC 4217
     * §10.2 recommends it; vsftpd's require_ssl_reuse). */
    static const unsigned char sid_ctx[] = "ftpsgate";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    /* TLS 1.2 resumes by session id from this cache only, never by ticket
     * (tls_engine.c, on_ticket_decrypt). SECURITY: a TLS 1.2 ticket carries
     * the master secret of the control connection itself, sent in clear
     * (RFC 5077 §3.3), so whoever later holds the ticket key reads every
     * recorded session it covers; the cache keeps a session only while its
     * control connection lives (tls_session_forget), so nothing outlives the
     * connections. TLS 1.3 sessions are not cached (stateless tickets). The
     * cache thus holds live TLS 1.2 control sessions only: its bound is that of
     * limits.max_sessions, so that it never evicts a live one. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 1000000);
    /* A session ages from the control handshake, and a TLS 1.2 client resuming
     * by session id has nothing to renew it with: the control session must stay
     * resumable as long as its control connection may live (sync jobs keep one
     * open for days). The limit is TLS 1.3's (RFC 8446 §4.6.1: 7 days). Only
     * that control connection's data connections can resume it (its token is
     * the session id context), and the session leaves the cache when the
     * control connection ends (tls_session_forget). */
    SSL_CTX_set_timeout(ctx, TLS_CTX_SESSION_LIFETIME_S);
    /* Clients open one data connection per transfer and may spend a TLS 1.3
     * ticket on each; a few spare tickets avoid falling back to full handshakes. */
    SSL_CTX_set_num_tickets(ctx, 4);
    /* TLS 1.3 ticket keys: a new one every day, each kept until the last
     * ticket it made has expired (a client may spend its first ticket on the
     * last data connection of a 7-day control connection), then erased.
     * SECURITY: a stolen ticket key opens the tickets of its last 8 days, but
     * not the traffic of the connections that resumed with them: OpenSSL
     * resumes TLS 1.3 only with a fresh (EC)DHE (psk_dhe_ke; psk_ke needs
     * SSL_OP_ALLOW_NO_DHE_KEX, never set here). */
    if (ticketkeys_install(ctx, TICKETKEYS_ROTATE_S, TLS_CTX_SESSION_LIFETIME_S) != 0) {
        ctx_error(err, errlen, tls, "cert", "cannot set up session ticket keys");
        goto fail;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (settings_index < 0)
        settings_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (settings_index < 0 || !SSL_CTX_set_ex_data(ctx, settings_index, (void *)tls) ||
        tls_engine_prepare_ctx(ctx) != 0) {
        ctx_error(err, errlen, tls, "cert", "cannot set up session tickets");
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_ctx_not_after(SSL_CTX *ctx, long long *unix_time)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    const ASN1_TIME *end = cert ? X509_get0_notAfter(cert) : NULL;
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days = 0, secs = 0;
    int ok = end && epoch && ASN1_TIME_diff(&days, &secs, epoch, end);
    ASN1_TIME_free(epoch);
    if (!ok)
        return -1;
    *unix_time = (long long)days * 86400 + secs;
    return 0;
}
