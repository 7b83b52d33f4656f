#ifndef FTPSGATE_LIVEVIEW_H
#define FTPSGATE_LIVEVIEW_H
#include <stddef.h>
#include <stdint.h>

/* The live session view (DESIGN.md §6, GET /sessions): what each live
 * session is doing, gathered without a lock on any session and without
 * stopping a worker's loop for the admin endpoint.
 *
 * Each worker owns a board. About once a second (liveview_tick) it walks its
 * own sessions on its own loop, copies each into a fixed-size entry (user
 * names, paths and server names cut at LIVEVIEW_TEXT_MAX bytes, and marked
 * cut) and publishes the new snapshot on the board: a pointer swap under the
 * board's mutex. The admin thread takes a reference to each board's current
 * snapshot under the same mutex (held only for that), formats the JSON from
 * them, and drops the references; a snapshot is freed by whoever drops its
 * last reference. So the view is at most LIVEVIEW_TICK_MS old, costs each
 * worker one walk of its sessions a second whether or not anybody looks,
 * and a /sessions request costs the workers nothing. */

#define LIVEVIEW_TICK_MS 1000u
#define LIVEVIEW_TEXT_MAX 256u /* bytes kept of a user name, path or SNI */
#define LIVEVIEW_DEFAULT_LIMIT 1000u
#define LIVEVIEW_LIMIT_MAX 10000u
#define LIVEVIEW_BODY_MAX (32u * 1024u * 1024u)

typedef enum { LIVEVIEW_DOWNLOAD = 0, LIVEVIEW_UPLOAD, LIVEVIEW_LISTING } liveview_direction_t;

/* A string from a peer, cut to fit. */
typedef struct {
    char s[LIVEVIEW_TEXT_MAX];
    size_t len;
    int cut;
} liveview_text_t;

typedef struct {
    char command[8];
    liveview_text_t path; /* len 0 and has_path 0: none */
    int has_path;
    liveview_direction_t direction;
    uint64_t bytes;
    uint64_t rate_bps;
    int64_t since_ms; /* wall clock, ms since the epoch */
} liveview_transfer_t;

typedef struct {
    unsigned long long id;
    size_t listener;      /* index in the configuration */
    char listener_name[72];
    char client[72];      /* "ip:port" of the real client */
    char backend[72];     /* "ip:port"; "" when none is connected */
    int logged_in;
    liveview_text_t user; /* as the backend received it */
    int64_t since_ms;     /* wall clock */
    int tls;              /* the control connection is under TLS */
    char tls_version[16], tls_cipher[64];
    liveview_text_t sni;  /* len 0: none */
    int in_transfer;
    liveview_transfer_t transfer;
} liveview_entry_t;

/* Copies len bytes of s into t, cut at LIVEVIEW_TEXT_MAX (t->cut set). */
void liveview_text_set(liveview_text_t *t, const char *s, size_t len);

/* ---- a worker's side ---------------------------------------------------------- */

typedef struct liveview_board liveview_board_t;
typedef struct liveview_snap liveview_snap_t;

liveview_board_t *liveview_board_new(void);
void liveview_board_free(liveview_board_t *b); /* NULL is fine; drops its snapshot */

/* A snapshot for up to cap entries; NULL when out of memory. */
liveview_snap_t *liveview_snap_new(size_t cap);
/* The next entry to fill (zeroed), or NULL when cap is reached (the session
 * is still counted in the total). */
liveview_entry_t *liveview_snap_add(liveview_snap_t *s);
/* The board shows s from now on (it owns it); the previous one is dropped. */
void liveview_publish(liveview_board_t *b, liveview_snap_t *s);

/* ---- the admin's side --------------------------------------------------------- */

typedef struct {
    const char *name;
    unsigned passive_in_use, passive_size;
} liveview_listener_t;

typedef struct {
    const char *identity;
    long long not_after; /* Unix time; <= 0: unknown */
} liveview_cert_t;

/* What /sessions reports beside the sessions. */
typedef struct {
    const liveview_listener_t *listeners;
    size_t n_listeners;
    const liveview_cert_t *certs;
    size_t n_certs;
    int64_t now_ms; /* wall clock */
} liveview_context_t;

/* The /sessions JSON document over every board's snapshot:
 *   {"now":..., "total":N, "limit":L, "truncated":bool,
 *    "listeners":[{"name","sessions","passive_ports_in_use","passive_ports"}],
 *    "certificates":[{"identity","not_after"}],
 *    "sessions":[...]}
 * sessions sorted by activity (running transfers first, the fastest first,
 * then the newest sessions), at most limit of them; total counts them all.
 * FG_OK and *out (malloc'd, NUL-terminated) with *len, or FG_NOMEM / FG_RANGE. */
int liveview_render(liveview_board_t *const *boards, size_t n_boards, const liveview_context_t *ctx, size_t limit,
                    char **out, size_t *len);

#endif
