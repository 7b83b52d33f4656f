#ifndef FTPSGATE_LOG_H
#define FTPSGATE_LOG_H
#include <stddef.h>

/* One line per event on stderr, as text or JSON. The level and format are
 * start-up configuration (set before the loop runs, and on reload); with the
 * asynchronous writer they are the only process-wide state.
 *
 * Text:  2026-11-27T02:30:00.123Z info session=12 client=127.0.0.1:5000 msg
 * JSON:  {"ts":"...","level":"info","session":12,"client":"...","msg":"..."}
 * Message bytes that are not printable ASCII are escaped (\xNN), so a peer's
 * bytes cannot forge log lines. Never pass a password or key here. */

enum { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_setup(int level, int json);

/* From now on lines go through a bounded buffer of capacity bytes that a
 * thread of its own writes to stderr: log_emit never waits for stderr. What
 * does not fit is dropped and counted (log_dropped), and a line saying how
 * many follows once the writer catches up. 0 or -1. */
int log_start_async(size_t capacity);
/* Back to direct writes, after waiting up to wait_ms for the buffer to be
 * written (a stuck stderr gives up the rest). */
void log_stop_async(unsigned wait_ms);
unsigned long long log_dropped(void);
int log_enabled(int level);
/* Parses "error" "warn" "info" "debug"; returns the level or -1. */
int log_level_parse(const char *name);

/* session: 0 for none. peer: "ip:port" or NULL. */
void log_emit(int level, unsigned long long session, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Escapes len bytes of untrusted data into out (NUL-terminated, truncated
 * with "..." if needed): printable ASCII kept, everything else \xNN. */
char *log_escape(const char *data, size_t len, char *out, size_t cap);

#define LOG_ERROR(sid, peer, ...) log_emit(LOG_LEVEL_ERROR, (sid), (peer), __VA_ARGS__)
#define LOG_WARN(sid, peer, ...)                                                          \
    do { if (log_enabled(LOG_LEVEL_WARN)) log_emit(LOG_LEVEL_WARN, (sid), (peer), __VA_ARGS__); } while (0)
#define LOG_INFO(sid, peer, ...)                                                          \
    do { if (log_enabled(LOG_LEVEL_INFO)) log_emit(LOG_LEVEL_INFO, (sid), (peer), __VA_ARGS__); } while (0)
#define LOG_DEBUG(sid, peer, ...)                                                         \
    do { if (log_enabled(LOG_LEVEL_DEBUG)) log_emit(LOG_LEVEL_DEBUG, (sid), (peer), __VA_ARGS__); } while (0)

#endif
