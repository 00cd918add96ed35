/* One limit shared by C and Python through one shared-memory region: this program hits the
 * limit `prefix` (100 per hour, gcra) on key `key` of the region at `path` `hits` times and
 * prints how many passed. run.sh runs it beside a Python process hitting the same limit and
 * checks the sum. Usage: shared_interop PATH PREFIX KEY HITS
 * With `shared_interop PATH --clear` it clears the region (flux_shared_clear) and prints how
 * many keys it held. */
#include "flux.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int clear = argc == 3 && strcmp(argv[2], "--clear") == 0;
    if (argc != 5 && !clear) {
        fprintf(stderr, "usage: %s PATH PREFIX KEY HITS | %s PATH --clear\n", argv[0], argv[0]);
        return 2;
    }
    flux_shared_options shared_options;
    memset(&shared_options, 0, sizeof shared_options);
    shared_options.path = argv[1];
    flux_shared *shared = NULL;
    if (flux_shared_open(&shared_options, &shared) != FLUX_RESULT_OK) {
        fprintf(stderr, "flux_shared_open: %s\n", flux_last_error());
        return 1;
    }
    if (clear) {
        uint64_t cleared = 0;
        flux_result result = flux_shared_clear(shared, &cleared);
        flux_shared_free(shared);
        if (result != FLUX_RESULT_OK) {
            fprintf(stderr, "flux_shared_clear: %s\n", flux_last_error());
            return 1;
        }
        printf("%llu\n", (unsigned long long)cleared);
        return 0;
    }
    flux_limiter_options options;
    memset(&options, 0, sizeof options);
    options.requests = 100;
    options.period_ns = UINT64_C(3600000000000);
    options.prefix = argv[2];
    flux_limiter *limiter = NULL;
    if (flux_limiter_new_shared(&options, shared, &limiter) != FLUX_RESULT_OK) {
        fprintf(stderr, "flux_limiter_new_shared: %s\n", flux_last_error());
        flux_shared_free(shared);
        return 1;
    }
    /* The limiter keeps its own reference to the region. */
    flux_shared_free(shared);
    long hits = strtol(argv[4], NULL, 10);
    long allowed = 0;
    for (long i = 0; i < hits; i++) {
        flux_decision decision;
        if (flux_limiter_hit(limiter, argv[3], strlen(argv[3]), 1, &decision) != FLUX_RESULT_OK) {
            fprintf(stderr, "flux_limiter_hit: %s\n", flux_last_error());
            return 1;
        }
        allowed += decision.allowed;
    }
    printf("%ld\n", allowed);
    flux_limiter_free(limiter);
    return 0;
}
