/* --healthcheck: connect to each listener of a configuration and check it answers. */
#include "healthcheck.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "fgerr.h"
#include "netaddr.h"

/* The greeting's first line; a longer one is cut (only its code matters). */
#define GREETING_CAP 512

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 1;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* The address a client on this host reaches a listener at. */
static int target_of(const config_listener_t *l, struct sockaddr_storage *sa)
{
    if (netaddr_parse_ip(l->bind.host, l->bind.port, sa) != FG_OK)
        return FG_SYNTAX;
    if (sa->ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY))
            in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
            in6->sin6_addr = in6addr_loopback;
    }
    return FG_OK;
}

/* Non-blocking connect bounded by deadline. Returns the socket, or -1 with
 * what went wrong in why. */
static int connect_by(const struct sockaddr_storage *sa, long long deadline, const char **why)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)sa, netaddr_len((const struct sockaddr *)sa)) != 0) {
        if (errno != EINPROGRESS) {
            *why = strerror(errno);
            close(fd);
            return -1;
        }
        int w = wait_fd(fd, POLLOUT, deadline);
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (w <= 0) {
            *why = w == 0 ? "connect timed out" : strerror(errno);
            close(fd);
            return -1;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
            *why = strerror(soerr ? soerr : errno);
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* Reads the first line of the greeting into line (NUL-terminated, CR/LF
 * stripped). 0 on a complete line, else -1 with the reason in why. */
static int read_first_line(int fd, long long deadline, char *line, size_t cap, const char **why)
{
    size_t n = 0;
    while (n + 1 < cap) {
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            *why = w == 0 ? "no greeting in time" : strerror(errno);
            return -1;
        }
        ssize_t r = read(fd, line + n, cap - 1 - n);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0) {
            *why = r == 0 ? "closed before a greeting" : strerror(errno);
            return -1;
        }
        n += (size_t)r;
        line[n] = '\0';
        char *eol = strchr(line, '\n');
        if (eol) {
            *eol = '\0';
            line[strcspn(line, "\r")] = '\0';
            return 0;
        }
    }
    line[n] = '\0'; /* a first line longer than the cap: judge its code */
    return 0;
}

/* Control characters of a peer's line are not written to the report as they are. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            *s = '?';
}

static int check_listener(const config_listener_t *l, unsigned timeout_ms, FILE *report)
{
    const char *kind = l->mode == LISTEN_IMPLICIT ? "implicit" : "explicit";
    struct sockaddr_storage sa;
    char where[80];
    if (target_of(l, &sa) != FG_OK) {
        fprintf(report, "listener %s (%s): FAILED: bind address %s is not a literal address\n", l->name, kind,
                l->bind.host);
        return FG_IO;
    }
    netaddr_format((const struct sockaddr *)&sa, where, sizeof where);
    long long deadline = now_ms() + timeout_ms;
    const char *why = NULL;
    int fd = connect_by(&sa, deadline, &why);
    if (fd < 0) {
        fprintf(report, "listener %s (%s, %s): FAILED: %s\n", l->name, kind, where, why);
        return FG_IO;
    }
    /* Implicit: TLS from the first byte, and a handshake would cost the proxy
     * more than this check is worth. PROXY protocol: a header is expected that
     * this check has no business claiming. A completed connect is the proof. */
    if (l->mode == LISTEN_IMPLICIT || l->proxy_protocol.enabled) {
        close(fd);
        fprintf(report, "listener %s (%s, %s): ok, connection accepted\n", l->name, kind, where);
        return FG_OK;
    }
    char line[GREETING_CAP];
    int rc = read_first_line(fd, deadline, line, sizeof line, &why);
    if (rc == 0) {
        sanitize(line);
        if (strncmp(line, "220", 3) == 0 && (line[3] == ' ' || line[3] == '-')) {
            static const char quit[] = "QUIT\r\n";
            ssize_t sent = write(fd, quit, sizeof quit - 1); /* best effort: closing ends the session too */
            (void)sent;
            fprintf(report, "listener %s (%s, %s): ok, greeting \"%.80s\"\n", l->name, kind, where, line);
        } else {
            fprintf(report, "listener %s (%s, %s): FAILED: greeting \"%.80s\" is not 220\n", l->name, kind,
                    where, line);
            rc = -1;
        }
    } else {
        fprintf(report, "listener %s (%s, %s): FAILED: %s\n", l->name, kind, where, why);
    }
    close(fd);
    return rc == 0 ? FG_OK : FG_IO;
}

int healthcheck_run(const config_t *cfg, unsigned timeout_ms, FILE *report)
{
    int rc = FG_OK;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (check_listener(&cfg->listeners[i], timeout_ms, report) != FG_OK)
            rc = FG_IO;
    return rc;
}
