#ifndef FTPSGATE_LINEBUF_H
#define FTPSGATE_LINEBUF_H
#include <stddef.h>

/* Bounded, streaming line reader for FTP control connections (RFC 959 §4.1:
 * lines end in CRLF; a bare LF is tolerated as the end of a line).
 *
 * Memory never grows past the capacity given at creation: a line longer than
 * the current cap is discarded up to and including its LF and reported once,
 * as FG_TOO_LONG. A line containing NUL or a CR that is not followed by LF is
 * reported as FG_SYNTAX and discarded.
 *
 * Telnet (RFC 854) sequences are interpreted when telnet mode is on, as on the
 * client side of a control connection: IAC IAC is a literal 0xFF byte;
 * IAC WILL/WONT/DO/DONT <opt> and every other IAC <cmd> (IP, DM, ...) are
 * removed from the line. State carries across calls, so a sequence split
 * between two reads is handled. */

typedef struct linebuf linebuf_t;

/* capacity: the largest cap that linebuf_set_cap may ever set (bytes of line
 * content, CRLF excluded). Returns NULL on allocation failure. */
linebuf_t *linebuf_new(size_t capacity, int telnet);
void linebuf_free(linebuf_t *lb); /* NULL is fine */

/* Lowers or raises the current cap (clamped to the capacity), e.g. a smaller
 * cap before login. Applies from the next line. */
void linebuf_set_cap(linebuf_t *lb, size_t cap);

/* Forget any partial line and Telnet state (e.g. when TLS starts). */
void linebuf_reset(linebuf_t *lb);

/* Bytes of an unfinished line currently buffered. */
size_t linebuf_partial(const linebuf_t *lb);

/* Consumes bytes from data[0..len) until one event happens.
 * *used is set to the number of bytes consumed (always set).
 * Returns:
 *   FG_OK        a complete line: *line and *line_len give its content
 *                without the line ending; valid until the next call on lb.
 *   FG_NEED_MORE all of data was consumed without completing a line.
 *   FG_TOO_LONG  a line over the cap ended (its LF was consumed); discarded.
 *   FG_SYNTAX    a line with NUL or bare CR ended; discarded.
 * Call again with data + *used while *used < len. */
int linebuf_take(linebuf_t *lb, const char *data, size_t len, size_t *used,
                 const char **line, size_t *line_len);

#endif
