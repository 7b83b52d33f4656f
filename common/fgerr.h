#ifndef FTPSGATE_FGERR_H
#define FTPSGATE_FGERR_H
/* Error codes shared by every module: 0 is success, failures are negative.
 * Parsers return FG_OK, FG_NEED_MORE, FG_TOO_LONG, FG_SYNTAX or FG_RANGE. */

enum {
    FG_OK = 0,
    FG_NEED_MORE = -1, /* input ended before a complete item */
    FG_TOO_LONG = -2,  /* an item exceeded its cap; it was discarded */
    FG_SYNTAX = -3,    /* malformed input */
    FG_RANGE = -4,     /* a number or value outside its allowed range */
    FG_NOMEM = -5,     /* allocation failed */
    FG_STATE = -6,     /* call not valid in the object's current state */
    FG_TLS = -7,       /* TLS protocol failure (see the engine's reason) */
    FG_CLOSED = -8,    /* the peer ended the stream cleanly */
    FG_IO = -9,        /* an operating-system call failed */
    FG_CONFIG = -10    /* configuration is invalid */
};

/* A static, human-readable description of an FG_* code. Never NULL. */
const char *fg_strerror(int code);

#endif
