#ifndef FTPSGATE_TEST_CHECK_H
#define FTPSGATE_TEST_CHECK_H
/* Minimal test harness: each CHECK counts; main returns non-zero if any failed
 * and prints "N passed, N failed". */
#include <stdio.h>
#include <string.h>

static int check_passed_, check_failed_;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            check_passed_++;                                                          \
        } else {                                                                      \
            check_failed_++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                            \
    do {                                                                              \
        long long a_ = (long long)(a), b_ = (long long)(b);                           \
        if (a_ == b_) {                                                               \
            check_passed_++;                                                          \
        } else {                                                                      \
            check_failed_++;                                                          \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,     \
                    __LINE__, #a, a_, #b, b_);                                        \
        }                                                                             \
    } while (0)

#define CHECK_EQ_MEM(p, n, s)                                                         \
    do {                                                                              \
        size_t n_ = (n), sl_ = strlen(s);                                             \
        if (n_ == sl_ && memcmp((p), (s), sl_) == 0) {                                \
            check_passed_++;                                                          \
        } else {                                                                      \
            check_failed_++;                                                          \
            fprintf(stderr, "%s:%d: got \"%.*s\", expected \"%s\"\n", __FILE__,       \
                    __LINE__, (int)n_, (const char *)(p), (s));                       \
        }                                                                             \
    } while (0)

/* a is evaluated once; NULL is a failure, not a crash. */
#define CHECK_STR(a, b)                                                                    \
    do {                                                                                   \
        const char *check_str_ = (a);                                                      \
        if (check_str_ == NULL) {                                                          \
            check_failed_++;                                                               \
            fprintf(stderr, "%s:%d: %s is NULL\n", __FILE__, __LINE__, #a);                 \
        } else {                                                                           \
            CHECK_EQ_MEM(check_str_, strlen(check_str_), (b));                             \
        }                                                                                  \
    } while (0)

static inline int check_report(void)
{
    printf("%d passed, %d failed\n", check_passed_, check_failed_);
    return check_failed_ == 0 && check_passed_ > 0 ? 0 : 1;
}

#endif
