/* flux_limiter_refund from C: on every algorithm of the embedded store and on every algorithm
 * the shared-memory store supports, hit to the limit, refund, hit again (exactly one more
 * passes); a refund never lifts a key above full capacity, leaves an unknown key alone, and
 * takes the same error paths as flux_limiter_hit. Never sleeps (a manual clock). */
#include "flux.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"

#define SEC UINT64_C(1000000000)
#define START (UINT64_C(1700000000) * SEC) /* a whole multiple of every window below */
#define CAPACITY 3

static flux_decision hit(const flux_limiter *limiter, const char *key, uint64_t cost) {
    flux_decision decision;
    memset(&decision, 0, sizeof decision);
    CHECK_OK(flux_limiter_hit(limiter, key, strlen(key), cost, &decision));
    return decision;
}

static flux_decision refund(const flux_limiter *limiter, const char *key, uint64_t cost) {
    flux_decision decision;
    memset(&decision, 0, sizeof decision);
    CHECK_OK(flux_limiter_refund(limiter, key, strlen(key), cost, &decision));
    return decision;
}

/* The refund contract on one limiter of CAPACITY per minute whose clock stands still. */
static void check_refunds(const flux_limiter *limiter, uint32_t algorithm) {
    flux_decision decision;
    int i;
    fprintf(stderr, "  %s\n", flux_algorithm_name(algorithm));
    /* Unknown key: nothing to give back, full capacity reported. */
    decision = refund(limiter, "never-seen", 1);
    CHECK(decision.allowed && decision.remaining == CAPACITY);
    CHECK(decision.limit == CAPACITY);

    for (i = 0; i < CAPACITY; i++) {
        CHECK(hit(limiter, "k", 1).allowed);
    }
    CHECK(!hit(limiter, "k", 1).allowed);
    decision = refund(limiter, "k", 1);
    CHECK(decision.allowed && decision.remaining == 1 && decision.retry_after_ns == 0);
    CHECK(hit(limiter, "k", 1).allowed); /* exactly one more passes ... */
    CHECK(!hit(limiter, "k", 1).allowed); /* ... and no more */

    /* Refunding more than was taken stops at full capacity. */
    decision = refund(limiter, "k", CAPACITY);
    CHECK(decision.remaining == CAPACITY);
    decision = refund(limiter, "k", CAPACITY);
    CHECK(decision.remaining == CAPACITY);
    CHECK(hit(limiter, "k", CAPACITY).allowed);
    CHECK(!hit(limiter, "k", 1).allowed);

    /* The same errors as a hit; nothing given back. */
    memset(&decision, 0, sizeof decision);
    CHECK_RESULT(flux_limiter_refund(limiter, "k", 1, 0, &decision), FLUX_RESULT_INVALID_COST);
    CHECK_RESULT(flux_limiter_refund(limiter, "k", 1, CAPACITY + 1, &decision),
                 FLUX_RESULT_INVALID_COST);
    CHECK_LAST_ERROR_HAS("cost");
    CHECK_RESULT(flux_limiter_refund(NULL, "k", 1, 1, &decision), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_refund(limiter, NULL, 0, 1, &decision), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_refund(limiter, "k", 1, 1, NULL), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_refund(limiter, "\xff", 1, 1, &decision), FLUX_RESULT_INVALID_UTF8);
    CHECK(!hit(limiter, "k", 1).allowed);
}

static flux_limiter_options options_for(uint32_t algorithm, const flux_clock *clock) {
    flux_limiter_options options;
    memset(&options, 0, sizeof options);
    options.requests = CAPACITY;
    options.period_ns = 60 * SEC;
    options.algorithm = algorithm;
    options.clock = clock;
    options.prefix = "refund:";
    return options;
}

int main(void) {
    flux_clock *clock = NULL;
    flux_shared *shared = NULL;
    flux_shared_options shared_options;
    char path[64];
    uint32_t algorithm;

    CHECK_OK(flux_clock_new_manual(START, &clock));

    fprintf(stderr, "embedded store:\n");
    for (algorithm = FLUX_ALGORITHM_GCRA; algorithm <= FLUX_ALGORITHM_SLIDING_LOG; algorithm++) {
        flux_limiter_options options = options_for(algorithm, clock);
        flux_limiter *limiter = NULL;
        CHECK_OK(flux_limiter_new(&options, &limiter));
        if (limiter != NULL) {
            check_refunds(limiter, algorithm);
        }
        flux_limiter_free(limiter);
    }

    fprintf(stderr, "shared-memory store:\n");
    snprintf(path, sizeof path, "/tmp/flux-test-refund-%ld", (long)getpid());
    memset(&shared_options, 0, sizeof shared_options);
    shared_options.path = path;
    shared_options.max_keys = 256;
    CHECK_OK(flux_shared_open(&shared_options, &shared));
    for (algorithm = FLUX_ALGORITHM_GCRA; algorithm < FLUX_ALGORITHM_SLIDING_LOG; algorithm++) {
        flux_limiter_options options = options_for(algorithm, clock);
        flux_limiter *limiter = NULL;
        CHECK_OK(flux_limiter_new_shared(&options, shared, &limiter));
        if (limiter != NULL) {
            check_refunds(limiter, algorithm);
        }
        flux_limiter_free(limiter);
    }
    flux_shared_free(shared);
    unlink(path);

    flux_clock_free(clock);
    return check_summary("test_refund");
}
