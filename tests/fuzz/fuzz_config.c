#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fgerr.h"

/* The config loader takes a whole JSON document: every path must either load
 * or produce one "path: problem" line, never crash or leak. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *doc = malloc(size + 1);
    if (!doc)
        return 0;
    memcpy(doc, data, size);
    doc[size] = '\0';
    config_t *cfg = NULL;
    char err[512] = "";
    int rc = config_load_string(doc, &cfg, err, sizeof err);
    if (rc == FG_OK) {
        if (!cfg || cfg->n_listeners == 0)
            abort();
        config_free(cfg);
    } else if (cfg != NULL || err[0] == '\0' || strchr(err, '\n') != NULL) {
        abort();
    }
    free(doc);
    return 0;
}
