#include "generation.h"

#include <stdio.h>
#include <stdlib.h>

#include "tls_ctx.h"

struct generation {
    config_t *cfg;
    SSL_CTX **tls;       /* one per identity, indexed like cfg->tls */
    long long *not_after; /* their certificates' end of validity (Unix time; 0 unreadable) */
    tls_sni_t *sni;      /* one per listener */
    tls_sni_entry_t **sni_entries;
    unsigned refs;
};

static void generation_free(generation_t *g)
{
    if (g->tls)
        for (size_t i = 0; i < g->cfg->n_tls; i++)
            SSL_CTX_free(g->tls[i]);
    if (g->sni_entries)
        for (size_t i = 0; i < g->cfg->n_listeners; i++)
            free(g->sni_entries[i]);
    free(g->tls);
    free(g->not_after);
    free(g->sni);
    free(g->sni_entries);
    config_free(g->cfg);
    free(g);
}

generation_t *generation_new(config_t *cfg, char *err, size_t errlen)
{
    generation_t *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        config_free(cfg);
        return NULL;
    }
    g->cfg = cfg;
    g->refs = 1;
    g->tls = calloc(cfg->n_tls, sizeof *g->tls);
    g->not_after = calloc(cfg->n_tls, sizeof *g->not_after);
    g->sni = calloc(cfg->n_listeners, sizeof *g->sni);
    g->sni_entries = calloc(cfg->n_listeners, sizeof *g->sni_entries);
    if (!g->tls || !g->not_after || !g->sni || !g->sni_entries) {
        snprintf(err, errlen, "out of memory");
        generation_free(g);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_tls; i++) {
        g->tls[i] = tls_ctx_new(&cfg->tls[i], err, errlen);
        if (!g->tls[i]) {
            generation_free(g);
            return NULL;
        }
        if (tls_ctx_not_after(g->tls[i], &g->not_after[i]) != 0)
            g->not_after[i] = 0;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const config_listener_t *l = &cfg->listeners[i];
        if (l->n_sni == 0)
            continue;
        g->sni_entries[i] = calloc(l->n_sni, sizeof *g->sni_entries[i]);
        if (!g->sni_entries[i]) {
            snprintf(err, errlen, "out of memory");
            generation_free(g);
            return NULL;
        }
        for (size_t j = 0; j < l->n_sni; j++) {
            g->sni_entries[i][j].name = l->sni[j].name;
            g->sni_entries[i][j].ctx = g->tls[l->sni[j].tls_index];
        }
        g->sni[i].entries = g->sni_entries[i];
        g->sni[i].n = l->n_sni;
    }
    return g;
}

void generation_ref(generation_t *g)
{
    __atomic_fetch_add(&g->refs, 1, __ATOMIC_RELAXED);
}

void generation_unref(generation_t *g)
{
    /* Sessions of every worker hold references: the last one frees it. */
    if (g && __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) == 0)
        generation_free(g);
}

const config_t *generation_config(const generation_t *g)
{
    return g->cfg;
}

SSL_CTX *generation_listener_tls(const generation_t *g, size_t i)
{
    return g->tls[g->cfg->listeners[i].tls_index];
}

const tls_sni_t *generation_listener_sni(const generation_t *g, size_t i)
{
    return &g->sni[i];
}

long long generation_cert_not_after(const generation_t *g, size_t identity)
{
    return g->not_after[identity];
}

unsigned long generation_tls_sessions_cached(const generation_t *g)
{
    unsigned long n = 0;
    for (size_t i = 0; i < g->cfg->n_tls; i++)
        n += (unsigned long)SSL_CTX_sess_number(g->tls[i]);
    return n;
}
