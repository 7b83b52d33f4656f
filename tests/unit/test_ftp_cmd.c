/* Unit tests for common/ftp_cmd.c: command line parsing and log redaction. */
#include "check.h"
#include "fgerr.h"
#include "ftp_cmd.h"

static int parse(const char *s, ftp_cmd_t *c)
{
    return ftp_cmd_parse(s, strlen(s), c);
}

static void test_parse_ok(void)
{
    ftp_cmd_t c;
    CHECK_EQ_INT(parse("USER bob", &c), FG_OK);
    CHECK_STR(c.verb, "USER");
    CHECK_EQ_INT(c.verb_len, 4);
    CHECK_EQ_INT(c.id, FTP_CMD_USER);
    CHECK_EQ_MEM(c.arg, c.arg_len, "bob");

    CHECK_EQ_INT(parse("auth tls", &c), FG_OK);
    CHECK_STR(c.verb, "AUTH");
    CHECK_EQ_INT(c.id, FTP_CMD_AUTH);
    CHECK_EQ_MEM(c.arg, c.arg_len, "tls");

    CHECK_EQ_INT(parse("pWd", &c), FG_OK);
    CHECK_STR(c.verb, "PWD");
    CHECK_EQ_INT(c.verb_len, 3);
    CHECK_EQ_INT(c.id, FTP_CMD_OTHER);
    CHECK(c.arg == NULL);
    CHECK_EQ_INT(c.arg_len, 0);

    CHECK_EQ_INT(parse("CCC", &c), FG_OK);
    CHECK_EQ_INT(c.id, FTP_CMD_CCC);

    /* "VERB " with nothing after: no argument */
    CHECK_EQ_INT(parse("NOOP ", &c), FG_OK);
    CHECK(c.arg == NULL);
    CHECK_EQ_INT(c.id, FTP_CMD_NOOP);

    /* arguments keep their spaces, including leading ones after the single SP */
    CHECK_EQ_INT(parse("RETR my file.txt ", &c), FG_OK);
    CHECK_EQ_MEM(c.arg, c.arg_len, "my file.txt ");
    CHECK_EQ_INT(parse("STOR  lead", &c), FG_OK);
    CHECK_EQ_MEM(c.arg, c.arg_len, " lead");
    CHECK_EQ_INT(parse("DELE  ", &c), FG_OK);
    CHECK_EQ_MEM(c.arg, c.arg_len, " ");
    CHECK_EQ_INT(parse("SITE chmod\t755 x", &c), FG_OK);
    CHECK_EQ_MEM(c.arg, c.arg_len, "chmod\t755 x");
    CHECK_EQ_INT(parse("RETR \xff\xfe", &c), FG_OK); /* 8-bit bytes in paths */
    CHECK_EQ_INT(c.arg_len, 2);

    /* the argument borrows from the line */
    const char *line = "EPRT |1|127.0.0.1|6275|";
    CHECK_EQ_INT(ftp_cmd_parse(line, strlen(line), &c), FG_OK);
    CHECK(c.arg == line + 5);
    CHECK_EQ_INT(c.id, FTP_CMD_EPRT);
    /* only the slice counts */
    CHECK_EQ_INT(ftp_cmd_parse("QUITXYZ", 4, &c), FG_OK);
    CHECK_EQ_INT(c.id, FTP_CMD_QUIT);
}

static void test_parse_bad(void)
{
    static const char *bad[] = {
        "",           /* empty */
        " USER bob",  /* leading space */
        "US",         /* too short */
        "U",
        "USERS bob",  /* 5 letters */
        "ABCDEFGHIJ",
        "USER\tbob",  /* tab instead of SP */
        "USER\x0b",
        "US3R x",     /* digit in verb */
        "123",
        "US-R",
        "PASV,",
        "P\xc3\x81SS x", /* non-ASCII letter */
        "\377\364ABOR",
    };
    ftp_cmd_t c;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], &c);
        CHECK_EQ_INT(rc, FG_SYNTAX);
        if (rc != FG_SYNTAX)
            fprintf(stderr, "  input %zu: \"%s\"\n", i, bad[i]);
    }
    /* SECURITY: command injection through the forwarded argument */
    CHECK_EQ_INT(ftp_cmd_parse("RETR a\r\nDELE b", 15, &c), FG_SYNTAX);
    CHECK_EQ_INT(ftp_cmd_parse("RETR a\nDELE b", 13, &c), FG_SYNTAX);
    CHECK_EQ_INT(ftp_cmd_parse("RETR a\rDELE b", 13, &c), FG_SYNTAX);
    CHECK_EQ_INT(ftp_cmd_parse("RETR a\0b", 8, &c), FG_SYNTAX);
    CHECK_EQ_INT(ftp_cmd_parse("NOOP\0", 5, &c), FG_SYNTAX);
    CHECK_EQ_INT(ftp_cmd_parse(NULL, 0, &c), FG_SYNTAX);
}

static void test_lookup(void)
{
    static const struct {
        const char *v;
        ftp_cmd_id_t id;
    } t[] = {
        {"AUTH", FTP_CMD_AUTH}, {"PBSZ", FTP_CMD_PBSZ}, {"PROT", FTP_CMD_PROT},
        {"CCC", FTP_CMD_CCC},   {"USER", FTP_CMD_USER}, {"PASS", FTP_CMD_PASS},
        {"ACCT", FTP_CMD_ACCT}, {"FEAT", FTP_CMD_FEAT}, {"OPTS", FTP_CMD_OPTS},
        {"HELP", FTP_CMD_HELP}, {"PASV", FTP_CMD_PASV}, {"EPSV", FTP_CMD_EPSV},
        {"PORT", FTP_CMD_PORT}, {"EPRT", FTP_CMD_EPRT}, {"LPSV", FTP_CMD_LPSV},
        {"LPRT", FTP_CMD_LPRT}, {"RETR", FTP_CMD_RETR}, {"STOR", FTP_CMD_STOR},
        {"STOU", FTP_CMD_STOU}, {"APPE", FTP_CMD_APPE}, {"LIST", FTP_CMD_LIST},
        {"NLST", FTP_CMD_NLST}, {"MLSD", FTP_CMD_MLSD}, {"REST", FTP_CMD_REST},
        {"ABOR", FTP_CMD_ABOR}, {"STAT", FTP_CMD_STAT}, {"NOOP", FTP_CMD_NOOP},
        {"REIN", FTP_CMD_REIN}, {"QUIT", FTP_CMD_QUIT}, {"HOST", FTP_CMD_HOST},
        {"CWD", FTP_CMD_OTHER}, {"MLST", FTP_CMD_OTHER}, {"SIZE", FTP_CMD_OTHER},
        {"CC", FTP_CMD_OTHER},  {"CCCC", FTP_CMD_OTHER}, {"AUTHX", FTP_CMD_OTHER},
        {"", FTP_CMD_OTHER},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        CHECK_EQ_INT(ftp_cmd_lookup(t[i].v, strlen(t[i].v)), t[i].id);
    /* every id but OTHER is reachable */
    int seen[FTP_CMD_COUNT_] = {0};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        seen[t[i].id] = 1;
    for (int i = 0; i < FTP_CMD_COUNT_; i++)
        CHECK(seen[i]);
    CHECK_EQ_INT(ftp_cmd_lookup(NULL, 0), FTP_CMD_OTHER);
    CHECK_EQ_INT(ftp_cmd_lookup("PASSWORD", 4), FTP_CMD_PASS);
}

static void test_classes(void)
{
    int transfers = 0, uploads = 0;
    for (int i = 0; i < FTP_CMD_COUNT_; i++) {
        transfers += ftp_cmd_is_transfer((ftp_cmd_id_t)i);
        uploads += ftp_cmd_is_upload((ftp_cmd_id_t)i);
        if (ftp_cmd_is_upload((ftp_cmd_id_t)i))
            CHECK(ftp_cmd_is_transfer((ftp_cmd_id_t)i));
    }
    CHECK_EQ_INT(transfers, 7);
    CHECK_EQ_INT(uploads, 3);
    CHECK(ftp_cmd_is_transfer(FTP_CMD_RETR));
    CHECK(ftp_cmd_is_transfer(FTP_CMD_MLSD));
    CHECK(ftp_cmd_is_transfer(FTP_CMD_NLST));
    CHECK(!ftp_cmd_is_transfer(FTP_CMD_REST));
    CHECK(!ftp_cmd_is_transfer(FTP_CMD_OTHER));
    CHECK(ftp_cmd_is_upload(FTP_CMD_STOR));
    CHECK(ftp_cmd_is_upload(FTP_CMD_STOU));
    CHECK(ftp_cmd_is_upload(FTP_CMD_APPE));
    CHECK(!ftp_cmd_is_upload(FTP_CMD_RETR));
}

static const char *redact(const char *s, size_t len, size_t cap)
{
    static char out[256];
    memset(out, 'Z', sizeof(out));
    return ftp_cmd_redact(s, len, out, cap);
}

#define REDACT(s) redact((s), sizeof(s) - 1, 256)

static void test_redact(void)
{
    CHECK_STR(REDACT("PASS hunter2"), "PASS ****");
    CHECK_STR(REDACT("pass hunter2"), "pass ****");
    CHECK_STR(REDACT("ACCT secret"), "ACCT ****");
    CHECK_STR(REDACT("PASS"), "PASS");
    CHECK_STR(REDACT("PASS "), "PASS ****");
    /* malformed PASS lines are redacted too */
    CHECK_STR(REDACT("PASS\thunter2"), "PASS ****");
    CHECK_STR(REDACT("PASS  hunter2"), "PASS ****");
    CHECK_STR(REDACT("PASSWORD hunter2"), "PASS ****");
    CHECK_STR(REDACT("  pAsS hunter2"), "  pAsS ****");
    CHECK_STR(REDACT("\tPASS x"), "\\x09PASS ****");
    /* a password change */
    CHECK_STR(REDACT("SITE PSWD old new"), "SITE PSWD ****");
    CHECK_STR(REDACT("site  pswd\told new"), "site  pswd ****");
    CHECK_STR(REDACT("SITE PSWD"), "SITE PSWD");
    CHECK_STR(REDACT("SITE CHMOD 644 PSWD"), "SITE CHMOD 644 PSWD");
    CHECK_STR(REDACT("SITEPSWD x"), "SITEPSWD ****"); /* malformed: redacted too, as PASSWORD */
    /* other commands: escaped, not redacted */
    CHECK_STR(REDACT("USER bob"), "USER bob");
    CHECK_STR(REDACT("RETR a\tb"), "RETR a\\x09b");
    CHECK_STR(REDACT("RETR \x1b[31mred"), "RETR \\x1B[31mred");
    CHECK_STR(REDACT("RETR \xff\x80"), "RETR \\xFF\\x80");
    CHECK_STR(REDACT("RETR a\\x0Ab"), "RETR a\\x5Cx0Ab"); /* a fake escape stays distinguishable */
    CHECK_STR(REDACT("RETR a\r\nPASS x"), "RETR a\\x0D\\x0APASS x");
    CHECK_STR(redact("RETR a\0b", 8, 256), "RETR a\\x00b");
    CHECK_STR(REDACT(""), "");
    CHECK_STR(redact(NULL, 5, 256), "");
    /* truncation: always NUL-terminated, never half an escape */
    CHECK_STR(redact("USER bob", 8, 5), "USER");
    CHECK_STR(redact("USER bob", 8, 1), "");
    CHECK_STR(redact("AB\x01" "CD", 5, 5), "AB");
    CHECK_STR(redact("AB\x01" "CD", 5, 7), "AB\\x01");
    CHECK_STR(redact("PASS secret", 11, 8), "PASS");
    CHECK_STR(redact("PASS secret", 11, 10), "PASS ****");
    CHECK_STR(redact("PASS secret", 11, 3), "PA");
    /* cap 0 writes nothing */
    char one = 'Q';
    CHECK(ftp_cmd_redact("USER x", 6, &one, 0) == &one);
    CHECK_EQ_INT(one, 'Q');
}

int main(void)
{
    test_parse_ok();
    test_parse_bad();
    test_lookup();
    test_classes();
    test_redact();
    return check_report();
}
