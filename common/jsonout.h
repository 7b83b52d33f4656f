#ifndef FTPSGATE_JSONOUT_H
#define FTPSGATE_JSONOUT_H
#include <stddef.h>

/* A JSON text built piece by piece into a buffer that grows up to a cap
 * (the admin endpoint's /sessions). Pure. Once a piece does not fit (the cap,
 * or memory) the writer is failed: later calls do nothing and jsonout_take
 * returns NULL, so callers check once at the end.
 *
 * Strings from peers (user names, paths, server names) go through
 * jsonout_str: valid UTF-8 is kept; '"' and '\' are escaped; control
 * characters, DEL, and '<' '>' '&' (so that the text can never close a
 * <script> element or open markup wherever it is pasted) become \u00XX;
 * U+2028/U+2029 become \u2028/\u2029; every byte that is not valid UTF-8
 * becomes U+FFFD. The output is always valid JSON and valid UTF-8. */

typedef struct {
    char *buf;
    size_t len, cap, max;
    int failed;
} jsonout_t;

/* max: the most bytes the text may take. */
void jsonout_init(jsonout_t *o, size_t max);
void jsonout_free(jsonout_t *o);

void jsonout_raw(jsonout_t *o, const char *text); /* copied as it is (our own JSON syntax) */
void jsonout_fmt(jsonout_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A quoted, escaped JSON string of len bytes at s (see above). */
void jsonout_str(jsonout_t *o, const char *s, size_t len);
/* s: NUL-terminated; NULL is written as null. */
void jsonout_cstr(jsonout_t *o, const char *s);

/* The text (NUL-terminated; the caller frees it) and its length; NULL when
 * the writer failed (then *len is 0). The writer is empty afterwards. */
char *jsonout_take(jsonout_t *o, size_t *len);

#endif
