/* FEAT reply merging (RFC 2389 §3.2).
 *
 * The backend's feature lines pass through, except the ones whose truth the
 * proxy decides: the security extensions (AUTH, PBSZ, PROT, CCC: RFC 2228,
 * RFC 4217) because the backend speaks no TLS to us and the client speaks TLS
 * to the proxy only, and EPSV/EPRT (RFC 2428) because the proxy implements
 * both itself whatever the backend supports.
 *
 * The proxy's own lines use the plain RFC 4217 §6 form, one feature per line:
 *     " AUTH TLS", " AUTH SSL", " PBSZ", " PROT"   when tls_available, in every
 *                          state: RFC 4217 §5 says the FEAT reply MUST list
 *                          them; vsftpd, ProFTPD and IIS list them after AUTH
 *                          too, and MS-FTPS on implicit sessions ("informational")
 *     " CCC"               when ccc_allowed
 *     " EPSV"              always; " EPRT" when eprt_allowed (active mode served)
 *     " HOST"              when host_answered: a listener with routes answers
 *                          HOST itself (RFC 7151 §3.2: listed in FEAT); the
 *                          backend's HOST line is dropped then, else it passes
 * The PROT levels are not listed: RFC 4217 defines the PROT feature without
 * arguments, and a forbidden level is refused with 534 when asked for. */
#include "feat.h"

#include <string.h>

#include "fgerr.h"

static const char *const feat_owned[] = {"AUTH", "PBSZ", "PROT", "CCC", "EPSV", "EPRT"};

static char to_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* The feature name of a FEAT line (its first word): where it starts, its length. */
static size_t feature_name(const char *line, size_t len, size_t *start)
{
    size_t i = 0;
    while (i < len && line[i] == ' ')
        i++;
    *start = i;
    while (i < len && line[i] != ' ')
        i++;
    return i - *start;
}

static int is_feature(const char *line, size_t start, size_t wlen, const char *name)
{
    if (strlen(name) != wlen)
        return 0;
    size_t j = 0;
    while (j < wlen && to_upper(line[start + j]) == name[j])
        j++;
    return j == wlen;
}

int feat_keep_line(const char *line, size_t len)
{
    if (line == NULL)
        return 0;
    size_t start;
    size_t wlen = feature_name(line, len, &start);
    for (size_t k = 0; k < sizeof(feat_owned) / sizeof(feat_owned[0]); k++)
        /* SECURITY: a backend must not advertise security features the proxy
         * does not provide (a client would believe e.g. CCC or a PROT level
         * is available end to end). */
        if (is_feature(line, start, wlen, feat_owned[k]))
            return 0;
    return 1;
}

static int append(char *out, size_t cap, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap - *pos)
        return 0;
    memcpy(out + *pos, s, n);
    *pos += n;
    out[*pos] = '\0';
    return 1;
}

int feat_own_lines(const feat_policy_t *p, char *out, size_t cap)
{
    if (out == NULL || cap == 0)
        return FG_RANGE;
    out[0] = '\0';
    size_t pos = 0;
    int ok = 1;
    if (p != NULL && p->tls_available) {
        ok = ok && append(out, cap, &pos, " AUTH TLS\r\n") && append(out, cap, &pos, " AUTH SSL\r\n");
        ok = ok && append(out, cap, &pos, " PBSZ\r\n");
        ok = ok && append(out, cap, &pos, " PROT\r\n");
    }
    if (p != NULL && p->ccc_allowed)
        ok = ok && append(out, cap, &pos, " CCC\r\n");
    ok = ok && append(out, cap, &pos, " EPSV\r\n");
    if (p != NULL && p->eprt_allowed)
        ok = ok && append(out, cap, &pos, " EPRT\r\n");
    if (p != NULL && p->host_answered)
        ok = ok && append(out, cap, &pos, " HOST\r\n");
    if (!ok) {
        out[0] = '\0';
        return FG_RANGE;
    }
    return (int)pos;
}

void feat_merge_begin(feat_merge_t *m)
{
    m->multiline = 0;
}

static int put(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
    if (n > cap - *pos)
        return 0;
    memcpy(out + *pos, s, n);
    *pos += n;
    return 1;
}

static int put_line(char *out, size_t cap, size_t *pos, const char *line, size_t len)
{
    return put(out, cap, pos, line, len) && put(out, cap, pos, "\r\n", 2);
}

int feat_merge_line(feat_merge_t *m, const feat_policy_t *own, int code, int first, int last, const char *line,
                    size_t len, char *out, size_t cap, int *done)
{
    size_t pos = 0;
    int ok = 1;
    *done = 0;
    if (first && !last && code == 211) {
        m->multiline = 1;
        ok = put_line(out, cap, &pos, line, len);
    } else if (!last) {
        size_t start;
        size_t wlen = feature_name(line, len, &start);
        /* HOST answered by ftpsgate: its line, not the backend's. */
        int host_ours = own != NULL && own->host_answered && is_feature(line, start, wlen, "HOST");
        if (m->multiline && !host_ours && feat_keep_line(line, len))
            ok = put_line(out, cap, &pos, line, len);
    } else {
        char mine[512];
        int n = feat_own_lines(own, mine, sizeof mine);
        if (n < 0)
            return FG_RANGE;
        if (!m->multiline) /* the backend has no FEAT (or nothing to list): ours alone */
            ok = put(out, cap, &pos, "211-Features:\r\n", 15);
        ok = ok && put(out, cap, &pos, mine, (size_t)n);
        ok = ok && (m->multiline ? put_line(out, cap, &pos, line, len) : put(out, cap, &pos, "211 End\r\n", 9));
        *done = 1;
    }
    return ok ? (int)pos : FG_RANGE;
}
