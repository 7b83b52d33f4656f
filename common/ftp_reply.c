/* Streaming FTP reply classification (RFC 959 §4.2). One line in, one verdict
 * out; nothing is stored, so a backend that sends an endless multi-line reply
 * costs no memory here (the caller caps each line with a linebuf). */
#include "ftp_reply.h"

#include <string.h>

#include "fgerr.h"

void ftp_reply_init(ftp_reply_state_t *st)
{
    st->in_multiline = 0;
    st->code = 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int ftp_reply_feed(ftp_reply_state_t *st, const char *line, size_t len, ftp_reply_line_t *out)
{
    memset(out, 0, sizeof(*out));
    if (line == NULL)
        len = 0;

    if (st->in_multiline) {
        /* RFC 959 §4.2: only "<same code> SP" ends a multi-line reply. Any other
         * line, including "<same code>-..." or another code, is text of the
         * reply; a server (or a file name echoed in it) must not be able to end
         * the reply early and desynchronise the reply stream. */
        out->code = st->code;
        if (len >= 4 && line[3] == ' ' && is_digit(line[0]) && is_digit(line[1]) &&
            is_digit(line[2]) &&
            (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0') == st->code) {
            out->last = 1;
            out->text = line + 4;
            out->text_len = len - 4;
            st->in_multiline = 0;
        } else {
            out->text = line;
            out->text_len = len;
        }
        return FG_OK;
    }

    /* SECURITY: a line that must start a reply but is not a reply is refused,
     * not guessed at: the caller treats the backend as broken. */
    if (len < 3 || line[0] < '1' || line[0] > '5' || !is_digit(line[1]) || !is_digit(line[2]))
        return FG_SYNTAX;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return FG_SYNTAX;

    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    out->code = code;
    out->first = 1;
    out->text = line + (len > 3 ? 4 : 3);
    out->text_len = len > 3 ? len - 4 : 0;
    if (len > 3 && line[3] == '-') {
        st->in_multiline = 1;
        st->code = code;
    } else {
        /* "ddd text" or a bare "ddd": a complete single-line reply. */
        out->last = 1;
        st->code = code;
    }
    return FG_OK;
}
