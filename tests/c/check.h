/* A tiny check harness shared by the C test programs (and the C++ one). */
#ifndef FLUX_TEST_CHECK_H
#define FLUX_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_count = 0;
static int check_failures = 0;

/* Records one check; prints the failing expression with its location. */
#define CHECK(cond)                                                                  \
    do {                                                                             \
        check_count++;                                                               \
        if (!(cond)) {                                                               \
            check_failures++;                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/* Checks that a flux call returned `expected`, printing the last error when it did not. */
#define CHECK_RESULT(call, expected)                                                      \
    do {                                                                                  \
        int got_ = (int)(call);                                                           \
        check_count++;                                                                    \
        if (got_ != (int)(expected)) {                                                    \
            check_failures++;                                                             \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s; last error: %s\n", \
                    __FILE__, __LINE__, #call, got_, flux_result_message(got_),           \
                    #expected, flux_last_error());                                        \
        }                                                                                 \
    } while (0)

#define CHECK_OK(call) CHECK_RESULT(call, FLUX_RESULT_OK)

/* Checks that the calling thread's last error contains `needle`. */
#define CHECK_LAST_ERROR_HAS(needle)                                                   \
    do {                                                                               \
        check_count++;                                                                 \
        if (strstr(flux_last_error(), (needle)) == NULL) {                             \
            check_failures++;                                                          \
            fprintf(stderr, "%s:%d: last error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, \
                    flux_last_error(), (needle));                                      \
        }                                                                              \
    } while (0)

/* Prints the closing line of a test program and gives its exit status. */
static int check_summary(const char *program) {
    printf("%s: %d checks, %d failed\n", program, check_count, check_failures);
    return check_failures == 0 ? 0 : 1;
}

#endif
