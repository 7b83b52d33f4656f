#ifndef FTPSGATE_NUMPARSE_H
#define FTPSGATE_NUMPARSE_H
#include <stddef.h>
#include <stdint.h>

/* Strict unsigned decimal: the whole slice must be ASCII digits (no sign, no
 * spaces, no empty string), at most 20 digits, value <= max.
 * Returns FG_OK, FG_SYNTAX or FG_RANGE. *out is written only on FG_OK. */
int num_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);

/* Port number 1..65535 (0 refused). */
int num_parse_port(const char *s, size_t len, uint16_t *out);

#endif
