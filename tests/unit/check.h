/* Minimal assertion helpers for the C unit tests: each CHECK failure prints
 * where and why, and the test exits non-zero at the end. */
#ifndef ASTRACE_CHECK_H
#define ASTRACE_CHECK_H
#include <stdio.h>

static int check_failures, check_count;
#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        check_count++;                                                                                                 \
        if (!(cond)) {                                                                                                 \
            check_failures++;                                                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
        }                                                                                                              \
    } while (0)
#define CHECK_EQ_U(a, b)                                                                                               \
    do {                                                                                                               \
        unsigned long long va_ = (unsigned long long)(a), vb_ = (unsigned long long)(b);                               \
        check_count++;                                                                                                 \
        if (va_ != vb_) {                                                                                              \
            check_failures++;                                                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%llu vs %llu)\n", __FILE__, __LINE__, #a, #b, va_, vb_);   \
        }                                                                                                              \
    } while (0)
static int check_done(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}
#endif
