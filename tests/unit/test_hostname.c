/* Unit tests for common/hostname.c: the server-name patterns shared by the
 * sni table and the sni/host routes (exact or "*.domain" for one label,
 * ASCII case-insensitive), and their validation. */
#include <string.h>

#include "check.h"
#include "hostname.h"

#define M(pat, name) hostname_match((pat), (name), strlen(name))

static void test_match(void)
{
    CHECK(M("ftp.example.com", "ftp.example.com"));
    CHECK(M("ftp.example.com", "FTP.Example.COM"));
    CHECK(!M("ftp.example.com", "ftp.example.co"));
    CHECK(!M("ftp.example.com", "ftp.example.com."));
    CHECK(!M("ftp.example.com", "xftp.example.com"));
    CHECK(M("*.example.com", "a.example.com"));
    CHECK(M("*.Example.com", "ABC.example.COM"));
    CHECK(!M("*.example.com", "example.com"));     /* not the domain itself */
    CHECK(!M("*.example.com", "a.b.example.com")); /* one label only */
    CHECK(!M("*.example.com", ".example.com"));    /* an empty label */
    CHECK(!M("*.example.com", "a.example.org"));
    CHECK(M("*.example.com", "*.example.com"));    /* a pattern as a name: the names under it */
    CHECK(!M("a.example.com", ""));
    CHECK(!hostname_match("a.example.com", "a.example.com\0x", 15)); /* a NUL never matches */
    CHECK(!hostname_match("*.example.com", "a\0.example.com", 15));
    CHECK(M("*.x", "a.x"));
    CHECK(!M("*.", "a."));
    CHECK(hostname_equal("Ab", 2, "aB", 2));
    CHECK(!hostname_equal("ab", 2, "abc", 3));
    CHECK(!hostname_equal("a[", 2, "a{", 2)); /* only letters fold: '[' and '{' differ by 0x20 too */
}

static void test_valid(void)
{
    CHECK(hostname_pattern_valid("ftp.example.com"));
    CHECK(hostname_pattern_valid("*.example.com"));
    CHECK(hostname_pattern_valid("a-b.c0"));
    CHECK(hostname_pattern_valid("192.0.2.1"));
    CHECK(!hostname_pattern_valid(""));
    CHECK(!hostname_pattern_valid("*"));
    CHECK(!hostname_pattern_valid("*."));
    CHECK(!hostname_pattern_valid("*example.com"));
    CHECK(!hostname_pattern_valid("a.*.example.com"));
    CHECK(!hostname_pattern_valid("a_b.example"));
    CHECK(!hostname_pattern_valid("a b"));
    char long_name[260];
    memset(long_name, 'a', sizeof long_name);
    long_name[253] = '\0';
    CHECK(hostname_pattern_valid(long_name));
    long_name[253] = 'a';
    long_name[254] = '\0';
    CHECK(!hostname_pattern_valid(long_name));
}

int main(void)
{
    test_match();
    test_valid();
    return check_report();
}
