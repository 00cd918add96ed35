/* One failure behaviour for C and Python: against a stopped Redis, this program makes the same
 * calls as failure_interop.py (a hit of cost 2, a peek, a refund and a two-limit hit, on a
 * limit of 5 per hour, once on a store failing open and once failing closed) and prints one
 * line per call. run.sh checks that both print exactly the same lines: the core alone decides
 * what a failure does (docs/architecture.md, *Failures*).
 * Usage: failure_interop URL */
#include "flux.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *source_name(flux_source source) {
    switch (source) {
    case FLUX_SOURCE_MEMORY:
        return "memory";
    case FLUX_SOURCE_REDIS:
        return "redis";
    case FLUX_SOURCE_DENY_CACHE:
        return "deny_cache";
    case FLUX_SOURCE_FAIL_OPEN:
        return "fail_open";
    }
    return "?";
}

static void report(const char *policy, const char *call, flux_result result,
                   const flux_decision *d) {
    if (result == FLUX_RESULT_STORE_ERROR) {
        printf("%s %s: error=store\n", policy, call);
    } else if (result != FLUX_RESULT_OK) {
        printf("%s %s: error=%d %s\n", policy, call, (int)result, flux_last_error());
    } else {
        printf("%s %s: allowed=%d limit=%llu remaining=%llu reset_after_ns=%llu "
               "retry_after_ns=%llu source=%s\n",
               policy, call, d->allowed ? 1 : 0, (unsigned long long)d->limit,
               (unsigned long long)d->remaining, (unsigned long long)d->reset_after_ns,
               (unsigned long long)d->retry_after_ns, source_name(d->source));
    }
}

static flux_limiter *limit(flux_redis *redis, const char *prefix) {
    flux_limiter_options options;
    flux_limiter *limiter = NULL;
    memset(&options, 0, sizeof options);
    options.requests = 5;
    options.period_ns = UINT64_C(3600000000000);
    options.prefix = prefix;
    if (flux_limiter_new_redis(&options, redis, &limiter) != FLUX_RESULT_OK) {
        fprintf(stderr, "flux_limiter_new_redis: %s\n", flux_last_error());
        exit(1);
    }
    return limiter;
}

static void calls(const char *url, const char *policy, bool fail_closed) {
    flux_redis_options redis_options;
    flux_redis *redis = NULL;
    flux_decision d, both[2];
    flux_hit hits[2];
    bool allowed = false;
    memset(&redis_options, 0, sizeof redis_options);
    redis_options.url = url;
    redis_options.timeout_ms = 100;
    redis_options.fail_closed = fail_closed;
    if (flux_redis_new(&redis_options, &redis) != FLUX_RESULT_OK) {
        fprintf(stderr, "flux_redis_new: %s\n", flux_last_error());
        exit(1);
    }
    flux_limiter *first = limit(redis, "failure-a:"), *second = limit(redis, "failure-b:");
    report(policy, "hit", flux_limiter_hit(first, "k", 1, 2, &d), &d);
    report(policy, "peek", flux_limiter_peek(first, "k", 1, &d), &d);
    report(policy, "refund", flux_limiter_refund(first, "k", 1, 1, &d), &d);
    memset(hits, 0, sizeof hits);
    hits[0].limiter = first;
    hits[1].limiter = second;
    hits[0].key = hits[1].key = "k";
    hits[0].key_len = hits[1].key_len = 1;
    hits[0].cost = 1;
    hits[1].cost = 3;
    flux_result result = flux_hit_many(hits, 2, both, &allowed);
    report(policy, "hit_many[0]", result, &both[0]);
    report(policy, "hit_many[1]", result, &both[1]);
    flux_limiter_free(first);
    flux_limiter_free(second);
    flux_redis_free(redis);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s URL\n", argv[0]);
        return 2;
    }
    calls(argv[1], "open", false);
    calls(argv[1], "closed", true);
    return 0;
}
