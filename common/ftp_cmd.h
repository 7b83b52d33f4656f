#ifndef FTPSGATE_FTP_CMD_H
#define FTPSGATE_FTP_CMD_H
#include <stddef.h>

/* The FTP commands ftpsgate treats specially; everything else is FTP_CMD_OTHER
 * and is forwarded to the backend by name. */
typedef enum {
    FTP_CMD_OTHER = 0,
    FTP_CMD_AUTH, FTP_CMD_PBSZ, FTP_CMD_PROT, FTP_CMD_CCC,
    FTP_CMD_USER, FTP_CMD_PASS, FTP_CMD_ACCT,
    FTP_CMD_FEAT, FTP_CMD_OPTS, FTP_CMD_HELP,
    FTP_CMD_PASV, FTP_CMD_EPSV, FTP_CMD_PORT, FTP_CMD_EPRT,
    FTP_CMD_LPSV, FTP_CMD_LPRT,
    FTP_CMD_RETR, FTP_CMD_STOR, FTP_CMD_STOU, FTP_CMD_APPE,
    FTP_CMD_LIST, FTP_CMD_NLST, FTP_CMD_MLSD,
    FTP_CMD_REST, FTP_CMD_ABOR, FTP_CMD_STAT, FTP_CMD_NOOP,
    FTP_CMD_REIN, FTP_CMD_QUIT, FTP_CMD_HOST,
    FTP_CMD_COUNT_
} ftp_cmd_id_t;

/* A parsed command line. verb is upper-cased and NUL-terminated; arg borrows
 * from the line passed to ftp_cmd_parse and lives as long as that line. */
typedef struct {
    char verb[5];
    size_t verb_len;
    ftp_cmd_id_t id;
    const char *arg; /* NULL when there is no argument */
    size_t arg_len;
} ftp_cmd_t;

/* Parses "VERB" or "VERB SP arg" (RFC 959 §5.3). The verb is 3 or 4 ASCII
 * letters, any case. Returns FG_OK or FG_SYNTAX (empty line, bad verb, verb
 * followed by something other than one space, or a space with no argument
 * is accepted as no argument). */
int ftp_cmd_parse(const char *line, size_t len, ftp_cmd_t *out);

/* Id of an upper-case verb, FTP_CMD_OTHER when not special. */
ftp_cmd_id_t ftp_cmd_lookup(const char *verb, size_t len);

/* 1 for commands that open a data connection (RETR STOR STOU APPE LIST NLST MLSD). */
int ftp_cmd_is_transfer(ftp_cmd_id_t id);
/* 1 for transfers whose bytes go client -> server (STOR STOU APPE). */
int ftp_cmd_is_upload(ftp_cmd_id_t id);

/* Writes the line with the argument of PASS (and ACCT) replaced by "****",
 * for logging; bytes outside printable ASCII are escaped as \xNN. Always
 * NUL-terminates out (cap >= 1), truncating if needed. Returns out. */
char *ftp_cmd_redact(const char *line, size_t len, char *out, size_t cap);

#endif
