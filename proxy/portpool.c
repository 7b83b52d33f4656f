#include "portpool.h"

#include <stdlib.h>

#include "fgerr.h"

struct portpool {
    uint16_t first;
    unsigned size;
    unsigned next; /* round-robin cursor, offset from first */
    unsigned in_use;
    unsigned char used[]; /* one byte per port */
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
    for (unsigned i = 0; i < pp->size; i++) {
        unsigned off = (pp->next + i) % pp->size;
        if (!pp->used[off]) {
            pp->used[off] = 1;
            pp->in_use++;
            pp->next = (off + 1) % pp->size;
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
    if (pp->used[off]) {
        pp->used[off] = 0;
        pp->in_use--;
    }
}

unsigned portpool_in_use(const portpool_t *pp)
{
    return pp->in_use;
}

unsigned portpool_size(const portpool_t *pp)
{
    return pp->size;
}
