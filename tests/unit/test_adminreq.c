/* adminreq.c: the request line, the query's limit, and the token as Bearer
 * or Basic password (any user), nothing else. */
#include <string.h>

#include "adminreq.h"
#include "check.h"
#include "fgerr.h"

#define TOKEN "s3cret-token-0123456789"

static int auth(const char *head)
{
    adminreq_t r;
    if (adminreq_parse(head, strlen(head), &r) != FG_OK)
        return -1;
    return adminreq_authorized(&r, TOKEN);
}

int main(void)
{
    adminreq_t r;
    const char *h = "GET /sessions?limit=25&x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK_EQ_INT(adminreq_parse(h, strlen(h), &r), FG_OK);
    CHECK_EQ_MEM(r.method, r.method_len, "GET");
    CHECK_EQ_MEM(r.path, r.path_len, "/sessions");
    CHECK_EQ_MEM(r.query, r.query_len, "limit=25&x=1");
    unsigned long v = 0;
    CHECK_EQ_INT(adminreq_query_uint(&r, "limit", 10000, &v), FG_OK);
    CHECK_EQ_INT(v, 25);
    CHECK_EQ_INT(adminreq_query_uint(&r, "lim", 10000, &v), FG_NEED_MORE);
    CHECK_EQ_INT(adminreq_query_uint(&r, "limit", 10, &v), FG_RANGE);
    h = "GET /sessions?limit=-1 HTTP/1.0\r\n\r\n";
    CHECK_EQ_INT(adminreq_parse(h, strlen(h), &r), FG_OK);
    CHECK_EQ_INT(adminreq_query_uint(&r, "limit", 10000, &v), FG_SYNTAX);
    CHECK_EQ_INT(r.auth_seen, 0);

    static const char *const bad[] = {
        "GET\r\n\r\n", "GET  HTTP/1.1\r\n\r\n", "GET sessions HTTP/1.1\r\n\r\n", "GET /x HTTP/2.0x\r\n\r\n",
        "G<T /x HTTP/1.1\r\n\r\n", "GET /x HTTP/1.1",
        "GET /x HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(adminreq_parse(bad[i], strlen(bad[i]), &r), FG_SYNTAX);

    /* "anyone:s3cret-token-0123456789", ":s3cret-token-0123456789", "anyone:wrong" */
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Bearer " TOKEN "\r\n\r\n"), 1);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nauthorization:bearer   " TOKEN "  \r\n\r\n"), 1);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Basic YW55b25lOnMzY3JldC10b2tlbi0wMTIzNDU2Nzg5\r\n\r\n"), 1);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Basic OnMzY3JldC10b2tlbi0wMTIzNDU2Nzg5\r\n\r\n"), 1);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Basic YW55b25lOndyb25n\r\n\r\n"), 0);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Basic YW55b25lOnMzY3JldC10b2tlbi0wMTIzNDU2Nzg5=\r\n\r\n"), 0);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Basic !!!!\r\n\r\n"), 0);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Bearer " TOKEN "x\r\n\r\n"), 0);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Bearer s3cret-token-012345678\r\n\r\n"), 0);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Token " TOKEN "\r\n\r\n"), 0);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n"), 0);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\nX-Authorization: Bearer " TOKEN "\r\n\r\n"), 0);
    CHECK_EQ_INT(auth("GET / HTTP/1.1\r\n\r\n"), 0);
    return check_report();
}
