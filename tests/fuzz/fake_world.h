#ifndef FTPSGATE_FAKE_WORLD_H
#define FTPSGATE_FAKE_WORLD_H
/* The in-memory world of the session fuzzer (fuzz_session.c): the fake
 * client connection (fake_client.c, in place of proxy/client.c), the fake
 * backend control connection (fake_upstream.c, for proxy/upstream.c) and the
 * fake data links (fake_datalink.c, for proxy/datalink.c). They implement
 * those three headers exactly, keep libuv's completion rule (no callback
 * inside a call: reports go through defer.h or a libuv close callback), and
 * are driven by the fuzz script through the fz*_ functions below. No socket
 * is ever opened.
 *
 * The driver owns the checks; the fakes tell it what the session did
 * (fz_obs_*) and stop the process through FZ_FAIL when the session breaks a
 * rule of their interface (e.g. a call on a closed object). */
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "config.h"
#include "datalink.h"
#include "metrics.h"

#if defined(__GNUC__)
#define FZ_NORETURN __attribute__((noreturn))
#define FZ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FZ_NORETURN
#define FZ_PRINTF(a, b)
#endif

/* An invariant broke: prints the reason and the transcript so far, then
 * abort() so that libFuzzer keeps the input. */
#define FZ_FAIL(...) fz_fail(__FILE__, __LINE__, __VA_ARGS__)
FZ_NORETURN void fz_fail(const char *file, int line, const char *fmt, ...) FZ_PRINTF(3, 4);
/* The transcript (FUZZ_SESSION_TRACE=1): one line per event, escaped. */
void fz_trace(const char *fmt, ...) FZ_PRINTF(1, 2);
void fz_trace_bytes(const char *what, const char *p, size_t n);
int fz_tracing(void);

/* What the fakes share with the driver for the current input. */
typedef struct {
    uv_loop_t *loop;
    const config_listener_t *cfg;
    struct sockaddr_storage client_addr, local_addr; /* the control connection */
    struct sockaddr_storage real_client;  /* client_addr, or the PROXY header's source */
    struct sockaddr_storage backend_addr, backend_local;
    int addresses_fail; /* client_addresses reports FG_IO */
} fz_env_t;
extern fz_env_t fz_env;

/* ---- the client side (fake_client.c) ------------------------------------------ */

/* What a client segment was sent as: the client's own view of its connection
 * (it believes TLS is on between its handshake and its close_notify). */
typedef enum { FZC_DATA = 0, FZC_HANDSHAKE, FZC_CLOSE_NOTIFY, FZC_TLS_GARBAGE, FZC_FIN } fzc_kind_t;

/* The client sends: bytes (DATA) or a TLS event, queued in its "socket" and
 * read by the fake connection in order when it reads. */
void fzc_send(fzc_kind_t kind, const char *data, size_t len);
/* The client resets the connection: reported at once, pending bytes dropped. */
void fzc_reset(void);
/* The client reads our replies (on) or stops reading them (off). */
void fzc_set_reading(int on);
/* Moves what can move (socket bytes into the connection, our queued replies to
 * the reading client). 1 when something happened. */
int fzc_pump(void);
int fzc_alive(void);          /* a client_t exists (not yet closed) */
size_t fzc_queued(void);      /* replies written and not read by the client */
size_t fzc_fake_bytes(void);  /* heap the fake's model holds beyond what client.c would */
/* Taint of command lines (DESIGN.md §2: nothing sent in clear before AUTH
 * runs after it). Both look up every line client_take_line returned with the
 * same verb and argument: stale, when each of them had a byte that arrived in
 * clear before the latest TLS start (*deferred: the latest such copy was
 * taken while a transfer ran); protected, when one arrived entirely under
 * TLS. */
int fzc_line_stale(const char *verb, const char *arg, size_t arg_len, int *deferred);
int fzc_line_protected(const char *verb, const char *arg, size_t arg_len);
void fzc_reset_world(void);   /* between inputs: forget the history */

/* ---- the backend side (fake_upstream.c) ------------------------------------------- */

/* The backend of the newest upstream sends bytes (dropped when none is open). */
void fzu_send(const char *data, size_t len);
/* The newest upstream fails (as upstream.c reports a socket error, a refusal...). */
void fzu_fail(int why);
/* From now on, writes to the backend fail. */
void fzu_break_writes(void);
int fzu_pump(void);
unsigned fzu_live(void);      /* upstreams not yet freed */
size_t fzu_fake_bytes(void);
void fzu_reset_world(void);

/* ---- data links (fake_datalink.c) ------------------------------------------------ */

/* The newest link that has not reported yet reports: 0 success (only once the
 * transfer direction is set), else a failure kind 1..4. */
void fzd_done(int kind);
/* The next datalink_new fails with rc (FG_RANGE, FG_IO). */
void fzd_fail_next(int rc);
unsigned fzd_live(void);      /* links not detached */
/* The link a transfer command is forwarded over: the one live link, which
 * must have its direction set. NULL when there is none. */
typedef struct {
    unsigned id;
    int direction_set, upload;
    int tls;                  /* opts.tls.ctx != NULL: PROT P */
    const void *tls_ctx;
} fzd_info_t;
int fzd_current(fzd_info_t *out);
void fzd_reset_world(void);

/* ---- observations the fakes report to the driver's checks ----------------------- */

typedef enum { FZ_OUT_REPLY = 0, FZ_OUT_LINE, FZ_OUT_WRITE } fz_out_src_t;
/* Bytes the session wrote to the client (accepted by the connection). */
void fz_obs_client_output(fz_out_src_t src, const char *data, size_t len);
/* A command line (send_line), raw bytes (send_raw) or the ABOR sequence
 * (send_abort) the session wrote to the backend. */
typedef enum { FZ_UP_LINE = 0, FZ_UP_RAW, FZ_UP_ABORT } fz_up_kind_t;
void fz_obs_backend_command(fz_up_kind_t kind, const char *data, size_t len);
/* A link's outcome reached the session (its done callback is being called). */
void fz_obs_link_done(unsigned id, int code);
/* The session started TLS on the control connection (client_start_tls). */
void fz_obs_tls_started(void);
/* From a transfer command forwarded to the next command decided: lines the
 * client sends meanwhile wait in the session's queue. */
int fz_transfer_running(void);

#endif
