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
    int host_answered;   /* ftpsgate answers HOST itself (the listener has routes) */
} feat_policy_t;

/* line: one middle line of a multi-line 211 reply (leading space included).
 * Returns 1 when the line is to be forwarded, 0 when the proxy drops it. */
int feat_keep_line(const char *line, size_t len);

/* Writes the proxy's own feature lines (each " NAME...\r\n") into out with a
 * NUL. Returns the length, or FG_RANGE when cap is too small. */
int feat_own_lines(const feat_policy_t *p, char *out, size_t cap);

/* Merging the backend's FEAT reply as it streams in, one reply line at a
 * time: the backend's lines that the proxy does not decide pass, the proxy's
 * own lines go in before the backend's last line; a backend without a
 * multi-line 211 (no FEAT, or nothing to list) gets "211-Features:", the
 * proxy's lines and "211 End". Pure. */
typedef struct {
    int multiline; /* the backend's reply is a multi-line 211 */
} feat_merge_t;

void feat_merge_begin(feat_merge_t *m);
/* line (len bytes, no CRLF) with its reply code, and whether it is the
 * reply's first and last line. Writes what the client gets, CRLF included,
 * to out and returns its length (0: nothing), or FG_RANGE when cap is too
 * small. *done is set to 1 with the last line. */
int feat_merge_line(feat_merge_t *m, const feat_policy_t *own, int code, int first, int last, const char *line,
                    size_t len, char *out, size_t cap, int *done);

#endif
