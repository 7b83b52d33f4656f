/* libFuzzer target for common/ftp_reply.c: the input is split on LF into
 * lines fed in order, as the session does with a backend's reply stream.
 * Checks the classification invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "ftp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    ftp_reply_state_t st;
    ftp_reply_init(&st);
    size_t off = 0;
    while (off <= size) {
        const char *nl = memchr(s + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (s + off)) : size - off;
        const char *line = s + off;
        int was_multi = st.in_multiline;
        int was_code = st.code;
        ftp_reply_line_t rl;
        int rc = ftp_reply_feed(&st, line, len, &rl);
        if (rc == FG_OK) {
            if (rl.code < 100 || rl.code > 599)
                abort();
            if (rl.text_len > len || (rl.text_len > 0 && (rl.text < line ||
                                                          rl.text + rl.text_len > line + len)))
                abort();
            if (rl.first == was_multi)
                abort(); /* a first line exactly when no reply was open */
            if (was_multi && rl.code != was_code)
                abort();
            if (st.in_multiline == rl.last)
                abort(); /* open after the line exactly when it was not the last */
            if (!rl.first && !rl.last && (rl.text != line || rl.text_len != len))
                abort(); /* middle lines are whole */
        } else if (rc == FG_SYNTAX) {
            if (was_multi || st.in_multiline)
                abort(); /* middle lines are never a syntax error */
        } else {
            abort();
        }
        if (!nl)
            break;
        off += len + 1;
    }
    return 0;
}
