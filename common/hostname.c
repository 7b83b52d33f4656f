#include "hostname.h"

#include <string.h>

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int hostname_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower(a[i]) != lower(b[i]))
            return 0;
    return 1;
}

int hostname_match(const char *pattern, const char *name, size_t len)
{
    size_t plen = strlen(pattern);

    if (len == 0 || memchr(name, '\0', len) != NULL)
        return 0;
    if (hostname_equal(pattern, plen, name, len))
        return 1;
    /* "*.example.com" matches "x.example.com": the first label of name is
     * non-empty and the rest, from its dot, equals ".example.com". */
    if (plen > 2 && pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = memchr(name, '.', len);
        if (dot != NULL && dot != name)
            return hostname_equal(pattern + 1, plen - 1, dot, len - (size_t)(dot - name));
    }
    return 0;
}

int hostname_pattern_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    if (s[0] == '*') {
        if (s[1] != '.' || s[2] == '\0')
            return 0;
        s += 2;
    }
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '.'))
            return 0;
    return 1;
}
