#ifndef FTPSGATE_FEAT_H
#define FTPSGATE_FEAT_H
#include <stddef.h>

/* FEAT reply merging (RFC 2389): the backend's feature lines are kept except
 * those the proxy itself decides (AUTH, PBSZ, PROT, CCC, EPSV, EPRT), and
 * the proxy adds its own. */

typedef struct {
    int tls_available;   /* advertise AUTH TLS/SSL, PBSZ and PROT (RFC 4217 §5: in every state) */
    int ccc_allowed;
    int eprt_allowed;    /* active mode is served (else PORT/EPRT are refused, so not advertised) */
} feat_policy_t;

/* line: one middle line of a multi-line 211 reply (leading space included).
 * Returns 1 when the line is to be forwarded, 0 when the proxy drops it. */
int feat_keep_line(const char *line, size_t len);

/* Writes the proxy's own feature lines (each " NAME...\r\n") into out with a
 * NUL. Returns the length, or FG_RANGE when cap is too small. */
int feat_own_lines(const feat_policy_t *p, char *out, size_t cap);

#endif
