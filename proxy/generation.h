#ifndef FTPSGATE_GENERATION_H
#define FTPSGATE_GENERATION_H
#include <stddef.h>
#include <openssl/ssl.h>

#include "config.h"
#include "tls_engine.h"

/* One loaded configuration with its TLS contexts and SNI tables: what a
 * SIGHUP reload replaces. Listeners and sessions hold references, so a live
 * session keeps the config and TLS contexts it started with (its data
 * connections must resume sessions of the same context) while new sessions
 * get the new ones. Freed with the last reference. */

typedef struct generation generation_t;

/* Takes ownership of cfg. Builds every TLS context (reading the certificate
 * files). NULL and err ("tls.main.cert: ...") on failure; cfg is freed then. */
generation_t *generation_new(config_t *cfg, char *err, size_t errlen);
void generation_ref(generation_t *g);
void generation_unref(generation_t *g); /* NULL is fine */

const config_t *generation_config(const generation_t *g);
/* The contexts of listener i: its default identity and its SNI table. */
SSL_CTX *generation_listener_tls(const generation_t *g, size_t listener_index);
const tls_sni_t *generation_listener_sni(const generation_t *g, size_t listener_index);
/* The end of validity of TLS identity i's certificate (indexed like
 * config_t.tls), read once when the generation was built: Unix time, 0 when
 * unreadable. */
long long generation_cert_not_after(const generation_t *g, size_t identity);
/* Sessions held in the server session caches of its TLS contexts now. */
unsigned long generation_tls_sessions_cached(const generation_t *g);

#endif
