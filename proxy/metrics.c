#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>

typedef struct {
    const char *name;
    const char *type;
    const char *help;
    size_t offset;
} metric_def_t;

#define M(field, type, help) {"ftpsgate_" #field, type, help, offsetof(metrics_t, field)}

static const metric_def_t defs[] = {
    M(sessions_total, "counter", "Client control connections accepted."),
    M(sessions_active, "gauge", "Sessions open now."),
    M(sessions_refused, "counter", "Connections refused by limits or shutdown."),
    M(backend_connect_failures, "counter",
      "Backend control connections that could not be made (no address answered, name unresolvable, source address)."),
    M(control_tls_failures, "counter", "Control connection TLS failures."),
    M(data_tls_failures, "counter", "Data connection TLS failures (handshake, session reuse, mid-transfer)."),
    M(transfers_ok, "counter", "Transfers whose every byte was delivered."),
    M(transfers_failed, "counter", "Transfers aborted or failed."),
    M(bytes_to_client, "counter", "Data channel bytes relayed from backends toward clients."),
    M(bytes_to_backend, "counter", "Data channel bytes relayed from clients toward backends."),
    M(policy_refusals, "counter", "Commands refused by the protection policy."),
    M(data_peer_refused, "counter", "Data connections refused: not from the client's IP."),
    M(lines_too_long, "counter", "Command lines over the cap, discarded."),
    M(pipelined_after_auth, "counter", "Sessions that sent plaintext after AUTH (discarded)."),
    M(passive_ports_exhausted, "counter", "PASV/EPSV refused: no free passive port."),
    M(routes_unmatched, "counter", "Sessions no route took, with no default backend (530, no server contacted)."),
    M(upload_limit_cuts, "counter", "Uploads cut at policy.max_upload_bytes (552, backend connection reset)."),
    M(log_lines_dropped, "counter", "Log lines dropped because stderr was not read fast enough."),
    M(transfer_log_dropped, "counter", "Transfer log records dropped because the file was not written fast enough."),
};

void metrics_sum(metrics_t *total, const metrics_t *m)
{
    for (size_t i = 0; i < sizeof *m / sizeof(uint64_t); i++) {
        const uint64_t *from = (const uint64_t *)m + i;
        ((uint64_t *)total)[i] += __atomic_load_n(from, __ATOMIC_RELAXED);
    }
}

int metrics_format(const metrics_t *m, unsigned passive_in_use, unsigned passive_configured,
                   unsigned long tls_sessions_cached, char *out, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        const uint64_t *v = (const uint64_t *)((const char *)m + defs[i].offset);
        int n = snprintf(out + len, cap - len, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n",
                         defs[i].name, defs[i].help, defs[i].name, defs[i].type, defs[i].name, *v);
        if (n < 0 || (size_t)n >= cap - len)
            return -1;
        len += (size_t)n;
    }
    int n = snprintf(out + len, cap - len,
                     "# HELP ftpsgate_passive_ports_in_use Passive ports reserved now.\n"
                     "# TYPE ftpsgate_passive_ports_in_use gauge\nftpsgate_passive_ports_in_use %u\n"
                     "# HELP ftpsgate_passive_ports_configured Passive ports of every listener's range.\n"
                     "# TYPE ftpsgate_passive_ports_configured gauge\nftpsgate_passive_ports_configured %u\n"
                     "# HELP ftpsgate_tls_sessions_cached TLS sessions in the server session caches "
                     "(current configuration).\n"
                     "# TYPE ftpsgate_tls_sessions_cached gauge\nftpsgate_tls_sessions_cached %lu\n",
                     passive_in_use, passive_configured, tls_sessions_cached);
    if (n < 0 || (size_t)n >= cap - len)
        return -1;
    return (int)(len + (size_t)n);
}

int metrics_format_cert_header(char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "# HELP ftpsgate_tls_certificate_not_after_seconds End of validity of each TLS "
                     "identity's certificate (Unix time).\n"
                     "# TYPE ftpsgate_tls_certificate_not_after_seconds gauge\n");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int metrics_format_cert_line(const char *identity, long long not_after, char *out, size_t cap)
{
    int n = snprintf(out, cap, "ftpsgate_tls_certificate_not_after_seconds{identity=\"%s\"} %lld\n", identity,
                     not_after);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static uint64_t transfers_of(const metrics_t *m)
{
    return __atomic_load_n(&m->transfers_ok, __ATOMIC_RELAXED) + __atomic_load_n(&m->transfers_failed, __ATOMIC_RELAXED);
}

static uint64_t sessions_of(const metrics_t *m)
{
    return __atomic_load_n(&m->sessions_total, __ATOMIC_RELAXED);
}

int metrics_format_workers(const metrics_t *const *workers, int n, char *out, size_t cap)
{
    static const struct {
        const char *name, *help;
        uint64_t (*value)(const metrics_t *m);
    } families[] = {
        {"ftpsgate_worker_sessions_total", "Client control connections accepted by each worker loop.", sessions_of},
        {"ftpsgate_worker_transfers_total", "Transfers (complete or failed) of each worker loop.", transfers_of},
    };
    size_t len = 0;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        int k = snprintf(out + len, cap - len, "# HELP %s %s\n# TYPE %s counter\n", families[f].name,
                         families[f].help, families[f].name);
        for (int w = 0; k >= 0 && (size_t)k < cap - len && w < n; w++) {
            len += (size_t)k;
            k = snprintf(out + len, cap - len, "%s{worker=\"%d\"} %" PRIu64 "\n", families[f].name, w,
                         families[f].value(workers[w]));
        }
        if (k < 0 || (size_t)k >= cap - len)
            return -1;
        len += (size_t)k;
    }
    return (int)len;
}
