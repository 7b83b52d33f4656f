#include "portpool.h"

#include <stdlib.h>

#include "fgerr.h"

/* Shared by every worker loop: a port is taken with a compare-and-swap on its
 * byte, so no lock is held and two loops never get the same port; a scan
 * visits every port once, so a free port is found while any exists. */
struct portpool {
    uint16_t first;
    unsigned size;
    unsigned next;   /* round-robin cursor, offset from first (atomic) */
    unsigned in_use; /* atomic */
    unsigned char used[]; /* one byte per port (atomic) */
};

portpool_t *portpool_new(uint16_t first, uint16_t last)
{
    if (last < first)
        return NULL;
    unsigned size = (unsigned)last - first + 1;
    portpool_t *pp = calloc(1, sizeof *pp + size);
    if (!pp)
        return NULL;
    pp->first = first;
    pp->size = size;
    return pp;
}

void portpool_free(portpool_t *pp)
{
    free(pp);
}

int portpool_acquire(portpool_t *pp, uint16_t *port)
{
    unsigned start = __atomic_load_n(&pp->next, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < pp->size; i++) {
        unsigned off = (start + i) % pp->size;
        unsigned char free_ = 0;
        if (__atomic_compare_exchange_n(&pp->used[off], &free_, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            __atomic_fetch_add(&pp->in_use, 1, __ATOMIC_RELAXED);
            __atomic_store_n(&pp->next, (off + 1) % pp->size, __ATOMIC_RELAXED);
            *port = (uint16_t)(pp->first + off);
            return FG_OK;
        }
    }
    return FG_RANGE;
}

void portpool_release(portpool_t *pp, uint16_t port)
{
    if (port < pp->first || (unsigned)(port - pp->first) >= pp->size)
        return;
    unsigned off = (unsigned)(port - pp->first);
    unsigned char taken = 1;
    if (__atomic_compare_exchange_n(&pp->used[off], &taken, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        __atomic_fetch_sub(&pp->in_use, 1, __ATOMIC_RELAXED);
}

unsigned portpool_in_use(const portpool_t *pp)
{
    return __atomic_load_n(&pp->in_use, __ATOMIC_RELAXED);
}

unsigned portpool_size(const portpool_t *pp)
{
    return pp->size;
}
