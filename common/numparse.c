/* Strict decimal number parsing for untrusted bytes (network, config).
 *
 * Why not strtoul/atoi/sscanf: they skip leading white space, accept a sign
 * ("-1" becomes ULONG_MAX), accept "0x" prefixes or trailing garbage, depend on
 * the locale, and report overflow through errno. Every one of those has been the
 * root of a parser confusion bug; here the whole slice must be digits. */
#include "numparse.h"

#include "fgerr.h"

/* UINT64_MAX has 20 decimal digits: more digits than that cannot fit, even
 * with leading zeros we refuse to look further (bounded work per number). */
#define NUM_MAX_DIGITS 20

int num_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    /* SECURITY: empty, signed, spaced or otherwise non-digit input is a syntax
     * error, never silently 0 (the atoi failure mode). */
    if (s == NULL || len == 0)
        return FG_SYNTAX;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return FG_SYNTAX;
    }
    /* SECURITY: cap the digit count so no input makes us loop long or wrap. */
    if (len > NUM_MAX_DIGITS)
        return FG_RANGE;

    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        /* SECURITY: overflow check before the multiply, not after it wrapped. */
        if (v > (UINT64_MAX - d) / 10)
            return FG_RANGE;
        v = v * 10 + d;
    }
    if (v > max)
        return FG_RANGE;
    if (out != NULL)
        *out = v;
    return FG_OK;
}

int num_parse_port(const char *s, size_t len, uint16_t *out)
{
    uint64_t v;
    int rc = num_parse_u64(s, len, 65535, &v);
    if (rc != FG_OK)
        return rc;
    /* SECURITY: port 0 means "any port" to the socket API; a peer must never
     * be able to make us bind or connect to it. */
    if (v == 0)
        return FG_RANGE;
    if (out != NULL)
        *out = (uint16_t)v;
    return FG_OK;
}
