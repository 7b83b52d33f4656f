#ifndef FTPSGATE_HELDQ_H
#define FTPSGATE_HELDQ_H
#include <stddef.h>

/* Bytes written to a stream before it can carry them (before it is connected,
 * or before its TLS handshake is done), kept in order until it can: a
 * first-in first-out queue of copied chunks, and how many bytes it holds.
 * No I/O. A zeroed heldq_t is an empty queue. */

typedef struct heldq_chunk {
    struct heldq_chunk *next;
    size_t len;
    char data[];
} heldq_chunk_t;

typedef struct {
    heldq_chunk_t *head, *tail;
    size_t bytes; /* the sum of the chunks' lengths */
} heldq_t;

/* Copies data in at the end. FG_OK or FG_NOMEM. */
int heldq_push(heldq_t *q, const void *data, size_t len);
/* Takes the oldest chunk out (the caller frees it with free()); NULL when empty. */
heldq_chunk_t *heldq_take(heldq_t *q);
int heldq_empty(const heldq_t *q);
/* Frees every chunk. */
void heldq_clear(heldq_t *q);

#endif
