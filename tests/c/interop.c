/* One limit shared by C and Python through one Redis: this program hits
 * `{key_prefix}{prefix}{key}` (100 per hour, gcra) `hits` times and prints how many passed.
 * run.sh runs it beside a Python process hitting the same limit and checks the sum.
 * Usage: interop URL KEY_PREFIX PREFIX KEY HITS */
#include "flux.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s URL KEY_PREFIX PREFIX KEY HITS\n", argv[0]);
        return 2;
    }
    flux_redis_options redis_options;
    memset(&redis_options, 0, sizeof redis_options);
    redis_options.url = argv[1];
    redis_options.key_prefix = argv[2];
    redis_options.timeout_ms = 2000;
    redis_options.fail_closed = true;
    flux_redis *redis = NULL;
    if (flux_redis_new(&redis_options, &redis) != FLUX_RESULT_OK) {
        fprintf(stderr, "flux_redis_new: %s\n", flux_last_error());
        return 1;
    }
    flux_limiter_options options;
    memset(&options, 0, sizeof options);
    options.requests = 100;
    options.period_ns = UINT64_C(3600000000000);
    options.prefix = argv[3];
    flux_limiter *limiter = NULL;
    if (flux_limiter_new_redis(&options, redis, &limiter) != FLUX_RESULT_OK) {
        fprintf(stderr, "flux_limiter_new_redis: %s\n", flux_last_error());
        flux_redis_free(redis);
        return 1;
    }
    long hits = strtol(argv[5], NULL, 10);
    long allowed = 0;
    for (long i = 0; i < hits; i++) {
        flux_decision decision;
        if (flux_limiter_hit(limiter, argv[4], strlen(argv[4]), 1, &decision) != FLUX_RESULT_OK) {
            fprintf(stderr, "flux_limiter_hit: %s\n", flux_last_error());
            return 1;
        }
        allowed += decision.allowed;
    }
    printf("%ld\n", allowed);
    flux_limiter_free(limiter);
    flux_redis_free(redis);
    return 0;
}
