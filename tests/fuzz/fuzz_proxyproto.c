#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fgerr.h"
#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proxyproto_t p;
    int rc = proxyproto_parse(data, size, &p);
    /* A parsed header never claims more bytes than it was given or than the cap. */
    if (rc == FG_OK && (p.header_len > size || p.header_len > PROXYPROTO_MAX))
        abort();
    return 0;
}
