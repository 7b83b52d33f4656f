#ifndef FTPSGATE_METRICS_H
#define FTPSGATE_METRICS_H
#include <stddef.h>
#include <stdint.h>

/* Counters of one event loop (worker), bumped where each event or rejection
 * happens, served as Prometheus text by the admin endpoint, which sums the
 * workers' counters from its own thread: every update and every read is a
 * relaxed atomic (no lock, no ordering needed between counters). */
typedef struct {
    uint64_t sessions_total;
    uint64_t sessions_active;
    uint64_t sessions_refused;        /* limits or shutdown */
    uint64_t backend_connect_failures;
    uint64_t control_tls_failures;
    uint64_t data_tls_failures;
    uint64_t transfers_ok;
    uint64_t transfers_failed;
    uint64_t bytes_to_client;         /* data channel payload */
    uint64_t bytes_to_backend;
    uint64_t policy_refusals;         /* 521/534 answers */
    uint64_t data_peer_refused;       /* data connections from a foreign IP */
    uint64_t lines_too_long;
    uint64_t pipelined_after_auth;    /* sessions that sent plaintext after AUTH */
    uint64_t passive_ports_exhausted;
    uint64_t routes_unmatched;        /* sessions no route took (no default backend) */
    uint64_t upload_limit_cuts;       /* uploads cut at policy.max_upload_bytes */
    uint64_t log_lines_dropped;       /* filled in at scrape time (log_dropped) */
    uint64_t transfer_log_dropped;    /* filled in at scrape time (auditlog_dropped) */
} metrics_t;

#define METRIC_ADD(m, field, n) ((void)__atomic_fetch_add(&(m)->field, (uint64_t)(n), __ATOMIC_RELAXED))
#define METRIC_INC(m, field) METRIC_ADD(m, field, 1)
#define METRIC_DEC(m, field) ((void)__atomic_fetch_sub(&(m)->field, (uint64_t)1, __ATOMIC_RELAXED))

/* total += m, field by field, with atomic reads of m. */
void metrics_sum(metrics_t *total, const metrics_t *m);

/* Prometheus text exposition format 0.0.4. Returns the length written (NUL
 * excluded), or -1 when cap is too small. Pure. */
int metrics_format(const metrics_t *m, unsigned passive_in_use, unsigned passive_configured,
                   unsigned long tls_sessions_cached, char *out, size_t cap);
/* The certificate expiry gauge: its HELP/TYPE lines, then one line per TLS
 * identity (names are [A-Za-z0-9_.-], no escaping) with the certificate's
 * notAfter as Unix time. Bytes written, or -1 when cap is too small. */
int metrics_format_cert_header(char *out, size_t cap);
int metrics_format_cert_line(const char *identity, long long not_after, char *out, size_t cap);
/* Per worker loop: sessions accepted and transfers (ok or failed), with the
 * label worker="N", each family in one group. Bytes written, or -1. */
int metrics_format_workers(const metrics_t *const *workers, int n, char *out, size_t cap);

#endif
