/* libFuzzer target for common/ftp_addr.c: the input goes through all four
 * parsers; whatever parses is formatted and parsed back, and must round-trip.
 * The formatters also get values taken from the input and short buffers. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "ftp_addr.h"

static void check_fmt(int n, const char *out, size_t cap)
{
    if (n == FG_RANGE)
        return;
    if (n < 0 || (size_t)n >= cap || out[n] != '\0' || strlen(out) != (size_t)n || n < 2 ||
        out[n - 2] != '\r' || out[n - 1] != '\n')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char out[128];
    struct in_addr ip, ip2;
    uint16_t port, port2;
    struct sockaddr_storage ss, ss2;

    int rc = ftp_addr_parse_227(s, size, &ip, &port);
    if (rc == FG_OK) {
        if (port == 0)
            abort();
        int n = ftp_addr_format_227(out, sizeof(out), ip, port);
        check_fmt(n, out, sizeof(out));
        if (ftp_addr_parse_227(out + 4, (size_t)n - 6, &ip2, &port2) != FG_OK ||
            ip2.s_addr != ip.s_addr || port2 != port)
            abort();
    } else if (rc != FG_SYNTAX && rc != FG_RANGE) {
        abort();
    }

    rc = ftp_addr_parse_229(s, size, &port);
    if (rc == FG_OK) {
        if (port == 0)
            abort();
        int n = ftp_addr_format_229(out, sizeof(out), port);
        check_fmt(n, out, sizeof(out));
        if (ftp_addr_parse_229(out + 4, (size_t)n - 6, &port2) != FG_OK || port2 != port)
            abort();
    } else if (rc != FG_SYNTAX && rc != FG_RANGE) {
        abort();
    }

    rc = ftp_addr_parse_port(s, size, &ip, &port);
    if (rc == FG_OK) {
        int n = ftp_addr_format_port(out, sizeof(out), ip, port);
        check_fmt(n, out, sizeof(out));
        if (ftp_addr_parse_port(out + 5, (size_t)n - 7, &ip2, &port2) != FG_OK ||
            ip2.s_addr != ip.s_addr || port2 != port)
            abort();
    } else if (rc != FG_SYNTAX && rc != FG_RANGE) {
        abort();
    }

    rc = ftp_addr_parse_eprt(s, size, &ss);
    if (rc == FG_OK) {
        int n = ftp_addr_format_eprt(out, sizeof(out), (const struct sockaddr *)&ss);
        check_fmt(n, out, sizeof(out));
        if (ftp_addr_parse_eprt(out + 5, (size_t)n - 7, &ss2) != FG_OK ||
            ss2.ss_family != ss.ss_family)
            abort();
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            const struct sockaddr_in *b = (const struct sockaddr_in *)&ss2;
            if (a->sin_port != b->sin_port || a->sin_addr.s_addr != b->sin_addr.s_addr ||
                a->sin_port == 0)
                abort();
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&ss2;
            if (a->sin6_port != b->sin6_port ||
                memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) != 0 ||
                a->sin6_port == 0)
                abort();
        } else {
            abort();
        }
    } else if (rc != FG_SYNTAX && rc != FG_RANGE) {
        abort();
    }

    /* formatters with input-chosen values and every short buffer size */
    if (size >= 7) {
        memcpy(&ip.s_addr, data, 4);
        port = (uint16_t)(data[4] << 8 | data[5]);
        size_t cap = data[6] % 64;
        char *buf = malloc(cap ? cap : 1); /* exact size: ASan catches overruns */
        if (buf == NULL)
            return 0;
        check_fmt(ftp_addr_format_227(buf, cap, ip, port), buf, cap);
        check_fmt(ftp_addr_format_229(buf, cap, port), buf, cap);
        check_fmt(ftp_addr_format_port(buf, cap, ip, port), buf, cap);
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(port);
        memcpy(&sin6.sin6_addr, data, size >= 16 ? 16 : 4);
        check_fmt(ftp_addr_format_eprt(buf, cap, (const struct sockaddr *)&sin6), buf, cap);
        free(buf);
    }
    return 0;
}
