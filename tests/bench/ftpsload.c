/* ftpsload: a light explicit-FTPS load generator for the benchmarks (tests/bench/bench.py).
 *
 * One thread, one epoll loop, non-blocking sockets, OpenSSL. Every session does a full TLS
 * handshake (no client session cache, no resumption), so the server's handshake cost is what
 * the load measures. Modes:
 *
 *   ftpsload rate HOST PORT CAFILE [--conc N] [--seconds S] [--max N] [--user U] [--pass P]
 *       sessions of connect, 220, AUTH TLS, 234, handshake, USER, PASS, 230, QUIT, 221, close;
 *       N at a time, new ones started for S seconds (at most --max in all), then the ones
 *       under way finish (at most 20 s more). Prints one JSON line: ok, errors, wall_s, rate,
 *       latency percentiles, cpu_s (this process's user+system time) and the first error.
 *   ftpsload hold HOST PORT CAFILE --n N [--conc C] [--deadline S] [--user U] [--pass P]
 *       opens N sessions up to the logged-in state (also PBSZ 0, PROT P), at most C handshakes
 *       at a time, within S seconds; prints "READY ok errors" and one JSON line, then keeps
 *       them idle until its stdin reaches end of file (or S more seconds pass), sends QUIT on
 *       each, waits for the 221s (at most 20 s) and prints a last JSON line.
 *
 * The certificate is verified against CAFILE (no host name check: the benchmark dials
 * 127.0.0.1). Loopback only is the caller's business: HOST is taken as given.
 * Build: cc -O2 -o ftpsload ftpsload.c -lssl -lcrypto */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum st { S_FREE, S_CONNECT, S_GREET, S_AUTH, S_HS, S_USER, S_PASS, S_PBSZ, S_PROT, S_IDLE, S_QUIT, S_EOF };

struct conn {
    int fd;
    enum st st;
    SSL *ssl;
    double t0;              /* when the session started */
    size_t len;             /* bytes in buf */
    char buf[1024];
};

static struct {
    int hold;
    const char *host, *user, *pass;
    int port;
    int conc, max, n;
    double seconds, deadline;
    SSL_CTX *ctx;
    int ep;
    struct conn *c;
    int nconn;
    long started, ok, errors, active, idle;
    double *lat;
    long nlat, caplat;
    char first_error[256];
    struct sockaddr_in sa;
} G;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void note_error(const char *fmt, ...)
{
    if (G.first_error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(G.first_error, sizeof G.first_error, fmt, ap);
    va_end(ap);
    for (char *p = G.first_error; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = ' ';
}

static void want(struct conn *c, uint32_t ev)
{
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &e) != 0) {
        perror("epoll_ctl");
        exit(2);
    }
}

static void finish(struct conn *c, int good)
{
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);   /* also leaves the epoll set */
    c->fd = -1;
    if (c->st == S_IDLE)
        G.idle--;   /* an idle session the server dropped */
    c->st = S_FREE;
    G.active--;
    if (good) {
        G.ok++;
        if (G.nlat < G.caplat)
            G.lat[G.nlat++] = now() - c->t0;
    } else {
        G.errors++;
    }
}

static void fail(struct conn *c, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char eb[160] = "";
    if (e)
        ERR_error_string_n(e, eb, sizeof eb);
    note_error("state %d: %s%s%s (errno %d)", (int)c->st, what, eb[0] ? ": " : "", eb, errno);
    ERR_clear_error();
    finish(c, 0);
}

static int start_one(struct conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error("socket: %s", strerror(errno));
        G.errors++;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(c, 0, offsetof(struct conn, buf));
    c->fd = fd;
    c->st = S_CONNECT;
    c->t0 = now();
    G.started++;
    G.active++;
    struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &e) != 0) {
        perror("epoll_ctl add");
        exit(2);
    }
    if (connect(fd, (struct sockaddr *)&G.sa, sizeof G.sa) != 0 && errno != EINPROGRESS) {
        fail(c, "connect");
        return -1;
    }
    return 0;
}

/* One complete reply in c->buf: its code (removed from the buffer), 0 when none yet, -1 on
 * a malformed or oversized one. */
static int take_reply(struct conn *c)
{
    size_t i = 0;
    while (i < c->len) {
        char *nl = memchr(c->buf + i, '\n', c->len - i);
        if (!nl)
            break;
        size_t end = (size_t)(nl - c->buf) + 1;
        const char *l = c->buf + i;
        if (end - i >= 4 && l[0] >= '1' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' && l[2] >= '0' &&
            l[2] <= '9' && l[3] == ' ') {
            int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
            memmove(c->buf, c->buf + end, c->len - end);
            c->len -= end;
            return code;
        }
        i = end;
    }
    if (c->len == sizeof c->buf)
        return -1;
    return 0;
}

static int send_line(struct conn *c, const char *line)
{
    size_t n = strlen(line);
    if (c->ssl) {
        int r = SSL_write(c->ssl, line, (int)n);
        if (r != (int)n) {
            fail(c, "SSL_write");
            return -1;
        }
        return 0;
    }
    ssize_t r = send(c->fd, line, n, MSG_NOSIGNAL);
    if (r != (ssize_t)n) {
        fail(c, "send");
        return -1;
    }
    return 0;
}

static int handshake(struct conn *c)
{
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        if (SSL_session_reused(c->ssl)) {
            fail(c, "session resumed (every session must be a full handshake)");
            return -1;
        }
        char line[300];
        snprintf(line, sizeof line, "USER %s\r\n", G.user);
        if (send_line(c, line) != 0)
            return -1;
        c->st = S_USER;
        want(c, EPOLLIN);
        return 0;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        want(c, EPOLLIN);
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        want(c, EPOLLOUT);
        return 0;
    }
    fail(c, "handshake");
    return -1;
}

/* A reply arrived in state c->st: the next step. */
static int on_reply(struct conn *c, int code)
{
    char line[300];
    switch (c->st) {
    case S_GREET:
        if (code != 220)
            break;
        c->st = S_AUTH;
        return send_line(c, "AUTH TLS\r\n");
    case S_AUTH:
        if (code != 234)
            break;
        if (c->len) {
            fail(c, "bytes after 234");
            return -1;
        }
        c->ssl = SSL_new(G.ctx);
        if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
            fail(c, "SSL_new");
            return -1;
        }
        c->st = S_HS;
        return handshake(c);
    case S_USER:
        if (code == 230)
            goto logged_in;
        if (code != 331)
            break;
        snprintf(line, sizeof line, "PASS %s\r\n", G.pass);
        c->st = S_PASS;
        return send_line(c, line);
    case S_PASS:
        if (code != 230)
            break;
logged_in:
        if (G.hold) {
            c->st = S_PBSZ;
            return send_line(c, "PBSZ 0\r\n");
        }
        c->st = S_QUIT;
        return send_line(c, "QUIT\r\n");
    case S_PBSZ:
        if (code != 200)
            break;
        c->st = S_PROT;
        return send_line(c, "PROT P\r\n");
    case S_PROT:
        if (code != 200)
            break;
        c->st = S_IDLE;
        G.idle++;
        return 0;
    case S_QUIT:
        if (code != 221)
            break;
        /* close_notify, then wait for the server's end of stream (no reset). */
        SSL_shutdown(c->ssl);
        c->st = S_EOF;
        return 0;
    default:
        break;
    }
    char what[64];
    snprintf(what, sizeof what, "unexpected reply %d", code);
    fail(c, what);
    return -1;
}

static void on_event(struct conn *c, uint32_t ev)
{
    if (c->st == S_CONNECT) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            errno = err;
            fail(c, "connect");
            return;
        }
        c->st = S_GREET;
        want(c, EPOLLIN);
        return;
    }
    if (c->st == S_HS) {
        handshake(c);
        return;
    }
    (void)ev;
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            int r = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - c->len));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    return;
                if (c->st == S_EOF && (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)) {
                    ERR_clear_error();
                    finish(c, 1);
                    return;
                }
                fail(c, e == SSL_ERROR_ZERO_RETURN ? "server closed" : "SSL_read");
                return;
            }
            n = r;
        } else {
            n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (n <= 0) {
                fail(c, n == 0 ? "server closed" : "recv");
                return;
            }
        }
        c->len += (size_t)n;
        int code;
        while ((code = take_reply(c)) != 0) {
            if (code < 0) {
                fail(c, "bad reply");
                return;
            }
            enum st before = c->st;
            if (on_reply(c, code) != 0)
                return;
            if (before == S_AUTH || c->st == S_HS)
                return; /* the socket now belongs to the handshake */
        }
        if (c->st == S_FREE)
            return;
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void loop_once(int ms)
{
    struct epoll_event ev[256];
    int n = epoll_wait(G.ep, ev, 256, ms);
    if (n < 0 && errno != EINTR) {
        perror("epoll_wait");
        exit(2);
    }
    for (int i = 0; i < n; i++) {
        struct conn *c = ev[i].data.ptr;
        if (c->st != S_FREE)
            on_event(c, ev[i].events);
    }
}

static void expire(double limit)
{
    double t = now();
    for (int i = 0; i < G.nconn; i++) {
        struct conn *c = &G.c[i];
        if (c->st != S_FREE && c->st != S_IDLE && t - c->t0 > limit) {
            errno = ETIMEDOUT;
            fail(c, "timed out");
        }
    }
}

static void print_result(const char *phase, double t0, double t1, double cpu0)
{
    qsort(G.lat, (size_t)G.nlat, sizeof *G.lat, cmp_d);
    double p50 = G.nlat ? G.lat[G.nlat / 2] : 0, p99 = G.nlat ? G.lat[(long)(G.nlat * 0.99)] : 0;
    double wall = t1 - t0;
    printf("{\"phase\": \"%s\", \"ok\": %ld, \"errors\": %ld, \"wall_s\": %.3f, \"rate_per_s\": %.1f, "
           "\"lat_ms_p50\": %.2f, \"lat_ms_p99\": %.2f, \"cpu_s\": %.3f, \"conc\": %d, \"first_error\": \"%s\"}\n",
           phase, G.ok, G.errors, wall, wall > 0 ? G.ok / wall : 0, p50 * 1e3, p99 * 1e3, cpu_s() - cpu0,
           G.conc, G.first_error);
    fflush(stdout);
}

static int run_rate(void)
{
    double cpu0 = cpu_s(), t0 = now(), stop_at = t0 + G.seconds, grace = 20;
    while (now() < stop_at && G.started < G.max) {
        for (int i = 0; i < G.nconn && G.active < G.conc && G.started < G.max; i++)
            if (G.c[i].st == S_FREE)
                start_one(&G.c[i]);
        loop_once(100);
        expire(grace);
    }
    double end_by = now() + grace;
    while (G.active > 0 && now() < end_by) {
        loop_once(100);
        expire(grace);
    }
    double t1 = now();
    expire(0);
    print_result("rate", t0, t1, cpu0);
    return G.ok > 0 ? 0 : 1;
}

static int stdin_closed(void)
{
    struct pollfd p = { .fd = 0, .events = POLLIN };
    if (poll(&p, 1, 0) <= 0)
        return 0;
    char b[256];
    ssize_t n = read(0, b, sizeof b);
    return n <= 0;
}

static int run_hold(void)
{
    double cpu0 = cpu_s(), t0 = now(), end_by = t0 + G.deadline;
    long opened = 0;
    /* G.active counts sessions not yet idle or failed plus idle ones; conc limits the ones in setup. */
    while (G.idle + G.errors < G.n && now() < end_by) {
        for (int i = 0; i < G.nconn && opened < G.n && (G.active - G.idle) < G.conc; i++)
            if (G.c[i].st == S_FREE) {
                opened++;
                start_one(&G.c[i]);
            }
        loop_once(100);
        expire(G.deadline);
    }
    double t1 = now();
    for (int i = 0; i < G.nconn; i++)
        if (G.c[i].st != S_FREE && G.c[i].st != S_IDLE) {
            errno = ETIMEDOUT;
            fail(&G.c[i], "setup did not finish");
        }
    printf("READY %ld %ld\n", G.idle, G.errors);
    long idle_n = G.idle, err_n = G.errors;
    G.ok = idle_n;
    print_result("hold-open", t0, t1, cpu0);
    G.ok = 0;
    /* Idle until stdin closes; count sessions the server drops meanwhile. */
    double hold_until = now() + G.deadline;
    while (!stdin_closed() && now() < hold_until)
        loop_once(200);
    long dropped = G.errors - err_n;
    double q0 = now(), cpu1 = cpu_s();
    G.errors = 0;
    G.nlat = 0;
    for (int i = 0; i < G.nconn; i++)
        if (G.c[i].st == S_IDLE) {
            G.c[i].st = S_QUIT;
            G.idle--;
            G.c[i].t0 = now();
            send_line(&G.c[i], "QUIT\r\n");
        }
    double quit_by = now() + 20;
    while (G.active > 0 && now() < quit_by)
        loop_once(100);
    expire(0);
    printf("{\"phase\": \"hold-close\", \"quit_ok\": %ld, \"quit_errors\": %ld, \"dropped_while_idle\": %ld, "
           "\"wall_s\": %.3f, \"cpu_s\": %.3f, \"first_error\": \"%s\"}\n",
           G.ok, G.errors, dropped, now() - q0, cpu_s() - cpu1, G.first_error);
    return idle_n == G.n ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: ftpsload rate|hold HOST PORT CAFILE [--conc N] [--seconds S] [--max N] [--n N]\n"
                    "       [--deadline S] [--user U] [--pass P]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 5)
        usage();
    G.hold = strcmp(argv[1], "hold") == 0;
    if (!G.hold && strcmp(argv[1], "rate") != 0)
        usage();
    G.host = argv[2];
    G.port = atoi(argv[3]);
    const char *ca = argv[4];
    G.user = "anonymous";
    G.pass = "bench@example.invalid";
    G.conc = 32;
    G.seconds = 10;
    G.max = 1000000;
    G.n = 100;
    G.deadline = 120;
    for (int i = 5; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--conc")) G.conc = atoi(v);
        else if (!strcmp(k, "--seconds")) G.seconds = atof(v);
        else if (!strcmp(k, "--max")) G.max = atoi(v);
        else if (!strcmp(k, "--n")) G.n = atoi(v);
        else if (!strcmp(k, "--deadline")) G.deadline = atof(v);
        else if (!strcmp(k, "--user")) G.user = v;
        else if (!strcmp(k, "--pass")) G.pass = v;
        else usage();
    }
    if (G.conc < 1 || G.n < 1 || G.max < 1 || G.seconds <= 0 || G.seconds > 600 || G.deadline <= 0 ||
        G.deadline > 3600)
        usage();
    signal(SIGPIPE, SIG_IGN);
    G.sa.sin_family = AF_INET;
    G.sa.sin_port = htons((uint16_t)G.port);
    if (inet_pton(AF_INET, G.host, &G.sa.sin_addr) != 1)
        usage();
    G.ctx = SSL_CTX_new(TLS_client_method());
    if (!G.ctx || SSL_CTX_load_verify_locations(G.ctx, ca, NULL) != 1) {
        fprintf(stderr, "ftpsload: cannot load %s\n", ca);
        return 2;
    }
    SSL_CTX_set_verify(G.ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(G.ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(G.ctx, SSL_MODE_RELEASE_BUFFERS);
    G.nconn = G.hold ? G.n : G.conc;
    G.c = calloc((size_t)G.nconn, sizeof *G.c);
    G.caplat = G.hold ? G.n : 2000000;
    G.lat = calloc((size_t)G.caplat, sizeof *G.lat);
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!G.c || !G.lat || G.ep < 0) {
        perror("ftpsload");
        return 2;
    }
    for (int i = 0; i < G.nconn; i++)
        G.c[i].fd = -1;
    return G.hold ? run_hold() : run_rate();
}
