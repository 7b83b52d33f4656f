#ifndef FTPSGATE_PORTPOOL_H
#define FTPSGATE_PORTPOOL_H
#include <stdint.h>

/* The passive ports of one listener, shared by all its sessions on every
 * worker loop (thread-safe without a lock). Pure
 * bookkeeping: binding is the caller's job; a port that fails to bind is
 * released and the next acquire moves on. Ports are handed out round-robin so
 * a just-closed port is not reused at once (a late or stolen connection to it
 * then finds nothing listening). */

typedef struct portpool portpool_t;

portpool_t *portpool_new(uint16_t first, uint16_t last);
void portpool_free(portpool_t *pp); /* NULL is fine */

/* FG_OK with *port, or FG_RANGE when every port is in use. */
int portpool_acquire(portpool_t *pp, uint16_t *port);
void portpool_release(portpool_t *pp, uint16_t port);
unsigned portpool_in_use(const portpool_t *pp);
unsigned portpool_size(const portpool_t *pp);

#endif
