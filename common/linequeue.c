#include "linequeue.h"

#include <stdlib.h>
#include <string.h>

#include "fgerr.h"

void linequeue_init(linequeue_t *q, size_t limit)
{
    q->buf = NULL;
    q->len = 0;
    q->limit = limit;
}

void linequeue_clear(linequeue_t *q)
{
    free(q->buf);
    q->buf = NULL;
    q->len = 0;
}

int linequeue_push(linequeue_t *q, const char *line, size_t len)
{
    if (memchr(line, '\n', len))
        return FG_SYNTAX;
    char *grown = realloc(q->buf, q->len + len + 1);
    if (!grown)
        return FG_NOMEM;
    memcpy(grown + q->len, line, len);
    grown[q->len + len] = '\n';
    q->buf = grown;
    q->len += len + 1;
    return FG_OK;
}

int linequeue_pop(linequeue_t *q, char *out, size_t cap, size_t *len)
{
    if (q->len == 0)
        return FG_NEED_MORE;
    const char *nl = memchr(q->buf, '\n', q->len);
    size_t n = (size_t)(nl - q->buf);
    if (n > cap)
        return FG_TOO_LONG;
    memcpy(out, q->buf, n);
    *len = n;
    q->len -= n + 1;
    if (q->len == 0)
        linequeue_clear(q);
    else
        memmove(q->buf, nl + 1, q->len);
    return FG_OK;
}

int linequeue_empty(const linequeue_t *q)
{
    return q->len == 0;
}

int linequeue_full(const linequeue_t *q)
{
    return q->len >= q->limit;
}
