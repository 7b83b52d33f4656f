/* FTP command line parsing (RFC 959 §5.3) and redaction for logs. */
#include "ftp_cmd.h"

#include <string.h>

#include "fgerr.h"

static const struct {
    const char name[5];
    ftp_cmd_id_t id;
} cmd_table[] = {
    {"AUTH", FTP_CMD_AUTH}, {"PBSZ", FTP_CMD_PBSZ}, {"PROT", FTP_CMD_PROT},
    {"CCC", FTP_CMD_CCC},   {"USER", FTP_CMD_USER}, {"PASS", FTP_CMD_PASS},
    {"ACCT", FTP_CMD_ACCT}, {"FEAT", FTP_CMD_FEAT}, {"OPTS", FTP_CMD_OPTS},
    {"HELP", FTP_CMD_HELP}, {"PASV", FTP_CMD_PASV}, {"EPSV", FTP_CMD_EPSV},
    {"PORT", FTP_CMD_PORT}, {"EPRT", FTP_CMD_EPRT}, {"LPSV", FTP_CMD_LPSV},
    {"LPRT", FTP_CMD_LPRT}, {"RETR", FTP_CMD_RETR}, {"STOR", FTP_CMD_STOR},
    {"STOU", FTP_CMD_STOU}, {"APPE", FTP_CMD_APPE}, {"LIST", FTP_CMD_LIST},
    {"NLST", FTP_CMD_NLST}, {"MLSD", FTP_CMD_MLSD}, {"REST", FTP_CMD_REST},
    {"ABOR", FTP_CMD_ABOR}, {"STAT", FTP_CMD_STAT}, {"NOOP", FTP_CMD_NOOP},
    {"REIN", FTP_CMD_REIN}, {"QUIT", FTP_CMD_QUIT}, {"HOST", FTP_CMD_HOST},
};

static int is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static char to_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

ftp_cmd_id_t ftp_cmd_lookup(const char *verb, size_t len)
{
    if (verb == NULL || len < 3 || len > 4)
        return FTP_CMD_OTHER;
    for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++) {
        const char *name = cmd_table[i].name;
        if (strlen(name) != len)
            continue;
        size_t j = 0;
        while (j < len && to_upper(verb[j]) == name[j])
            j++;
        if (j == len)
            return cmd_table[i].id;
    }
    return FTP_CMD_OTHER;
}

int ftp_cmd_parse(const char *line, size_t len, ftp_cmd_t *out)
{
    memset(out, 0, sizeof(*out));
    if (line == NULL || len == 0)
        return FG_SYNTAX;

    size_t n = 0;
    while (n < len && n < 5 && is_alpha((unsigned char)line[n]))
        n++;
    /* RFC 959 §5.3.1: commands are 3 or 4 alphabetic characters. */
    if (n < 3 || n > 4)
        return FG_SYNTAX;

    const char *arg = NULL;
    size_t arg_len = 0;
    if (n < len) {
        /* After the verb: exactly one SP, then the argument (which may contain
         * or even start with spaces: a pathname may, RFC 959 §5.3.2). */
        if (line[n] != ' ')
            return FG_SYNTAX;
        if (len - n - 1 > 0) {
            arg = line + n + 1;
            arg_len = len - n - 1;
        }
    }
    /* SECURITY: the argument is forwarded to the backend as is. A CR, LF or NUL
     * in it would end the line early there and inject a second command past
     * the policy. linebuf already refuses such lines; this holds for any caller. */
    for (size_t i = 0; i < arg_len; i++) {
        if (arg[i] == '\r' || arg[i] == '\n' || arg[i] == '\0')
            return FG_SYNTAX;
    }

    for (size_t i = 0; i < n; i++)
        out->verb[i] = to_upper(line[i]);
    out->verb[n] = '\0';
    out->verb_len = n;
    out->id = ftp_cmd_lookup(out->verb, n);
    out->arg = arg;
    out->arg_len = arg_len;
    return FG_OK;
}

int ftp_cmd_is_transfer(ftp_cmd_id_t id)
{
    switch (id) {
    case FTP_CMD_RETR: case FTP_CMD_STOR: case FTP_CMD_STOU: case FTP_CMD_APPE:
    case FTP_CMD_LIST: case FTP_CMD_NLST: case FTP_CMD_MLSD:
        return 1;
    default:
        return 0;
    }
}

int ftp_cmd_is_upload(ftp_cmd_id_t id)
{
    return id == FTP_CMD_STOR || id == FTP_CMD_STOU || id == FTP_CMD_APPE;
}

/* Appends s[0..n) to out if it fits with room for the final NUL; a token is
 * never cut in half, so a \xNN escape is never truncated into garbage. */
static int put(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
    if (n >= cap - *pos)
        return 0;
    memcpy(out + *pos, s, n);
    *pos += n;
    return 1;
}

/* Copies bytes with escaping: printable ASCII as is, backslash and everything
 * else as \xNN. SECURITY: log injection — a CR/LF, an ANSI escape or a fake
 * "\x.." sequence in a command must not forge or hide log lines. */
static int put_escaped(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            if (!put(out, cap, pos, (const char *)&c, 1))
                return 0;
        } else {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            if (!put(out, cap, pos, esc, sizeof(esc)))
                return 0;
        }
    }
    return 1;
}

static int ieq4(const char *s, const char *upper)
{
    for (size_t i = 0; i < 4; i++) {
        if (to_upper(s[i]) != upper[i])
            return 0;
    }
    return 1;
}

char *ftp_cmd_redact(const char *line, size_t len, char *out, size_t cap)
{
    if (out == NULL || cap == 0)
        return out;
    out[0] = '\0';
    if (line == NULL)
        return out;

    size_t pos = 0;
    /* SECURITY: passwords never reach a log (RFC 2577 §4 spirit, vsftpd's
     * redaction). Decided on the raw prefix, not on a successful parse, so
     * that a malformed "PASS\tsecret", "pass  secret" or " PASS secret" is
     * redacted too: leading blanks are skipped, and whatever follows the four
     * letters of PASS/ACCT (or of SITE PSWD) is replaced. */
    size_t skip = 0;
    while (skip < len && (line[skip] == ' ' || line[skip] == '\t'))
        skip++;
    /* secret: where the four letters before the secret start, or len when
     * there is none. "SITE PSWD old new" changes a password (Serv-U style). */
    size_t secret = len;
    if (len - skip >= 4 && (ieq4(line + skip, "PASS") || ieq4(line + skip, "ACCT"))) {
        secret = skip;
    } else if (len - skip >= 4 && ieq4(line + skip, "SITE")) {
        size_t word = skip + 4;
        while (word < len && (line[word] == ' ' || line[word] == '\t'))
            word++;
        if (len - word >= 4 && ieq4(line + word, "PSWD"))
            secret = word;
    }
    if (secret < len) {
        if (put_escaped(out, cap, &pos, line, secret + 4) && len - secret > 4)
            put(out, cap, &pos, " ****", 5);
    } else {
        put_escaped(out, cap, &pos, line, len);
    }
    out[pos] = '\0';
    return out;
}
