/* Limiters whose state lives in Redis, from C: every algorithm, two connections sharing one
 * limit, a thread race, the all-or-nothing multi-limit hit, fail open and fail closed against
 * a dead server, and configuration errors. run.sh starts its own redis-server and passes
 * FLUX_TEST_REDIS_URL, and FLUX_TEST_DEAD_URL (a port nobody listens on). */
#define _POSIX_C_SOURCE 200809L
#include "flux.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"

#define SEC UINT64_C(1000000000)
#define HOUR (3600 * SEC)

static const char *url;
static const char *dead_url;
static char prefix[64]; /* per process, so that the asan and valgrind runs never meet */

static flux_redis *connect_to(const char *where, bool fail_closed) {
    flux_redis_options options;
    flux_redis *redis = NULL;
    memset(&options, 0, sizeof options);
    options.url = where;
    options.timeout_ms = 500;
    options.key_prefix = prefix;
    options.fail_closed = fail_closed;
    CHECK_OK(flux_redis_new(&options, &redis));
    return redis;
}

static flux_limiter *on_redis(const flux_redis *redis, uint64_t requests, uint64_t period_ns,
                              uint32_t algorithm, const char *name) {
    flux_limiter_options options;
    flux_limiter *limiter = NULL;
    memset(&options, 0, sizeof options);
    options.requests = requests;
    options.period_ns = period_ns;
    options.algorithm = algorithm;
    options.prefix = name;
    CHECK_OK(flux_limiter_new_redis(&options, redis, &limiter));
    return limiter;
}

static flux_decision hit(const flux_limiter *limiter, const char *key, uint64_t cost) {
    flux_decision d;
    memset(&d, 0, sizeof d);
    CHECK_OK(flux_limiter_hit(limiter, key, strlen(key), cost, &d));
    return d;
}

static flux_decision peek(const flux_limiter *limiter, const char *key) {
    flux_decision d;
    memset(&d, 0, sizeof d);
    CHECK_OK(flux_limiter_peek(limiter, key, strlen(key), &d));
    return d;
}

static void test_every_algorithm(void) {
    flux_redis *redis = connect_to(url, true);
    uint32_t algorithm;
    CHECK_OK(flux_redis_ping(redis));
    for (algorithm = 0; algorithm < 6; algorithm++) {
        flux_limiter *limiter = on_redis(redis, 5, HOUR, algorithm, flux_algorithm_name(algorithm));
        flux_decision d;
        int i;
        for (i = 0; i < 5; i++) {
            d = hit(limiter, "client:1", 1);
            CHECK(d.allowed && d.limit == 5 && d.remaining == (uint64_t)(4 - i));
            CHECK(d.source == FLUX_SOURCE_REDIS);
        }
        d = hit(limiter, "client:1", 1);
        CHECK(!d.allowed && d.retry_after_ns > 0);
        CHECK(d.source == FLUX_SOURCE_REDIS || d.source == FLUX_SOURCE_DENY_CACHE);
        d = peek(limiter, "client:1");
        CHECK(!d.allowed && d.remaining == 0 && d.source == FLUX_SOURCE_REDIS);
        d = peek(limiter, "client:2");
        CHECK(d.allowed && d.remaining == 5);
        CHECK_OK(flux_limiter_reset(limiter, "client:1", 8));
        d = hit(limiter, "client:1", 5);
        CHECK(d.allowed && d.remaining == 0);
        CHECK_RESULT(flux_limiter_hit(limiter, "client:1", 8, 6, &d), FLUX_RESULT_INVALID_COST);
        CHECK_RESULT(flux_limiter_hit(limiter, "\xff", 1, 1, &d), FLUX_RESULT_INVALID_UTF8);
        flux_limiter_free(limiter);
    }
    flux_redis_free(redis);
}

/* Two connections (as two processes would have) and one limit. */
static void test_shared_limit(void) {
    flux_redis *first = connect_to(url, true), *second = connect_to(url, true);
    flux_limiter *a = on_redis(first, 5, HOUR, FLUX_ALGORITHM_TOKEN_BUCKET, "shared:");
    flux_limiter *b = on_redis(second, 5, HOUR, FLUX_ALGORITHM_TOKEN_BUCKET, "shared:");
    flux_limiter *other = on_redis(second, 5, HOUR, FLUX_ALGORITHM_TOKEN_BUCKET, "other:");
    flux_redis_free(first); /* the limiters keep their connections */
    CHECK(hit(a, "k", 3).remaining == 2);
    CHECK(hit(b, "k", 1).remaining == 1);
    CHECK(hit(a, "k", 1).remaining == 0);
    CHECK(!hit(b, "k", 1).allowed);
    CHECK(peek(other, "k").remaining == 5); /* another prefix is another limit */
    flux_limiter_free(a);
    flux_limiter_free(b);
    flux_limiter_free(other);
    flux_redis_free(second);
}

struct worker {
    const flux_limiter *limiter;
    int allowed, errors;
};

static void *work(void *arg) {
    struct worker *w = (struct worker *)arg;
    flux_decision d;
    int i;
    for (i = 0; i < 1000; i++) {
        if (flux_limiter_hit(w->limiter, "race", 4, 1, &d) != FLUX_RESULT_OK) {
            w->errors++;
        } else if (d.allowed) {
            w->allowed++;
        }
    }
    return NULL;
}

static void test_race(void) {
    flux_redis *redis = connect_to(url, true);
    flux_limiter *limiter = on_redis(redis, 100, HOUR, FLUX_ALGORITHM_GCRA, "race:");
    pthread_t threads[8];
    struct worker workers[8];
    int i, allowed = 0;
    for (i = 0; i < 8; i++) {
        workers[i].limiter = limiter;
        workers[i].allowed = workers[i].errors = 0;
        CHECK(pthread_create(&threads[i], NULL, work, &workers[i]) == 0);
    }
    for (i = 0; i < 8; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        allowed += workers[i].allowed;
        CHECK(workers[i].errors == 0);
    }
    CHECK(allowed == 100);
    flux_limiter_free(limiter);
    flux_redis_free(redis);
}

static void test_hit_many(void) {
    flux_redis *redis = connect_to(url, true), *elsewhere = connect_to(url, true);
    flux_limiter *burst = on_redis(redis, 2, HOUR, FLUX_ALGORITHM_SLIDING_WINDOW, "burst:");
    flux_limiter *daily = on_redis(redis, 3, 24 * HOUR, FLUX_ALGORITHM_GCRA, "daily:");
    flux_limiter *foreign = on_redis(elsewhere, 3, HOUR, FLUX_ALGORITHM_GCRA, "daily:");
    flux_hit batch[2];
    flux_decision decisions[2];
    bool allowed = false;
    int i;
    memset(batch, 0, sizeof batch);
    batch[0].limiter = burst;
    batch[1].limiter = daily;
    batch[0].key = batch[1].key = "user:9";
    batch[0].key_len = batch[1].key_len = 6;
    batch[0].cost = batch[1].cost = 1;
    for (i = 0; i < 2; i++) {
        CHECK_OK(flux_hit_many(batch, 2, decisions, &allowed));
        CHECK(allowed && decisions[0].source == FLUX_SOURCE_REDIS);
    }
    CHECK_OK(flux_hit_many(batch, 2, decisions, &allowed));
    CHECK(!allowed && !decisions[0].allowed && decisions[1].allowed);
    CHECK(decisions[1].remaining == 1);
    CHECK(peek(daily, "user:9").remaining == 1); /* not spent by the denied batch */

    batch[1].limiter = burst; /* the same limit and key twice */
    CHECK_RESULT(flux_hit_many(batch, 2, decisions, &allowed), FLUX_RESULT_INVALID_ARGUMENT);
    batch[1].limiter = foreign; /* another connection */
    CHECK_RESULT(flux_hit_many(batch, 2, decisions, &allowed), FLUX_RESULT_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("hits[1]: its limiter is not on the same store");
    flux_limiter_free(burst);
    flux_limiter_free(daily);
    flux_limiter_free(foreign);
    flux_redis_free(redis);
    flux_redis_free(elsewhere);
}

/* A dead server: failing open lets hits through (and says so), failing closed refuses. */
static void test_dead_server(void) {
    flux_redis *open = connect_to(dead_url, false), *closed = connect_to(dead_url, true);
    flux_limiter *lenient = on_redis(open, 1, HOUR, FLUX_ALGORITHM_GCRA, "dead:");
    flux_limiter *strict = on_redis(closed, 1, HOUR, FLUX_ALGORITHM_GCRA, "dead:");
    flux_hit batch[1];
    flux_decision d;
    bool allowed = false;
    int i;
    CHECK_RESULT(flux_redis_ping(open), FLUX_RESULT_STORE_ERROR);
    CHECK(strlen(flux_last_error()) > 0);
    for (i = 0; i < 3; i++) {
        d = hit(lenient, "k", 1);
        CHECK(d.allowed && d.source == FLUX_SOURCE_FAIL_OPEN);
        CHECK_LAST_ERROR_HAS("fail open");
        CHECK_RESULT(flux_limiter_hit(strict, "k", 1, 1, &d), FLUX_RESULT_STORE_ERROR);
    }
    CHECK_RESULT(flux_limiter_peek(strict, "k", 1, &d), FLUX_RESULT_STORE_ERROR);
    CHECK_RESULT(flux_limiter_reset(lenient, "k", 1), FLUX_RESULT_STORE_ERROR);
    memset(batch, 0, sizeof batch);
    batch[0].limiter = lenient;
    batch[0].key = "k";
    batch[0].key_len = 1;
    batch[0].cost = 1;
    CHECK_OK(flux_hit_many(batch, 1, &d, &allowed));
    CHECK(allowed && d.source == FLUX_SOURCE_FAIL_OPEN);
    batch[0].limiter = strict;
    CHECK_RESULT(flux_hit_many(batch, 1, &d, &allowed), FLUX_RESULT_STORE_ERROR);
    flux_limiter_free(lenient);
    flux_limiter_free(strict);
    flux_redis_free(open);
    flux_redis_free(closed);
}

static void test_configuration_errors(void) {
    flux_redis_options options;
    flux_limiter_options limits;
    flux_redis *redis = NULL, *untouched = (flux_redis *)&options;
    flux_limiter *limiter = NULL;
    flux_clock *clock = NULL;
    const char *nodes[2] = {"127.0.0.1:7000", NULL};
    memset(&options, 0, sizeof options);
    redis = untouched;
    options.url = "ftp://127.0.0.1";
    CHECK_RESULT(flux_redis_new(&options, &redis), FLUX_RESULT_INVALID_ARGUMENT);
    options.url = "redis://127.0.0.1:6379/\xff";
    CHECK_RESULT(flux_redis_new(&options, &redis), FLUX_RESULT_INVALID_UTF8);
    CHECK_LAST_ERROR_HAS("url");
    options.url = NULL;
    options.nodes = nodes;
    options.node_count = 2;
    CHECK_RESULT(flux_redis_new(&options, &redis), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("nodes[1] is NULL");
    options.nodes = NULL;
    CHECK_RESULT(flux_redis_new(&options, &redis), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_redis_new(NULL, &redis), FLUX_RESULT_NULL_ARGUMENT);
    options.node_count = 0;
    CHECK_RESULT(flux_redis_new(&options, NULL), FLUX_RESULT_NULL_ARGUMENT);
    CHECK(redis == untouched);
    CHECK_RESULT(flux_redis_ping(NULL), FLUX_RESULT_NULL_ARGUMENT);
    flux_redis_free(NULL);

    redis = connect_to(url, true);
    memset(&limits, 0, sizeof limits);
    limits.requests = 0;
    limits.period_ns = SEC;
    CHECK_RESULT(flux_limiter_new_redis(&limits, redis, &limiter), FLUX_RESULT_INVALID_REQUESTS);
    limits.requests = 5;
    CHECK_OK(flux_clock_new_manual(0, &clock));
    limits.clock = clock;
    CHECK_RESULT(flux_limiter_new_redis(&limits, redis, &limiter), FLUX_RESULT_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("clock");
    limits.clock = NULL;
    limits.max_keys = 10;
    CHECK_RESULT(flux_limiter_new_redis(&limits, redis, &limiter), FLUX_RESULT_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("max_keys");
    limits.max_keys = 0;
    CHECK_RESULT(flux_limiter_new_redis(&limits, NULL, &limiter), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_new_redis(NULL, redis, &limiter), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_new_redis(&limits, redis, NULL), FLUX_RESULT_NULL_ARGUMENT);
    CHECK(limiter == NULL);
    flux_clock_free(clock);
    flux_redis_free(redis);
}

int main(void) {
    url = getenv("FLUX_TEST_REDIS_URL");
    dead_url = getenv("FLUX_TEST_DEAD_URL");
    if (url == NULL || dead_url == NULL) {
        fprintf(stderr, "set FLUX_TEST_REDIS_URL and FLUX_TEST_DEAD_URL (run.sh does)\n");
        return 2;
    }
    snprintf(prefix, sizeof prefix, "flux-c-test:%ld:", (long)getpid());
    test_every_algorithm();
    test_shared_limit();
    test_race();
    test_hit_many();
    test_dead_server();
    test_configuration_errors();
    return check_summary("test_redis");
}
