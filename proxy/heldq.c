#include "heldq.h"

#include <stdlib.h>
#include <string.h>

#include "fgerr.h"

int heldq_push(heldq_t *q, const void *data, size_t len)
{
    heldq_chunk_t *c = malloc(sizeof *c + len);
    if (!c)
        return FG_NOMEM;
    memcpy(c->data, data, len);
    c->len = len;
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->bytes += len;
    return FG_OK;
}

heldq_chunk_t *heldq_take(heldq_t *q)
{
    heldq_chunk_t *c = q->head;
    if (!c)
        return NULL;
    q->head = c->next;
    if (!q->head)
        q->tail = NULL;
    q->bytes -= c->len;
    return c;
}

int heldq_empty(const heldq_t *q)
{
    return q->head == NULL;
}

void heldq_clear(heldq_t *q)
{
    heldq_chunk_t *c;
    while ((c = heldq_take(q)) != NULL)
        free(c);
}
