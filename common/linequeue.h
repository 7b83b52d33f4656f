#ifndef FTPSGATE_LINEQUEUE_H
#define FTPSGATE_LINEQUEUE_H
#include <stddef.h>

/* A bounded first-in first-out queue of command lines: the commands a
 * client sends while a transfer runs, which wait their turn (RFC 959 §4.1.3:
 * only ABOR, STAT and NOOP are taken during a transfer). Lines are copied
 * in; the memory exists only while something is queued. Pure. */

typedef struct {
    char *buf;     /* "line\n" each (a command line never holds LF) */
    size_t len;
    size_t limit;  /* once len reaches it, linequeue_full */
} linequeue_t;

void linequeue_init(linequeue_t *q, size_t limit);
void linequeue_clear(linequeue_t *q);
/* FG_OK, FG_SYNTAX (the line holds LF), or FG_NOMEM. A line is taken even
 * when it passes the limit; the owner stops adding at linequeue_full. */
int linequeue_push(linequeue_t *q, const char *line, size_t len);
/* The oldest line into out (cap bytes): FG_OK and *len, FG_NEED_MORE when
 * empty, FG_TOO_LONG when cap is too small (the line stays). */
int linequeue_pop(linequeue_t *q, char *out, size_t cap, size_t *len);
int linequeue_empty(const linequeue_t *q);
int linequeue_full(const linequeue_t *q);

#endif
