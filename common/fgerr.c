#include "fgerr.h"

const char *fg_strerror(int code)
{
    switch (code) {
    case FG_OK: return "success";
    case FG_NEED_MORE: return "incomplete input";
    case FG_TOO_LONG: return "input too long";
    case FG_SYNTAX: return "syntax error";
    case FG_RANGE: return "value out of range";
    case FG_NOMEM: return "out of memory";
    case FG_STATE: return "invalid state";
    case FG_TLS: return "TLS failure";
    case FG_CLOSED: return "closed by peer";
    case FG_IO: return "I/O error";
    case FG_CONFIG: return "invalid configuration";
    default: return "unknown error";
    }
}
