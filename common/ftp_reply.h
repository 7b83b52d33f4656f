#ifndef FTPSGATE_FTP_REPLY_H
#define FTPSGATE_FTP_REPLY_H
#include <stddef.h>

/* Streaming parser of FTP reply lines (RFC 959 §4.2). It sees one line at a
 * time (from a linebuf) and never stores a reply, so a multi-line reply of any
 * length costs no memory.
 *
 *   "123 text"             single-line reply: first and last
 *   "123-text" ... "123 x" multi-line: the first line, any lines, then the
 *                          line starting with the same code and a space. */

typedef struct {
    int in_multiline; /* 1 between the first and last line of a multi-line reply */
    int code;         /* code of the reply in progress */
} ftp_reply_state_t;

typedef struct {
    int code;          /* 100..599 */
    int first;         /* 1 on the first line of a reply */
    int last;          /* 1 on the line that completes it */
    const char *text;  /* after "ddd " / "ddd-" on first/last lines, the whole line otherwise; borrowed */
    size_t text_len;
} ftp_reply_line_t;

void ftp_reply_init(ftp_reply_state_t *st);

/* Classifies one line (without CRLF). Returns FG_OK, or FG_SYNTAX when a
 * line that must start a reply does not start with three digits (first 1-5)
 * followed by ' ' or '-' (or is exactly three digits, taken as "ddd "). */
int ftp_reply_feed(ftp_reply_state_t *st, const char *line, size_t len, ftp_reply_line_t *out);

#endif
