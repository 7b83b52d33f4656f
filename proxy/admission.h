#ifndef FTPSGATE_ADMISSION_H
#define FTPSGATE_ADMISSION_H
#include <sys/socket.h>

/* How many sessions the process has, in total and per client IP, for
 * limits.max_sessions and limits.max_sessions_per_ip over every listener and
 * every worker loop. Thread-safe: a mutex taken when a session starts and
 * when it ends, never on the data path; the per-IP counts are a hash map. */

typedef struct admission admission_t;

admission_t *admission_new(void);
void admission_free(admission_t *a); /* NULL is fine */

/* A new session: NULL when admitted (and counted), else the refusal reason.
 * ip NULL: counted in the total only (behind a balancer the real client is
 * known later: admission_enter_ip). 0 means no limit. */
const char *admission_enter(admission_t *a, const struct sockaddr *ip, unsigned max_total, unsigned max_per_ip);
/* The real client of an admitted session: NULL when counted, else the reason. */
const char *admission_enter_ip(admission_t *a, const struct sockaddr *ip, unsigned max_per_ip);
/* A session ended: ip is what it was counted under (NULL: the total only). */
void admission_leave(admission_t *a, const struct sockaddr *ip);

unsigned admission_total(admission_t *a);
unsigned admission_from(admission_t *a, const struct sockaddr *ip);

#endif
