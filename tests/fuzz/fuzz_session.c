/* libFuzzer target for the session's control state machine: the real
 * proxy/session.c and proxy/dataplan.c with the real policy, parsers, line
 * reader, line queue, session registry and a real configuration (TLS
 * contexts included), over an in-memory world (fake_world.h): the client
 * connection, the backend control connection and the data links are fakes
 * driven by the input. One process, no socket, the libuv loop run in
 * UV_RUN_NOWAIT steps; the session's timer is fired by the input, never by
 * the clock (the uv_timer_* calls are wrapped at link time), so every run
 * is deterministic.
 *
 * The input is a script, one event per line (README.md, "Fuzzing"):
 *
 *   line 1     flags: the listener's configuration (config_flags below)
 *   C<text>    the client sends text CRLF     c<text> text as is    L<text> text LF
 *   B<text>    the backend sends text CRLF    b<text> text as is
 *   T S G F K  the client's TLS handshake, its close_notify, a bad TLS record, FIN, reset
 *   r R        the client stops / resumes reading our replies
 *   D<k>       the data link reports: 0 every byte delivered, 1 425, 2 426 (server side), 3 522, 4 426
 *   N<k>       the next data link cannot be made (even k: no free port, odd: I/O error)
 *   X<k>       the backend connection fails (k: upstream_failure_t)   W  writes to it fail from now on
 *   Z          the session's timer fires      A  the listener aborts the session     .  (a pause)
 *   *<n><ev>   the event ev, n times
 *
 * Consecutive client (or backend) bytes arrive in one read. Every event is
 * followed by running the loop until nothing moves. The checks (FZ_FAIL
 * aborts, so libFuzzer keeps the input):
 *   - the backend gets only what policy_decide forwarded, the data commands
 *     the data plan owes, and ABOR only during a transfer; USER/PASS/ACCT only
 *     if they came inside TLS when the policy requires it; a transfer command
 *     only over a link of the protection the policy requires; nothing before
 *     the greeting; an active data link only to the client (anti-bounce);
 *   - nothing the client sent in clear before TLS started is executed after;
 *   - after a transfer's 1xx, its final reply reaches the client only once
 *     the link reported, and never as 2xx when the link failed;
 *   - memory: the replies the session wrote are bounded by a multiple of the
 *     input, the unread ones by a constant, and (sanitizer builds) the heap
 *     the session holds by a constant;
 *   - at the end the session frees everything: its connections, data link,
 *     passive port, timer and session-registry entry. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "defer.h"
#include "fake_world.h"
#include "fgerr.h"
#include "ftp_addr.h"
#include "ftp_cmd.h"
#include "ftp_reply.h"
#include "generation.h"
#include "log.h"
#include "netaddr.h"
#include "policy.h"
#include "portpool.h"
#include "session.h"
#include "sessreg.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FZ_HEAP_CHECK 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(FZ_HEAP_CHECK)
#define FZ_HEAP_CHECK 1
#endif
#ifdef FZ_HEAP_CHECK
/* The ASan runtime's (sanitizer/allocator_interface.h, which GCC does not install). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* Budgets of one input (a repeat can multiply a short script). */
#define MAX_EVENTS 50000u
#define MAX_BYTES (512u * 1024u)
#define MAX_REPEAT 20000u
/* Replies written: at most this many bytes per byte or event of input... */
#define OUT_PER_INPUT 64u
#define OUT_SLACK 4096u
/* ...replies the client did not read: the high mark plus what the session may
 * write before it looks (a held reply, a merged FEAT line, deferred commands). */
#define QUEUE_BOUND (TSTREAM_HIGH_MARK + 768u * 1024u)
/* Heap the session holds, its connections' models included. */
#define HEAP_BOUND (1024u * 1024u)

fz_env_t fz_env;

/* ---- reporting --------------------------------------------------------------------- */

static int tracing = -1;

int fz_tracing(void)
{
    if (tracing < 0) {
        const char *t = getenv("FUZZ_SESSION_TRACE");
        tracing = t && *t && *t != '0';
    }
    return tracing;
}

/* FUZZ_SESSION_MAX_EVENTS lowers the event budget of one input (a campaign that
 * wants many executions of short scripts); never above MAX_EVENTS. */
static unsigned max_events(void)
{
    static unsigned cached;
    if (!cached) {
        const char *v = getenv("FUZZ_SESSION_MAX_EVENTS");
        unsigned long n = v ? strtoul(v, NULL, 10) : 0;
        cached = n > 0 && n < MAX_EVENTS ? (unsigned)n : MAX_EVENTS;
    }
    return cached;
}

void fz_trace(const char *fmt, ...)
{
    if (!fz_tracing())
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("  | ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void fz_trace_bytes(const char *what, const char *p, size_t n)
{
    if (!fz_tracing())
        return;
    char esc[600];
    log_escape(p, n < 256 ? n : 256, esc, sizeof esc);
    fprintf(stderr, "  | %s: \"%s\"%s (%zu bytes)\n", what, esc, n > 256 ? "..." : "", n);
}

void fz_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\nfuzz_session: INVARIANT BROKEN (%s:%d): ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(rerun the input with FUZZ_SESSION_TRACE=1 for the transcript)\n");
    va_end(ap);
    abort();
}

/* ---- the session's timer: fired by the script, never by the clock ------------------ */

int __real_uv_timer_start(uv_timer_t *h, uv_timer_cb cb, uint64_t timeout, uint64_t repeat);
int __real_uv_timer_stop(uv_timer_t *h);
void __real_uv_close(uv_handle_t *h, uv_close_cb cb);
int __wrap_uv_timer_start(uv_timer_t *h, uv_timer_cb cb, uint64_t timeout, uint64_t repeat);
int __wrap_uv_timer_stop(uv_timer_t *h);
void __wrap_uv_close(uv_handle_t *h, uv_close_cb cb);

#define TIMERS_MAX 8
static struct {
    uv_timer_t *h;
    uv_timer_cb cb;
    uint64_t timeout;
} timers[TIMERS_MAX];

static void timer_forget(const void *h)
{
    for (int i = 0; i < TIMERS_MAX; i++)
        if (timers[i].h == h)
            timers[i].h = NULL;
}

int __wrap_uv_timer_start(uv_timer_t *h, uv_timer_cb cb, uint64_t timeout, uint64_t repeat)
{
    if (repeat)
        FZ_FAIL("repeating timers are not modelled");
    if (uv_is_closing((uv_handle_t *)h))
        return UV_EINVAL; /* as libuv */
    timer_forget(h);
    for (int i = 0; i < TIMERS_MAX; i++)
        if (!timers[i].h) {
            timers[i].h = h;
            timers[i].cb = cb;
            timers[i].timeout = timeout;
            return 0;
        }
    FZ_FAIL("more than %d timers armed", TIMERS_MAX);
}

int __wrap_uv_timer_stop(uv_timer_t *h)
{
    timer_forget(h);
    return 0;
}

void __wrap_uv_close(uv_handle_t *h, uv_close_cb cb)
{
    timer_forget(h);
    __real_uv_close(h, cb);
}

/* The armed timer with the earliest deadline fires (one-shot, as libuv). */
static int fire_timer(void)
{
    int best = -1;
    for (int i = 0; i < TIMERS_MAX; i++)
        if (timers[i].h && (best < 0 || timers[i].timeout < timers[best].timeout))
            best = i;
    if (best < 0)
        return 0;
    uv_timer_t *h = timers[best].h;
    uv_timer_cb cb = timers[best].cb;
    timers[best].h = NULL;
    fz_trace("timer fires (%llu ms)", (unsigned long long)timers[best].timeout);
    cb(h);
    return 1;
}

static int timers_armed(void)
{
    for (int i = 0; i < TIMERS_MAX; i++)
        if (timers[i].h)
            return 1;
    return 0;
}

/* ---- what the session decided and did ------------------------------------------------ */

void __real_policy_decide(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out);
void __wrap_policy_decide(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out);

static struct {
    /* The last decision. */
    int have;
    policy_action_t action;
    ftp_cmd_id_t id;
    char verb[5];
    char arg[70000];
    size_t arg_len;
    int has_arg;
    int lines_sent, raw_sent;
    /* The transfer in progress, as the client sees it. */
    int deferring; /* fz_transfer_running */
    int xfer;
    unsigned xfer_link;
    int xfer_prelim;
    int xfer_status; /* 0 pending, 1 every byte delivered, 2 failed */
    unsigned last_link;
    int last_link_status;
    /* The client's reply stream. */
    ftp_reply_state_t out_state;
    char out_head[4];
    size_t out_head_len, out_line_len;
    int out_line_open;
    fz_out_src_t out_line_src;
    /* Volumes. */
    size_t in_bytes, events, out_bytes, max_queue, max_heap;
} O;

static int is_login(ftp_cmd_id_t id)
{
    return id == FTP_CMD_USER || id == FTP_CMD_PASS || id == FTP_CMD_ACCT;
}

void __wrap_policy_decide(const policy_state_t *st, const ftp_cmd_t *cmd, policy_decision_t *out)
{
    __real_policy_decide(st, cmd, out);
    /* SECURITY (checked): plaintext injected before AUTH (CVE-2011-0411 class)
     * must never run once TLS started, not even after waiting in a queue
     * (the queue's case was finding 1 of README.md "Fuzzing"). */
    int deferred = 0;
    if (fzc_line_stale(cmd->verb, cmd->arg, cmd->arg_len, &deferred))
        FZ_FAIL("\"%s\" arrived in clear before TLS started and was executed after it", cmd->verb);
    O.deferring = 0;
    O.have = 1;
    O.action = out->action;
    O.id = cmd->id;
    memcpy(O.verb, cmd->verb, sizeof O.verb);
    O.has_arg = cmd->arg != NULL;
    O.arg_len = cmd->arg && cmd->arg_len <= sizeof O.arg ? cmd->arg_len : 0;
    if (O.arg_len)
        memcpy(O.arg, cmd->arg, O.arg_len);
    O.lines_sent = O.raw_sent = 0;
    fz_trace("policy: %s -> action %d%s", cmd->verb, (int)out->action, out->refusal ? " (refusal)" : "");
}

static int forwards(policy_action_t a)
{
    return a == POLICY_FORWARD || a == POLICY_FEAT || a == POLICY_TRANSFER || a == POLICY_QUIT;
}

static data_protection_t rule_for(ftp_cmd_id_t id)
{
    if (id == FTP_CMD_LIST || id == FTP_CMD_NLST || id == FTP_CMD_MLSD)
        return fz_env.cfg->policy.listing_protection;
    return fz_env.cfg->policy.data_protection;
}

static SSL_CTX *control_ctx;

static void check_transfer(const ftp_cmd_t *cmd)
{
    fzd_info_t link;
    if (!fzd_current(&link))
        FZ_FAIL("%s forwarded with no data link", cmd->verb);
    if (!link.direction_set || link.upload != ftp_cmd_is_upload(cmd->id))
        FZ_FAIL("%s forwarded over link %u without its direction set", cmd->verb, link.id);
    data_protection_t rule = rule_for(cmd->id);
    /* SECURITY (checked): RFC 4217 §9, a clear data channel where the policy
     * requires protection (and the reverse) never carries a transfer. */
    if (rule == PROTECT_PRIVATE && !link.tls)
        FZ_FAIL("%s forwarded over a clear data link while the policy requires PROT P", cmd->verb);
    if (rule == PROTECT_CLEAR && link.tls)
        FZ_FAIL("%s forwarded over a TLS data link while the policy allows only clear", cmd->verb);
    if (link.tls && link.tls_ctx != control_ctx)
        FZ_FAIL("data link TLS context is not the control connection's");
    if (O.last_link == link.id && O.last_link_status == 2)
        FZ_FAIL("%s forwarded over link %u, which had already failed", cmd->verb, link.id);
    O.xfer = 1;
    O.deferring = 1;
    O.xfer_link = link.id;
    O.xfer_prelim = 0;
    O.xfer_status = O.last_link == link.id ? O.last_link_status : 0;
}

/* The data command the plan sends for its side of the channel: PASV/EPSV, or
 * PORT/EPRT naming our own listener (never the client's address). */
static void check_raw(const char *data, size_t len)
{
    if (!O.have || (O.action != POLICY_PASSIVE && O.action != POLICY_ACTIVE))
        FZ_FAIL("raw bytes to the backend outside PASV/EPSV/PORT/EPRT");
    if (++O.raw_sent > 2)
        FZ_FAIL("more than two data commands for one client command");
    if (len < 6 || data[len - 2] != '\r' || data[len - 1] != '\n')
        FZ_FAIL("a data command without CRLF");
    if ((len == 6 && memcmp(data, "PASV", 4) == 0) || (len == 6 && memcmp(data, "EPSV", 4) == 0))
        return;
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    if (len > 5 && memcmp(data, "PORT ", 5) == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a;
        uint16_t port;
        if (ftp_addr_parse_port(data + 5, len - 7, &in->sin_addr, &port) != FG_OK)
            FZ_FAIL("unparseable PORT to the backend");
        in->sin_family = AF_INET;
    } else if (len > 5 && memcmp(data, "EPRT ", 5) == 0) {
        if (ftp_addr_parse_eprt(data + 5, len - 7, &a) != FG_OK)
            FZ_FAIL("unparseable EPRT to the backend");
    } else {
        FZ_FAIL("unknown data command to the backend");
    }
    /* SECURITY (checked): the backend's data connection only ever comes to us. */
    if (!netaddr_same_ip((const struct sockaddr *)&a, (const struct sockaddr *)&fz_env.backend_local))
        FZ_FAIL("PORT/EPRT to the backend names an address that is not the proxy's");
}

void fz_obs_backend_command(fz_up_kind_t kind, const char *data, size_t len)
{
    fz_trace_bytes(kind == FZ_UP_RAW ? "to backend (raw)" : kind == FZ_UP_ABORT ? "to backend (Synch)" : "to backend",
                   data, len);
    if (kind == FZ_UP_RAW) {
        check_raw(data, len);
        return;
    }
    if (kind == FZ_UP_ABORT) {
        if (!O.xfer)
            FZ_FAIL("ABOR with Synch while no transfer runs");
        O.xfer = 0;
        return;
    }
    ftp_cmd_t cmd;
    if (ftp_cmd_parse(data, len, &cmd) != FG_OK)
        FZ_FAIL("a line the policy never saw went to the backend");
    /* SECURITY (checked): nothing reaches the backend but what policy_decide
     * forwarded, once. */
    if (!O.have || !forwards(O.action) || O.lines_sent++ > 0)
        FZ_FAIL("%s reached the backend without a forwarding decision", cmd.verb);
    if (strcmp(cmd.verb, O.verb) != 0 || (cmd.arg != NULL) != O.has_arg ||
        (cmd.arg && (cmd.arg_len != O.arg_len || memcmp(cmd.arg, O.arg, O.arg_len) != 0)))
        FZ_FAIL("the backend got %s, the policy decided on %s", cmd.verb, O.verb);
    /* SECURITY (checked): credentials only under TLS when the policy says so:
     * the line came to us inside TLS (it may run once that TLS session is
     * over, e.g. sent before the client's close_notify after REIN). */
    if (is_login(cmd.id) && fz_env.cfg->policy.login_requires_tls &&
        !fzc_line_protected(cmd.verb, cmd.arg, cmd.arg_len))
        FZ_FAIL("%s reached the backend but came in clear", cmd.verb);
    if (O.action == POLICY_TRANSFER)
        check_transfer(&cmd);
}

void fz_obs_link_done(unsigned id, int code)
{
    O.last_link = id;
    O.last_link_status = code == 0 ? 1 : 2;
    if (O.xfer && O.xfer_link == id)
        O.xfer_status = O.last_link_status;
}

int fz_transfer_running(void)
{
    return O.deferring;
}

void fz_obs_tls_started(void)
{
    fz_trace("client: TLS starts (handshake awaited)");
}

/* One complete line of the client's reply stream. */
static void output_line(void)
{
    ftp_reply_line_t r;
    fz_out_src_t src = O.out_line_src;
    if (ftp_reply_feed(&O.out_state, O.out_head, O.out_head_len, &r) != FG_OK) {
        /* A hostile backend can leave a multi-line reply open around the
         * session's own replies: the stream is the backend's to garble. */
        ftp_reply_init(&O.out_state);
        return;
    }
    if (!O.xfer || !r.last)
        return;
    if (r.code < 200) {
        O.xfer_prelim = 1;
        return;
    }
    /* The session's own replies during a transfer: NOOP, STAT, bad lines, 421. */
    if ((src == FZ_OUT_REPLY && (r.code == 200 || r.code == 500 || r.code == 421)) || r.code == 213)
        return;
    /* SECURITY (checked), DESIGN.md §2: the final reply waits for the last byte. */
    if (O.xfer_prelim && O.xfer_status == 0)
        FZ_FAIL("final reply %d reached the client before data link %u finished", r.code, O.xfer_link);
    /* Never a 2xx over a failed link, with or without a 1xx before it (a 2xx
     * without one was finding 2 of README.md "Fuzzing"). */
    if (r.code / 100 == 2 && O.xfer_status == 2)
        FZ_FAIL("%d reached the client for a transfer whose data link %u failed", r.code, O.xfer_link);
    O.xfer = 0;
}

void fz_obs_client_output(fz_out_src_t src, const char *data, size_t len)
{
    O.out_bytes += len;
    if (O.out_bytes > OUT_PER_INPUT * (O.in_bytes + O.events) + OUT_SLACK)
        FZ_FAIL("%zu bytes of replies for %zu input bytes and %zu events", O.out_bytes, O.in_bytes, O.events);
    if (memchr(data, '\0', len))
        FZ_FAIL("NUL in a reply to the client");
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        if (!O.out_line_open) {
            O.out_line_open = 1;
            O.out_line_src = src;
            O.out_head_len = O.out_line_len = 0;
        }
        for (size_t i = 0; i < n && O.out_head_len < sizeof O.out_head; i++)
            if (data[i] != '\r')
                O.out_head[O.out_head_len++] = data[i];
        O.out_line_len += n;
        if (!nl)
            break;
        if (O.out_line_len == 0 || O.out_line_len > 8194)
            FZ_FAIL("a reply line of %zu bytes", O.out_line_len);
        output_line();
        O.out_line_open = 0;
        data += n + 1;
        len -= n + 1;
    }
}

/* ---- configurations --------------------------------------------------------------------- */

/* The header line, a set of letters:
 *   i implicit   t login without TLS   a/c data protection any/clear   y/z listings any/clear
 *   x CCC allowed   0/2 require_session_reuse false/"client"   u uploads without close_notify
 *   p PROXY header  b data peer is the balancer   M/m backend data_mode active/client
 *   o active mode off   l low ports allowed   I interception   n announced address and ports
 *   s max_line 512   k TCP keepalive   6 IPv6 client   v IPv6 backend   q over the per-IP limit
 *   g the connection's addresses cannot be read */
enum {
    F_IMPLICIT = 1u << 0, F_NOTLS = 1u << 1, F_ANY = 1u << 2, F_CLEAR = 1u << 3, F_LANY = 1u << 4,
    F_LCLEAR = 1u << 5, F_CCC = 1u << 6, F_REUSE0 = 1u << 7, F_REUSE2 = 1u << 8, F_UPFIN = 1u << 9,
    F_PROXY = 1u << 10, F_BALANCER = 1u << 11, F_DMACTIVE = 1u << 12, F_DMCLIENT = 1u << 13,
    F_NOACTIVE = 1u << 14, F_LOWPORTS = 1u << 15, F_INTERCEPT = 1u << 16, F_ANNOUNCE = 1u << 17,
    F_SMALL = 1u << 18, F_KEEPALIVE = 1u << 19,
    /* not in the configuration */
    F_V6 = 1u << 20, F_V6BACKEND = 1u << 21, F_OVERLIMIT = 1u << 22, F_NOADDR = 1u << 23
};

static unsigned config_flags(const char *p, size_t n)
{
    static const char letters[] = "itacyzx02upbMmolInsk6vqg";
    unsigned f = 0;
    for (size_t i = 0; i < n; i++) {
        const char *at = memchr(letters, p[i], sizeof letters - 1);
        if (at)
            f |= 1u << (at - letters);
    }
    /* What config.c refuses: CCC on implicit listeners (MS-FTPS), a data peer
     * without a PROXY header. */
    if (f & F_IMPLICIT)
        f &= ~F_CCC;
    if (!(f & F_PROXY))
        f &= ~F_BALANCER;
    return f;
}

static char *cert_pem, *key_pem;

static void make_identity(void)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    if (!pk || !x || !cb || !kb)
        abort();
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_set_version(x, 2) != 1 || ASN1_INTEGER_set(X509_get_serialNumber(x), 7) != 1 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) || !X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) ||
        X509_set_pubkey(x, pk) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz.invalid", -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1 || X509_sign(x, pk, EVP_sha256()) <= 0 || PEM_write_bio_X509(cb, x) != 1 ||
        PEM_write_bio_PrivateKey(kb, pk, NULL, NULL, 0, NULL, NULL) != 1)
        abort();
    char *p;
    long n = BIO_get_mem_data(cb, &p);
    cert_pem = strndup(p, (size_t)n);
    n = BIO_get_mem_data(kb, &p);
    key_pem = strndup(p, (size_t)n);
    if (!cert_pem || !key_pem)
        abort();
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        abort();
}

/* The four configurations of the limits (max_line 512 or 4096, keepalive
 * off or on) are loaded once, each with its TLS context: loading one takes
 * milliseconds, a run of the session microseconds. Each input then sets the
 * listener's own settings in the loaded listener, as config.c would have
 * parsed them from the flags: the fields the session, the data plan and the
 * policy read. */
static generation_t *gens[4];
static config_listener_t pristine[4];

static generation_t *load_generation(int small, int keepalive)
{
    char dir[512], cert[600], key[600], json[4096], err[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ftpsgate-fuzz-session.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    write_file(cert, cert_pem);
    write_file(key, key_pem);
    snprintf(json, sizeof json,
             "{ \"tls\": { \"main\": { \"cert\": \"%s\", \"key\": \"%s\" } },\n"
             "  \"listeners\": [ { \"name\": \"fuzz\", \"bind\": \"0.0.0.0:2121\", \"mode\": \"explicit\", \"tls\": \"main\",\n"
             "    \"backend\": { \"address\": \"198.51.100.5:21\", \"data_mode\": \"passive\" },\n"
             "    \"passive\": { \"ports\": \"50000-50003\", \"announce\": \"203.0.113.10\", \"announce_ports\": \"60000-60003\" },\n"
             "    \"proxy_protocol\": { \"trusted\": [\"192.0.2.0/24\", \"2001:db8::/32\"] } } ],\n"
             "  \"limits\": { \"max_line\": %u, \"max_line_prelogin\": 512, \"tcp_keepalive\": %u },\n"
             "  \"log\": { \"level\": \"error\" } }\n",
             cert, key, small ? 512u : 4096u, keepalive ? 60u : 0u);
    config_t *cfg = NULL;
    generation_t *g = NULL;
    if (config_load_string(json, &cfg, err, sizeof err) == FG_OK)
        g = generation_new(cfg, err, sizeof err);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    if (!g) {
        fprintf(stderr, "fuzz_session: the configuration does not load: %s\n%s", err, json);
        abort();
    }
    return g;
}

static generation_t *generation_for(unsigned f)
{
    static const data_protection_t prot[] = {PROTECT_PRIVATE, PROTECT_ANY, PROTECT_CLEAR};
    int v = (f & F_SMALL ? 1 : 0) | (f & F_KEEPALIVE ? 2 : 0);
    if (!gens[v]) {
        gens[v] = load_generation(v & 1, v & 2);
        pristine[v] = generation_config(gens[v])->listeners[0];
    }
    config_listener_t *l = (config_listener_t *)&generation_config(gens[v])->listeners[0];
    *l = pristine[v];
    int dp = f & F_CLEAR ? 2 : f & F_ANY ? 1 : 0;
    l->mode = f & F_IMPLICIT ? LISTEN_IMPLICIT : LISTEN_EXPLICIT;
    l->policy.login_requires_tls = !(f & F_NOTLS);
    l->policy.data_protection = prot[dp];
    l->policy.listing_protection = prot[f & F_LCLEAR ? 2 : f & F_LANY ? 1 : dp];
    l->policy.ccc_allowed = (f & F_CCC) != 0;
    l->policy.require_session_reuse = f & F_REUSE0   ? SESSION_REUSE_OFF
                                      : f & F_REUSE2 ? SESSION_REUSE_CLIENT
                                                     : SESSION_REUSE_CONNECTION;
    l->policy.upload_requires_close_notify = !(f & F_UPFIN);
    l->proxy_protocol.enabled = (f & F_PROXY) != 0;
    l->proxy_protocol.data_peer_balancer = (f & F_BALANCER) != 0;
    l->backend.data_mode = f & F_DMACTIVE ? DATA_MODE_ACTIVE : f & F_DMCLIENT ? DATA_MODE_CLIENT : DATA_MODE_PASSIVE;
    l->backend.intercept = (f & F_INTERCEPT) != 0;
    l->active.enabled = !(f & F_NOACTIVE);
    l->active.allow_low_ports = (f & F_LOWPORTS) != 0;
    if (!(f & F_ANNOUNCE)) {
        l->passive.n_announce = 0;
        l->passive.announce_first = 0;
    }
    return gens[v];
}

/* ---- the world ------------------------------------------------------------------------- */

static uv_loop_t loop;
static metrics_t metrics;
static portpool_t *pool;
static int gone, overlimit;
static session_t *session;

/* The per-IP admission of a client behind a PROXY header (session.h). */
static const char *admit_client(void *ctx, const struct sockaddr *addr)
{
    (void)ctx;
    (void)addr;
    return overlimit ? "too many sessions from this address" : NULL;
}

static void session_gone(void *ctx, session_t *s, const struct sockaddr *counted_ip)
{
    (void)ctx;
    (void)counted_ip;
    if (s != session || gone++)
        FZ_FAIL("session gone twice");
}

static void set_addr(struct sockaddr_storage *out, const char *ip, uint16_t port)
{
    if (netaddr_parse_ip(ip, port, out) != FG_OK)
        abort();
}

static size_t driver_bytes(void);

static void heap_check(size_t base)
{
#ifdef FZ_HEAP_CHECK
    size_t now = __sanitizer_get_current_allocated_bytes();
    size_t fake = fzc_fake_bytes() + fzu_fake_bytes() + driver_bytes();
    size_t held = now > base + fake ? now - base - fake : 0;
    if (held > O.max_heap)
        O.max_heap = held;
    if (held > HEAP_BOUND)
        FZ_FAIL("the session holds %zu bytes of heap", held);
#else
    (void)base;
    (void)driver_bytes;
#endif
}

/* Runs the loop and moves bytes until nothing happens any more. */
static void settle(size_t heap_base)
{
    for (unsigned round = 0;; round++) {
        if (round > 100000)
            FZ_FAIL("the session never settles");
        int busy = 0;
        for (unsigned i = 0; uv_run(&loop, UV_RUN_NOWAIT) != 0; i++) {
            if (i > 10000)
                FZ_FAIL("the event loop never goes idle");
            busy = 1;
        }
        busy |= fzc_pump();
        busy |= fzu_pump();
        if (!busy && uv_loop_alive(&loop) == 0)
            break;
    }
    if (fzc_queued() > O.max_queue)
        O.max_queue = fzc_queued();
    if (fzc_queued() > QUEUE_BOUND)
        FZ_FAIL("%zu bytes of replies wait for a client that does not read", fzc_queued());
    heap_check(heap_base);
}

/* Once per process (lazily: the corpus replayer has no initialize hook). */
static void init_once(void)
{
    static int done;
    if (done++)
        return;
    const char *lvl = getenv("FUZZ_SESSION_LOG");
    log_setup(lvl ? log_level_parse(lvl) : LOG_LEVEL_ERROR, 0);
    make_identity();
    if (uv_loop_init(&loop) != 0 || defer_setup(&loop) != 0)
        abort();
    pool = portpool_new(50000, 50003);
    if (!pool)
        abort();
    fz_env.loop = &loop;
}

/* ---- the script --------------------------------------------------------------------------- */

static struct {
    char *buf;
    size_t len, cap;
    int side; /* 0 none, 1 client, 2 backend */
} pending;

static size_t driver_bytes(void)
{
    return pending.cap;
}

static void flush(size_t heap_base)
{
    if (pending.side == 1)
        fzc_send(FZC_DATA, pending.buf, pending.len);
    else if (pending.side == 2)
        fzu_send(pending.buf, pending.len);
    if (pending.side)
        settle(heap_base);
    pending.side = 0;
    pending.len = 0;
}

static void queue_bytes(int side, const char *p, size_t n, const char *end, size_t heap_base)
{
    if (pending.side != side)
        flush(heap_base);
    size_t total = n + strlen(end);
    if (pending.len + total > pending.cap) {
        size_t cap = (pending.len + total) * 2;
        char *b = realloc(pending.buf, cap);
        if (!b)
            abort();
        pending.buf = b;
        pending.cap = cap;
    }
    if (n)
        memcpy(pending.buf + pending.len, p, n);
    if (total > n)
        memcpy(pending.buf + pending.len + n, end, total - n);
    pending.len += total;
    pending.side = side;
    O.in_bytes += total;
}

static int digit(const char *p, size_t n)
{
    return n > 0 && p[0] >= '0' && p[0] <= '9' ? p[0] - '0' : 0;
}

static void event(char op, const char *p, size_t n, size_t heap_base)
{
    switch (op) {
    case 'C': queue_bytes(1, p, n, "\r\n", heap_base); return;
    case 'c': queue_bytes(1, p, n, "", heap_base); return;
    case 'L': queue_bytes(1, p, n, "\n", heap_base); return;
    case 'B': queue_bytes(2, p, n, "\r\n", heap_base); return;
    case 'b': queue_bytes(2, p, n, "", heap_base); return;
    default: break;
    }
    flush(heap_base);
    switch (op) {
    case 'T': fzc_send(FZC_HANDSHAKE, NULL, 0); break;
    case 'S': fzc_send(FZC_CLOSE_NOTIFY, NULL, 0); break;
    case 'G': fzc_send(FZC_TLS_GARBAGE, NULL, 0); break;
    case 'F': fzc_send(FZC_FIN, NULL, 0); break;
    case 'K': fzc_reset(); break;
    case 'r': fzc_set_reading(0); break;
    case 'R': fzc_set_reading(1); break;
    case 'D': fzd_done(digit(p, n)); break;
    case 'N': fzd_fail_next(digit(p, n) % 2 ? FG_IO : FG_RANGE); break;
    case 'X': fzu_fail(digit(p, n) % 4); break;
    case 'W': fzu_break_writes(); break;
    case 'Z': fire_timer(); break;
    case 'A':
        if (!gone) {
            fz_trace("listener aborts the session");
            session_abort(session, "fuzz: abort");
        }
        break;
    default: break; /* '.', '#' comments, unknown: nothing, but the loop runs */
    }
    settle(heap_base);
}

static void run_script(const char *data, size_t size, size_t heap_base)
{
    size_t pos = 0;
    while (pos < size && O.events < max_events() && O.in_bytes < MAX_BYTES) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - line) : size - pos;
        pos += len + 1;
        unsigned long times = 1;
        if (len > 0 && line[0] == '*') {
            times = 0;
            size_t i = 1;
            while (i < len && line[i] >= '0' && line[i] <= '9' && times < MAX_REPEAT)
                times = times * 10 + (unsigned long)(line[i++] - '0');
            if (times > MAX_REPEAT)
                times = MAX_REPEAT;
            line += i;
            len -= i;
        }
        if (len == 0)
            continue;
        for (unsigned long k = 0; k < times && O.events < max_events() && O.in_bytes < MAX_BYTES; k++) {
            event(line[0], line + 1, len - 1, heap_base);
            O.events++; /* every event counts toward the reply budget, bytes or not */
        }
    }
    flush(heap_base);
}

/* ---- one input ------------------------------------------------------------------------------ */

static void end_session(size_t heap_base)
{
    /* The client reads, the listener aborts, the grace timer fires: a session
     * must be gone after that. */
    for (int round = 0; round < 4 && !gone; round++) {
        fzc_set_reading(1);
        settle(heap_base);
        if (!gone)
            session_abort(session, "fuzz: end of input");
        settle(heap_base);
        if (!gone && fire_timer())
            settle(heap_base);
    }
    if (!gone)
        FZ_FAIL("the session did not end after abort (client %s, %u upstreams, %u links, timer %s)",
                fzc_alive() ? "open" : "closed", fzu_live(), fzd_live(), timers_armed() ? "armed" : "idle");
    if (fzc_alive() || fzu_live() || fzd_live())
        FZ_FAIL("the session ended but left a client (%d), %u upstreams, %u links", fzc_alive(), fzu_live(),
                fzd_live());
    if (timers_armed())
        FZ_FAIL("a timer is still armed after the session ended");
    if (sessreg_count() != 0)
        FZ_FAIL("%zu session-registry entries after the session ended", sessreg_count());
    if (portpool_in_use(pool) != 0)
        FZ_FAIL("%u passive ports still taken after the session ended", portpool_in_use(pool));
}

static int dummy_stream;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long long id;
    init_once();
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t head = nl ? (size_t)(nl - in) : size;
    unsigned flags = config_flags(in, head);
    generation_t *gen = generation_for(flags);

    memset(&O, 0, sizeof O);
    ftp_reply_init(&O.out_state);
    memset(&metrics, 0, sizeof metrics);
    gone = 0;
    overlimit = (flags & F_OVERLIMIT) != 0;
    const config_t *all = generation_config(gen);
    fz_env.cfg = &all->listeners[0];
    fz_env.addresses_fail = (flags & F_NOADDR) != 0;
    control_ctx = generation_listener_tls(gen, 0);
    if (flags & F_V6) {
        set_addr(&fz_env.client_addr, "2001:db8::10", 40000);
        set_addr(&fz_env.local_addr, "2001:db8::1", 2121);
    } else {
        set_addr(&fz_env.client_addr, "192.0.2.10", 40000);
        set_addr(&fz_env.local_addr, "192.0.2.1", 2121);
    }
    memcpy(&fz_env.real_client, &fz_env.client_addr, sizeof fz_env.real_client);
    if (flags & F_V6BACKEND) {
        set_addr(&fz_env.backend_addr, "2001:db8:1::5", 21);
        set_addr(&fz_env.backend_local, "2001:db8:1::1", 50123);
    } else {
        set_addr(&fz_env.backend_addr, "198.51.100.5", 21);
        set_addr(&fz_env.backend_local, "198.51.100.1", 50123);
    }
    session_origin_t origin;
    memset(&origin, 0, sizeof origin);
    set_addr(&origin.dst, flags & F_V6 ? "2001:db8:20::5" : "10.20.0.5", 21);
    origin.redirected = 1;

#ifdef FZ_HEAP_CHECK
    size_t heap_base = __sanitizer_get_current_allocated_bytes();
#else
    size_t heap_base = 0;
#endif
    fz_trace("---- input of %zu bytes, flags %#x", size, flags);
    session_env_t env = {
        .loop = &loop,
        .gen = gen,
        .listener_index = 0,
        .pool = pool,
        .metrics = &metrics,
        .admit_client = admit_client,
        .gone = session_gone,
        .ctx = NULL,
    };
    session = session_start(&env, (tstream_t *)&dummy_stream, ++id, flags & F_INTERCEPT ? &origin : NULL);
    if (!session)
        FZ_FAIL("session_start failed");
    settle(heap_base);
    if (nl)
        run_script(nl + 1, size - head - 1, heap_base);
    end_session(heap_base);
    fz_trace("---- end: %zu bytes in, %zu events, %zu bytes of replies, queue max %zu, heap max %zu", O.in_bytes,
             O.events, O.out_bytes, O.max_queue, O.max_heap);

    fzc_reset_world();
    fzu_reset_world();
    fzd_reset_world();
    free(pending.buf);
    memset(&pending, 0, sizeof pending);
    return 0;
}
