/* libFuzzer target for common/ftp_cmd.c: parse and redact one command line.
 * Checks that a parsed command obeys the header's contract and that redacted
 * output is always NUL-terminated printable ASCII within its cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "ftp_cmd.h"

static void check_redacted(const char *out, size_t cap)
{
    const char *nul = memchr(out, '\0', cap);
    if (nul == NULL)
        abort(); /* not NUL-terminated within cap */
    size_t n = (size_t)(nul - out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c > 0x7e)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    ftp_cmd_t c;
    int rc = ftp_cmd_parse(line, size, &c);
    if (rc == FG_OK) {
        if (c.verb_len < 3 || c.verb_len > 4 || c.verb[c.verb_len] != '\0')
            abort();
        for (size_t i = 0; i < c.verb_len; i++) {
            if (c.verb[i] < 'A' || c.verb[i] > 'Z')
                abort();
        }
        if (c.id != ftp_cmd_lookup(c.verb, c.verb_len))
            abort();
        if (c.arg != NULL) {
            if (c.arg_len == 0 || c.arg < line || c.arg + c.arg_len != line + size)
                abort();
            if (memchr(c.arg, '\r', c.arg_len) || memchr(c.arg, '\n', c.arg_len) ||
                memchr(c.arg, '\0', c.arg_len))
                abort();
        } else if (c.arg_len != 0) {
            abort();
        }
        if (ftp_cmd_is_upload(c.id) && !ftp_cmd_is_transfer(c.id))
            abort();
    } else if (rc != FG_SYNTAX) {
        abort();
    }

    static const size_t caps[] = {1, 2, 5, 9, 17, 64, 4096};
    for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
        char *out = malloc(caps[k]); /* exact size: ASan catches any overrun */
        if (out == NULL)
            return 0;
        if (ftp_cmd_redact(line, size, out, caps[k]) != out)
            abort();
        check_redacted(out, caps[k]);
        /* SECURITY: a parsed PASS/ACCT argument never shows in the output */
        if (rc == FG_OK && (c.id == FTP_CMD_PASS || c.id == FTP_CMD_ACCT) && c.arg != NULL &&
            strlen(out) > 9)
            abort();
        free(out);
    }
    return 0;
}
