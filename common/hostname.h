#ifndef FTPSGATE_HOSTNAME_H
#define FTPSGATE_HOSTNAME_H
#include <stddef.h>

/* Server-name patterns, as the configuration writes them for the listener's
 * `sni` table and for `sni` and `host` routes: an exact name, or "*.domain"
 * for exactly one more label (RFC 6125 §6.4.3: the wildcard is the whole
 * left-most label and never matches "domain" itself, nor two labels).
 * Names compare case-insensitively (RFC 4343), in ASCII: no locale. One
 * rule, here, so that the identity SNI picks and the route SNI picks can
 * never disagree about what a pattern matches. */

/* 1 when pattern (NUL-terminated) matches the len bytes of name; a name with
 * a NUL byte or an empty one never matches. */
int hostname_match(const char *pattern, const char *name, size_t len);

/* 1 when s is a valid pattern: 1..253 bytes of letters, digits, '-' and '.',
 * optionally after a leading "*." that is followed by something. */
int hostname_pattern_valid(const char *s);

/* 1 when a and b (len bytes each) are equal but for ASCII case. */
int hostname_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
