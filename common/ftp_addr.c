/* Parsing and formatting of the FTP texts that carry addresses: 227 and 229
 * replies, PORT and EPRT arguments (RFC 959 §4.1.2, RFC 2428).
 *
 * These are the fields an attacker uses for FTP bounce (RFC 2577 §3) and data
 * port theft, so parsing is strict: numbers are plain decimal checked with
 * num_parse_u64, each byte 0..255, ports 1..65535, and text that is almost
 * right (7 numbers, mixed delimiters, signs, blanks inside numbers) is an
 * error, never a best guess. The only leniency is where real servers differ:
 * where the six numbers of a 227 reply sit in its text. */
#include "ftp_addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "fgerr.h"
#include "numparse.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Parses "h1,h2,h3,h4,p1,p2" starting at s[0] (a digit). *end gets the index
 * just past the sixth number. FG_SYNTAX when the shape is wrong, FG_RANGE when
 * the shape is right but a value is not. */
static int parse_six(const char *s, size_t len, size_t *end, struct in_addr *ip, uint16_t *port)
{
    uint64_t v[6];
    size_t i = 0;
    int range = 0;

    for (int k = 0; k < 6; k++) {
        if (k > 0) {
            if (i >= len || s[i] != ',')
                return FG_SYNTAX;
            i++;
        }
        size_t start = i;
        while (i < len && is_digit(s[i]))
            i++;
        int rc = num_parse_u64(s + start, i - start, 255, &v[k]);
        if (rc == FG_SYNTAX)
            return FG_SYNTAX; /* empty number */
        if (rc != FG_OK)
            range = 1; /* keep checking the shape: 7 numbers is SYNTAX, not RANGE */
    }
    /* SECURITY: a seventh number (or a trailing comma) means this is not the
     * six-number form; refuse rather than read the first six. */
    if (i < len && s[i] == ',')
        return FG_SYNTAX;
    *end = i;
    if (range)
        return FG_RANGE;
    uint16_t p = (uint16_t)(v[4] * 256 + v[5]);
    if (p == 0)
        return FG_RANGE; /* SECURITY: port 0 is never a real data port */
    unsigned char b[4] = {(unsigned char)v[0], (unsigned char)v[1], (unsigned char)v[2],
                          (unsigned char)v[3]};
    memcpy(&ip->s_addr, b, 4); /* network order: h1 is the first byte */
    *port = p;
    return FG_OK;
}

int ftp_addr_parse_227(const char *text, size_t len, struct in_addr *ip, uint16_t *port)
{
    if (text == NULL)
        return FG_SYNTAX;
    /* Like curl and lftp, look for the six numbers anywhere in the text:
     * servers send "(h1,...,p2)", "(h1,...,p2).", "h1,...,p2" or "=h1,...,p2".
     * A candidate starts at a digit that follows neither a digit nor a comma,
     * so the tail of a longer list ("1,2,3,4,5,6,7" -> "2,...,7") is never a
     * candidate. Every byte is looked at a bounded number of times. */
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(text[i]))
            continue;
        if (i > 0 && (is_digit(text[i - 1]) || text[i - 1] == ','))
            continue;
        size_t end;
        struct in_addr a;
        uint16_t p;
        int rc = parse_six(text + i, len - i, &end, &a, &p);
        if (rc == FG_SYNTAX)
            continue;
        if (rc == FG_OK) {
            *ip = a;
            *port = p;
        }
        return rc;
    }
    return FG_SYNTAX;
}

int ftp_addr_parse_229(const char *text, size_t len, uint16_t *port)
{
    if (text == NULL)
        return FG_SYNTAX;
    /* RFC 2428 §3: "(<d><d><d><tcp-port><d>)", d one character in 33..126,
     * the same all four times. The port is read up to the first d after it;
     * if d is a digit that occurs in the port, the ")" check fails, so an
     * odd delimiter yields an error, never a wrong port. */
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '(')
            continue;
        if (len - i < 7) /* "(ddd" + at least one digit + "d)" */
            return FG_SYNTAX;
        const char *s = text + i + 1;
        size_t n = len - i - 1;
        char d = s[0];
        if ((unsigned char)d < 33 || (unsigned char)d > 126 || s[1] != d || s[2] != d)
            continue;
        size_t j = 3;
        while (j < n && s[j] != d)
            j++;
        if (j + 1 >= n || s[j + 1] != ')')
            continue;
        uint16_t p;
        int rc = num_parse_port(s + 3, j - 3, &p);
        if (rc == FG_OK)
            *port = p;
        return rc;
    }
    return FG_SYNTAX;
}

int ftp_addr_parse_port(const char *arg, size_t len, struct in_addr *ip, uint16_t *port)
{
    if (arg == NULL || len == 0 || !is_digit(arg[0]))
        return FG_SYNTAX;
    size_t end;
    struct in_addr a;
    uint16_t p;
    int rc = parse_six(arg, len, &end, &a, &p);
    if (rc == FG_SYNTAX)
        return rc;
    /* SECURITY: the whole argument must be the six numbers; trailing bytes
     * are refused so what we check is exactly what we act on. */
    if (end != len)
        return FG_SYNTAX;
    if (rc == FG_OK) {
        *ip = a;
        *port = p;
    }
    return rc;
}

int ftp_addr_parse_eprt(const char *arg, size_t len, struct sockaddr_storage *out)
{
    /* RFC 2428 §2: <d><net-prt><d><net-addr><d><tcp-port><d>. Exactly four
     * delimiters, the last one ending the argument: a delimiter inside a field
     * makes a fifth one, so a field is never split in an ambiguous way. */
    if (arg == NULL || len < 7)
        return FG_SYNTAX;
    char d = arg[0];
    if ((unsigned char)d < 33 || (unsigned char)d > 126)
        return FG_SYNTAX;
    if (arg[len - 1] != d)
        return FG_SYNTAX;

    size_t pos[4] = {0, 0, 0, len - 1};
    size_t k = 1;
    for (size_t i = 1; i + 1 < len; i++) {
        if (arg[i] != d)
            continue;
        if (k >= 3)
            return FG_SYNTAX; /* more than four delimiters */
        pos[k++] = i;
    }
    if (k != 3)
        return FG_SYNTAX;

    const char *prt = arg + pos[0] + 1;
    size_t prt_len = pos[1] - pos[0] - 1;
    const char *addr = arg + pos[1] + 1;
    size_t addr_len = pos[2] - pos[1] - 1;
    const char *portstr = arg + pos[2] + 1;
    size_t port_len = pos[3] - pos[2] - 1;

    uint64_t proto;
    int rc = num_parse_u64(prt, prt_len, 255, &proto);
    if (rc != FG_OK)
        return rc;
    int family;
    if (proto == 1)
        family = AF_INET;
    else if (proto == 2)
        family = AF_INET6;
    else
        return FG_RANGE; /* RFC 2428: unknown network protocol (reply 522) */

    /* Bounded copy for inet_pton, which wants a C string. */
    char abuf[INET6_ADDRSTRLEN];
    if (addr_len == 0 || addr_len >= sizeof(abuf))
        return FG_SYNTAX;
    memcpy(abuf, addr, addr_len);
    abuf[addr_len] = '\0';

    uint16_t port;
    rc = num_parse_port(portstr, port_len, &port);
    if (rc != FG_OK)
        return rc;

    /* SECURITY: inet_pton only accepts the canonical numeric forms (no
     * "0x7f.1", no octal, no host names, no IPv6 zone), and the address must
     * be of the family the protocol number names: "|1|::1|" is refused. */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        if (inet_pton(AF_INET, abuf, &sin->sin_addr) != 1)
            return FG_SYNTAX;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET6, abuf, &sin6->sin6_addr) != 1)
            return FG_SYNTAX;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
    }
    if (out != NULL)
        *out = ss;
    return FG_OK;
}

/* snprintf result check: FG_RANGE when it did not fit (or failed). */
static int fmt_result(int n, char *out, size_t cap)
{
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return FG_RANGE;
    }
    return n;
}

int ftp_addr_format_227(char *out, size_t cap, struct in_addr ip, uint16_t port)
{
    /* Port 0 is refused as on input: announcing it would be a bug. */
    if (out == NULL || cap == 0 || port == 0)
        return FG_RANGE;
    const unsigned char *b = (const unsigned char *)&ip.s_addr;
    int n = snprintf(out, cap, "227 Entering Passive Mode (%u,%u,%u,%u,%u,%u).\r\n", b[0], b[1],
                     b[2], b[3], (unsigned)(port >> 8), (unsigned)(port & 0xff));
    return fmt_result(n, out, cap);
}

int ftp_addr_format_229(char *out, size_t cap, uint16_t port)
{
    if (out == NULL || cap == 0 || port == 0)
        return FG_RANGE;
    int n = snprintf(out, cap, "229 Entering Extended Passive Mode (|||%u|)\r\n", (unsigned)port);
    return fmt_result(n, out, cap);
}

int ftp_addr_format_port(char *out, size_t cap, struct in_addr ip, uint16_t port)
{
    if (out == NULL || cap == 0 || port == 0)
        return FG_RANGE;
    const unsigned char *b = (const unsigned char *)&ip.s_addr;
    int n = snprintf(out, cap, "PORT %u,%u,%u,%u,%u,%u\r\n", b[0], b[1], b[2], b[3],
                     (unsigned)(port >> 8), (unsigned)(port & 0xff));
    return fmt_result(n, out, cap);
}

int ftp_addr_format_eprt(char *out, size_t cap, const struct sockaddr *addr)
{
    if (out == NULL || cap == 0 || addr == NULL)
        return FG_RANGE;
    char ipbuf[INET6_ADDRSTRLEN];
    unsigned proto;
    uint16_t port;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, ipbuf, sizeof(ipbuf)) == NULL)
            return FG_RANGE;
        proto = 1;
        port = ntohs(sin->sin_port);
    } else if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)addr;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, ipbuf, sizeof(ipbuf)) == NULL)
            return FG_RANGE;
        proto = 2;
        port = ntohs(sin6->sin6_port);
    } else {
        out[0] = '\0';
        return FG_RANGE; /* no EPRT protocol number for this family */
    }
    if (port == 0) {
        out[0] = '\0';
        return FG_RANGE;
    }
    int n = snprintf(out, cap, "EPRT |%u|%s|%u|\r\n", proto, ipbuf, (unsigned)port);
    return fmt_result(n, out, cap);
}
