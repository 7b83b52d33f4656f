#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adminreq.h"
#include "fgerr.h"

/* The admin endpoint's request head: parsed slices stay inside the input,
 * and the token check never reads past it (nor accepts without the token). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *head = (const char *)data;
    adminreq_t r;
    if (adminreq_parse(head, size, &r) != FG_OK)
        return 0;
    const char *end = head + size;
    if (r.path < head || r.path + r.path_len > end || (r.query && r.query + r.query_len > end) ||
        (r.auth_seen && (r.auth < head || r.auth + r.auth_len > end)))
        abort();
    unsigned long v;
    (void)adminreq_query_uint(&r, "limit", 10000, &v);
    /* A token no input of this size can carry as itself or in base64 of a short header. */
    if (adminreq_authorized(&r, "fuzz-token-0123456789-not-in-the-corpus") && size < 40)
        abort();
    return 0;
}
