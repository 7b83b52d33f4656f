#include "liveview.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "fgerr.h"
#include "jsonout.h"

struct liveview_snap {
    unsigned refs; /* atomic */
    size_t n, cap, total;
    liveview_entry_t entries[];
};

struct liveview_board {
    uv_mutex_t lock; /* guards snap: held for a pointer swap or a reference */
    liveview_snap_t *snap;
};

void liveview_text_set(liveview_text_t *t, const char *s, size_t len)
{
    t->cut = len > sizeof t->s;
    t->len = t->cut ? sizeof t->s : len;
    if (t->len)
        memcpy(t->s, s, t->len);
}

static void snap_unref(liveview_snap_t *s)
{
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(s);
}

liveview_board_t *liveview_board_new(void)
{
    liveview_board_t *b = calloc(1, sizeof *b);
    if (b && uv_mutex_init(&b->lock) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

void liveview_board_free(liveview_board_t *b)
{
    if (!b)
        return;
    snap_unref(b->snap);
    uv_mutex_destroy(&b->lock);
    free(b);
}

liveview_snap_t *liveview_snap_new(size_t cap)
{
    liveview_snap_t *s = malloc(sizeof *s + cap * sizeof s->entries[0]);
    if (s) {
        s->refs = 1;
        s->n = s->total = 0;
        s->cap = cap;
    }
    return s;
}

liveview_entry_t *liveview_snap_add(liveview_snap_t *s)
{
    s->total++;
    if (s->n == s->cap)
        return NULL;
    liveview_entry_t *e = &s->entries[s->n++];
    memset(e, 0, sizeof *e);
    return e;
}

void liveview_publish(liveview_board_t *b, liveview_snap_t *s)
{
    uv_mutex_lock(&b->lock);
    liveview_snap_t *old = b->snap;
    b->snap = s;
    uv_mutex_unlock(&b->lock);
    snap_unref(old); /* freed here, or by the admin once it is done with it */
}

static liveview_snap_t *board_take(liveview_board_t *b)
{
    uv_mutex_lock(&b->lock);
    liveview_snap_t *s = b->snap;
    if (s)
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    uv_mutex_unlock(&b->lock);
    return s;
}

/* ---- the JSON -------------------------------------------------------------------- */

static void put_time(jsonout_t *o, int64_t ms)
{
    struct tm tm;
    time_t secs = (time_t)(ms / 1000);
    if (gmtime_r(&secs, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    jsonout_fmt(o, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void put_text(jsonout_t *o, const char *key, const liveview_text_t *t)
{
    jsonout_fmt(o, ",\"%s\":", key);
    jsonout_str(o, t->s, t->len);
    if (t->cut)
        jsonout_fmt(o, ",\"%s_truncated\":true", key);
}

static void put_entry(jsonout_t *o, const liveview_entry_t *e)
{
    static const char *const dirs[] = {"download", "upload", "listing"};
    jsonout_fmt(o, "{\"id\":%llu,\"listener\":", e->id);
    jsonout_cstr(o, e->listener_name);
    jsonout_raw(o, ",\"client\":");
    jsonout_cstr(o, e->client);
    if (e->logged_in)
        put_text(o, "user", &e->user);
    jsonout_raw(o, ",\"backend\":");
    jsonout_cstr(o, e->backend[0] ? e->backend : NULL);
    jsonout_raw(o, ",\"since\":");
    put_time(o, e->since_ms);
    if (e->tls) {
        jsonout_raw(o, ",\"tls\":{\"version\":");
        jsonout_cstr(o, e->tls_version);
        jsonout_raw(o, ",\"cipher\":");
        jsonout_cstr(o, e->tls_cipher);
        if (e->sni.len)
            put_text(o, "sni", &e->sni);
        jsonout_raw(o, "}");
    } else {
        jsonout_raw(o, ",\"tls\":null");
    }
    if (!e->in_transfer) {
        jsonout_raw(o, ",\"transfer\":null}");
        return;
    }
    const liveview_transfer_t *t = &e->transfer;
    jsonout_raw(o, ",\"transfer\":{\"command\":");
    jsonout_cstr(o, t->command);
    if (t->has_path) {
        put_text(o, "path", &t->path);
    } else {
        jsonout_raw(o, ",\"path\":null");
    }
    jsonout_fmt(o, ",\"direction\":\"%s\",\"bytes\":%llu,\"rate_bps\":%llu,\"since\":", dirs[t->direction],
                (unsigned long long)t->bytes, (unsigned long long)t->rate_bps);
    put_time(o, t->since_ms);
    jsonout_raw(o, "}}");
}

/* Running transfers first, the fastest first; then the newest sessions. */
static int by_activity(const void *pa, const void *pb)
{
    const liveview_entry_t *a = *(const liveview_entry_t *const *)pa, *b = *(const liveview_entry_t *const *)pb;
    if (a->in_transfer != b->in_transfer)
        return a->in_transfer ? -1 : 1;
    if (a->in_transfer && a->transfer.rate_bps != b->transfer.rate_bps)
        return a->transfer.rate_bps > b->transfer.rate_bps ? -1 : 1;
    if (a->id != b->id)
        return a->id > b->id ? -1 : 1;
    return 0;
}

static void put_context(jsonout_t *o, const liveview_context_t *ctx, liveview_snap_t *const *snaps, size_t n_snaps)
{
    jsonout_raw(o, ",\"listeners\":[");
    for (size_t i = 0; i < ctx->n_listeners; i++) {
        /* Counted over every entry: sessions past a worker's cap are not
         * listed, so they are not in these counts either (rare: see cap). */
        unsigned long long n = 0;
        for (size_t w = 0; w < n_snaps; w++)
            for (size_t k = 0; snaps[w] && k < snaps[w]->n; k++)
                n += snaps[w]->entries[k].listener == i;
        const liveview_listener_t *l = &ctx->listeners[i];
        jsonout_raw(o, i ? ",{\"name\":" : "{\"name\":");
        jsonout_cstr(o, l->name);
        jsonout_fmt(o, ",\"sessions\":%llu,\"passive_ports_in_use\":%u,\"passive_ports\":%u}", n,
                    l->passive_in_use, l->passive_size);
    }
    jsonout_raw(o, "],\"certificates\":[");
    for (size_t i = 0; i < ctx->n_certs; i++) {
        jsonout_raw(o, i ? ",{\"identity\":" : "{\"identity\":");
        jsonout_cstr(o, ctx->certs[i].identity);
        jsonout_raw(o, ",\"not_after\":");
        if (ctx->certs[i].not_after > 0)
            put_time(o, (int64_t)ctx->certs[i].not_after * 1000);
        else
            jsonout_raw(o, "null");
        jsonout_raw(o, "}");
    }
    jsonout_raw(o, "]");
}

int liveview_render(liveview_board_t *const *boards, size_t n_boards, const liveview_context_t *ctx, size_t limit,
                    char **out, size_t *len)
{
    liveview_snap_t **snaps = calloc(n_boards ? n_boards : 1, sizeof *snaps);
    if (!snaps)
        return FG_NOMEM;
    size_t listed = 0, total = 0;
    for (size_t i = 0; i < n_boards; i++) {
        snaps[i] = board_take(boards[i]);
        if (snaps[i]) {
            listed += snaps[i]->n;
            total += snaps[i]->total;
        }
    }
    const liveview_entry_t **all = malloc((listed ? listed : 1) * sizeof *all);
    int rc = all ? FG_OK : FG_NOMEM;
    if (rc == FG_OK) {
        size_t k = 0;
        for (size_t i = 0; i < n_boards; i++)
            for (size_t j = 0; snaps[i] && j < snaps[i]->n; j++)
                all[k++] = &snaps[i]->entries[j];
        qsort(all, listed, sizeof *all, by_activity);
        size_t shown = listed < limit ? listed : limit;
        jsonout_t o;
        jsonout_init(&o, LIVEVIEW_BODY_MAX);
        jsonout_raw(&o, "{\"now\":");
        put_time(&o, ctx->now_ms);
        jsonout_fmt(&o, ",\"total\":%zu,\"limit\":%zu,\"truncated\":%s", total, limit,
                    shown < total ? "true" : "false");
        put_context(&o, ctx, snaps, n_boards);
        jsonout_raw(&o, ",\"sessions\":[");
        for (size_t i = 0; i < shown; i++) {
            if (i)
                jsonout_raw(&o, ",");
            put_entry(&o, all[i]);
        }
        jsonout_raw(&o, "]}\n");
        *out = jsonout_take(&o, len);
        rc = *out ? FG_OK : FG_RANGE;
    }
    free(all);
    for (size_t i = 0; i < n_boards; i++)
        snap_unref(snaps[i]);
    free(snaps);
    return rc;
}
