/* The whole C API from C: version, result codes, algorithms, the manual clock, limiters on
 * every algorithm (hit / peek / reset with cost), and every error path. Never sleeps. */
#include "flux.h"

#include <stdint.h>
#include <stdlib.h>

#include "check.h"

#if !defined(EXPECT_VERSION) || !defined(EXPECT_MAJOR) || !defined(EXPECT_MINOR) || \
    !defined(EXPECT_PATCH)
#error "build with -DEXPECT_VERSION=\"x.y.z\" -DEXPECT_MAJOR=x ... (run.sh reads Cargo.toml)"
#endif

/* The header's macros against Cargo.toml, at preprocessing time... */
#if FLUX_VERSION_MAJOR != EXPECT_MAJOR || FLUX_VERSION_MINOR != EXPECT_MINOR || \
    FLUX_VERSION_PATCH != EXPECT_PATCH
#error "flux.h version macros differ from Cargo.toml: run make header"
#endif
#if FLUX_VERSION_NUMBER != EXPECT_MAJOR * 1000000 + EXPECT_MINOR * 1000 + EXPECT_PATCH
#error "FLUX_VERSION_NUMBER is not MAJOR * 1000000 + MINOR * 1000 + PATCH"
#endif

#define SEC UINT64_C(1000000000)
#define START (UINT64_C(1700000000) * SEC) /* a whole multiple of every window below */

static flux_limiter *new_limiter(uint64_t requests, uint64_t period_ns, uint64_t burst,
                                 uint32_t algorithm, const flux_clock *clock) {
    flux_limiter_options options = {0};
    flux_limiter *limiter = NULL;
    options.requests = requests;
    options.period_ns = period_ns;
    options.burst = burst;
    options.algorithm = algorithm;
    options.clock = clock;
    CHECK_OK(flux_limiter_new(&options, &limiter));
    CHECK(limiter != NULL);
    return limiter;
}

static flux_decision hit(const flux_limiter *limiter, const char *key, uint64_t cost) {
    flux_decision decision;
    memset(&decision, 0, sizeof decision);
    CHECK_OK(flux_limiter_hit(limiter, key, strlen(key), cost, &decision));
    return decision;
}

static flux_decision peek(const flux_limiter *limiter, const char *key) {
    flux_decision decision;
    memset(&decision, 0, sizeof decision);
    CHECK_OK(flux_limiter_peek(limiter, key, strlen(key), &decision));
    return decision;
}

static void test_version(void) {
    static const char literal[] = FLUX_VERSION; /* a string literal, usable at compile time */
    CHECK(strcmp(FLUX_VERSION, EXPECT_VERSION) == 0);
    CHECK(sizeof literal == strlen(EXPECT_VERSION) + 1);
    CHECK(FLUX_VERSION_NUMBER == EXPECT_MAJOR * 1000000 + EXPECT_MINOR * 1000 + EXPECT_PATCH);
    CHECK(flux_version() != NULL);
    CHECK(strcmp(flux_version(), FLUX_VERSION) == 0);
}

static void test_result_codes(void) {
    int code;
    CHECK(FLUX_RESULT_OK == 0);
    CHECK(FLUX_RESULT_PANIC == 1);
    CHECK(FLUX_RESULT_NULL_ARGUMENT == 2);
    CHECK(FLUX_RESULT_INVALID_UTF8 == 3);
    CHECK(FLUX_RESULT_INVALID_REQUESTS == 4);
    CHECK(FLUX_RESULT_INVALID_PERIOD == 5);
    CHECK(FLUX_RESULT_INVALID_BURST == 6);
    CHECK(FLUX_RESULT_INVALID_COST == 7);
    CHECK(FLUX_RESULT_UNKNOWN_ALGORITHM == 8);
    CHECK(FLUX_RESULT_INVALID_KEY == 9);
    CHECK(FLUX_RESULT_INVALID_ARGUMENT == 10);
    CHECK(FLUX_RESULT_STORE_ERROR == 11);
    CHECK(strcmp(flux_result_message(FLUX_RESULT_OK), "ok") == 0);
    for (code = 1; code <= FLUX_RESULT_STORE_ERROR; code++) {
        const char *message = flux_result_message(code);
        CHECK(message != NULL && strlen(message) > 0);
        CHECK(strcmp(message, "unknown flux_result code") != 0);
    }
    CHECK(strcmp(flux_result_message(-1), "unknown flux_result code") == 0);
    CHECK(strcmp(flux_result_message(12), "unknown flux_result code") == 0);
    CHECK(strstr(flux_result_message(FLUX_RESULT_INVALID_COST), "cost") != NULL);
}

static void test_algorithm_names(void) {
    static const char *const names[] = {"gcra",           "token_bucket",  "leaky_bucket",
                                        "fixed_window",   "sliding_window", "sliding_log"};
    uint32_t number;
    uint32_t out = 77;
    for (number = 0; number < 6; number++) {
        uint32_t parsed = 99;
        CHECK(flux_algorithm_name(number) != NULL);
        CHECK(strcmp(flux_algorithm_name(number), names[number]) == 0);
        CHECK_OK(flux_algorithm_from_name(names[number], &parsed));
        CHECK(parsed == number);
    }
    CHECK(FLUX_ALGORITHM_GCRA == 0 && FLUX_ALGORITHM_SLIDING_LOG == 5);
    CHECK_OK(flux_algorithm_from_name("Token-Bucket", &out));
    CHECK(out == FLUX_ALGORITHM_TOKEN_BUCKET);
    CHECK(flux_algorithm_name(6) == NULL);
    CHECK(flux_algorithm_name(UINT32_MAX) == NULL);
    out = 77;
    CHECK_RESULT(flux_algorithm_from_name("lottery", &out), FLUX_RESULT_UNKNOWN_ALGORITHM);
    CHECK_LAST_ERROR_HAS("\"lottery\"");
    CHECK_LAST_ERROR_HAS("sliding_log");
    CHECK(out == 77);
    CHECK_RESULT(flux_algorithm_from_name(NULL, &out), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("name is NULL");
    CHECK_RESULT(flux_algorithm_from_name("gcra", NULL), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_algorithm_from_name("gcr\xff", &out), FLUX_RESULT_INVALID_UTF8);
    CHECK(out == 77);
}

static void test_clock(void) {
    flux_clock *clock = NULL;
    uint64_t now = 0;
    CHECK_OK(flux_clock_new_manual(START, &clock));
    CHECK_OK(flux_clock_now(clock, &now));
    CHECK(now == START);
    CHECK_OK(flux_clock_advance(clock, 5 * SEC));
    CHECK_OK(flux_clock_now(clock, &now));
    CHECK(now == START + 5 * SEC);
    CHECK_OK(flux_clock_set(clock, 42));
    CHECK_OK(flux_clock_now(clock, &now));
    CHECK(now == 42);
    CHECK_RESULT(flux_clock_advance(clock, UINT64_MAX), FLUX_RESULT_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("overflows");
    CHECK_OK(flux_clock_now(clock, &now));
    CHECK(now == 42);
    CHECK_RESULT(flux_clock_new_manual(0, NULL), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_clock_advance(NULL, 1), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("clock is NULL");
    CHECK_RESULT(flux_clock_set(NULL, 1), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_clock_now(NULL, &now), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_clock_now(clock, NULL), FLUX_RESULT_NULL_ARGUMENT);
    flux_clock_free(clock);
    flux_clock_free(NULL);
}

/* GCRA 3 per minute, as in docs/architecture.md: three at once, then one every 20 s. */
static void test_gcra_semantics(void) {
    flux_clock *clock = NULL;
    flux_limiter *limiter;
    flux_decision d;
    CHECK_OK(flux_clock_new_manual(START, &clock));
    limiter = new_limiter(3, 60 * SEC, 0, FLUX_ALGORITHM_GCRA, clock);

    d = hit(limiter, "user:1", 1);
    CHECK(d.allowed && d.limit == 3 && d.remaining == 2);
    CHECK(d.reset_after_ns == 20 * SEC && d.retry_after_ns == 0);
    d = hit(limiter, "user:1", 1);
    CHECK(d.allowed && d.remaining == 1 && d.reset_after_ns == 40 * SEC);
    d = hit(limiter, "user:1", 1);
    CHECK(d.allowed && d.remaining == 0 && d.reset_after_ns == 60 * SEC);
    d = hit(limiter, "user:1", 1);
    CHECK(!d.allowed && d.remaining == 0 && d.retry_after_ns == 20 * SEC);
    CHECK(d.reset_after_ns == 60 * SEC);

    /* Another key is untouched. */
    d = peek(limiter, "user:2");
    CHECK(d.allowed && d.remaining == 3 && d.reset_after_ns == 0);

    /* 19.999999999 s later still denied, at 20 s one passes. */
    CHECK_OK(flux_clock_advance(clock, 20 * SEC - 1));
    d = hit(limiter, "user:1", 1);
    CHECK(!d.allowed && d.retry_after_ns == 1);
    CHECK_OK(flux_clock_advance(clock, 1));
    d = peek(limiter, "user:1");
    CHECK(d.allowed && d.remaining == 1);
    d = hit(limiter, "user:1", 1);
    CHECK(d.allowed && d.remaining == 0);

    /* Peeking counts nothing. */
    d = peek(limiter, "user:1");
    CHECK(!d.allowed && d.remaining == 0 && d.retry_after_ns == 20 * SEC);
    d = peek(limiter, "user:1");
    CHECK(!d.allowed && d.retry_after_ns == 20 * SEC);

    /* Reset puts the key back to full capacity; a cost of 3 then takes it all at once. */
    CHECK_OK(flux_limiter_reset(limiter, "user:1", 6));
    d = peek(limiter, "user:1");
    CHECK(d.allowed && d.remaining == 3);
    d = hit(limiter, "user:1", 3);
    CHECK(d.allowed && d.remaining == 0 && d.reset_after_ns == 60 * SEC);
    d = hit(limiter, "user:1", 2);
    CHECK(!d.allowed && d.retry_after_ns == 40 * SEC);
    CHECK_OK(flux_limiter_reset(limiter, "never-seen", 10));

    flux_limiter_free(limiter);
    flux_clock_free(clock);
}

/* Every algorithm: capacity 5 passes, the 6th is denied, time restores it, reset too. */
static void test_every_algorithm(void) {
    uint32_t algorithm;
    for (algorithm = 0; algorithm < 6; algorithm++) {
        flux_clock *clock = NULL;
        flux_limiter *limiter;
        flux_decision d;
        int i;
        CHECK_OK(flux_clock_new_manual(START, &clock));
        limiter = new_limiter(5, 10 * SEC, 0, algorithm, clock);
        for (i = 0; i < 5; i++) {
            d = hit(limiter, "k", 1);
            CHECK(d.allowed && d.limit == 5 && d.remaining == (uint64_t)(4 - i));
            CHECK(d.retry_after_ns == 0);
        }
        d = hit(limiter, "k", 1);
        CHECK(!d.allowed && d.remaining == 0 && d.retry_after_ns > 0);
        CHECK(d.retry_after_ns <= 20 * SEC); /* sliding_window: 12 s, the others 2 to 10 s */
        d = peek(limiter, "k");
        CHECK(!d.allowed && d.remaining == 0);

        /* Two periods later every algorithm is back to full capacity. */
        CHECK_OK(flux_clock_advance(clock, 20 * SEC));
        d = peek(limiter, "k");
        CHECK(d.allowed && d.remaining == 5);
        d = hit(limiter, "k", 5);
        CHECK(d.allowed && d.remaining == 0);
        d = hit(limiter, "k", 1);
        CHECK(!d.allowed);
        CHECK_OK(flux_limiter_reset(limiter, "k", 1));
        d = hit(limiter, "k", 2);
        CHECK(d.allowed && d.remaining == 3);

        /* Costs outside 1..capacity are errors, not denials, and count nothing. */
        CHECK_RESULT(flux_limiter_hit(limiter, "k", 1, 0, &d), FLUX_RESULT_INVALID_COST);
        CHECK_LAST_ERROR_HAS("invalid cost 0");
        CHECK_RESULT(flux_limiter_hit(limiter, "k", 1, 6, &d), FLUX_RESULT_INVALID_COST);
        CHECK_LAST_ERROR_HAS("invalid cost 6");
        CHECK_LAST_ERROR_HAS("capacity of 5");
        CHECK_RESULT(flux_limiter_hit(limiter, "k", 1, UINT64_MAX, &d), FLUX_RESULT_INVALID_COST);
        d = peek(limiter, "k");
        CHECK(d.remaining == 3);

        flux_limiter_free(limiter);
        flux_clock_free(clock);
    }
}

static void test_keys(void) {
    flux_limiter *limiter = new_limiter(2, 3600 * SEC, 0, FLUX_ALGORITHM_GCRA, NULL);
    flux_decision d;
    static const char with_nul[] = {'a', '\0', 'b'};
    static const char long_buffer[] = "prefix-and-more";
    /* Keys are (pointer, length): an embedded NUL is part of the key, and no NUL is read. */
    CHECK_OK(flux_limiter_hit(limiter, with_nul, sizeof with_nul, 2, &d));
    CHECK(d.allowed && d.remaining == 0);
    CHECK_OK(flux_limiter_hit(limiter, "a", 1, 1, &d));
    CHECK(d.allowed && d.remaining == 1);
    CHECK_OK(flux_limiter_hit(limiter, long_buffer, 6, 1, &d)); /* "prefix" */
    CHECK(d.allowed && d.remaining == 1);
    CHECK_OK(flux_limiter_hit(limiter, "prefix", 6, 1, &d));
    CHECK(d.allowed && d.remaining == 0);
    /* The empty key is a key. */
    CHECK_OK(flux_limiter_hit(limiter, "", 0, 1, &d));
    CHECK(d.allowed && d.remaining == 1);
    /* Multi-byte UTF-8 is fine. */
    d = hit(limiter, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80", 1);
    CHECK(d.allowed && d.remaining == 1);
    /* The system clock (clock NULL): a second and third hit within the hour. */
    d = hit(limiter, "sys", 1);
    CHECK(d.allowed);
    d = hit(limiter, "sys", 1);
    CHECK(d.allowed && d.remaining == 0);
    d = hit(limiter, "sys", 1);
    CHECK(!d.allowed && d.retry_after_ns > 1790 * SEC && d.retry_after_ns <= 1800 * SEC);
    flux_limiter_free(limiter);
}

static void test_error_paths(void) {
    flux_clock *clock = NULL;
    flux_limiter *limiter;
    flux_limiter *untouched = (flux_limiter *)&clock; /* a sentinel, never dereferenced */
    flux_limiter *out;
    flux_limiter_options options;
    flux_decision d, sentinel;
    static const char *const bad_utf8[] = {"\xff", "ab\x80", "\xc0\x80", "\xe2\x82", "\xed\xa0\x80"};
    size_t i;

    CHECK_OK(flux_clock_new_manual(START, &clock));
    limiter = new_limiter(5, 60 * SEC, 0, FLUX_ALGORITHM_TOKEN_BUCKET, clock);
    memset(&sentinel, 0xAB, sizeof sentinel);

    /* NULL handle, key and out-param: an error code, nothing counted, out untouched. */
    d = sentinel;
    CHECK_RESULT(flux_limiter_hit(NULL, "k", 1, 1, &d), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("limiter is NULL");
    CHECK_RESULT(flux_limiter_hit(limiter, NULL, 1, 1, &d), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("key is NULL");
    CHECK_RESULT(flux_limiter_hit(limiter, NULL, 0, 1, &d), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_hit(limiter, "k", 1, 1, NULL), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("out is NULL");
    CHECK_RESULT(flux_limiter_peek(NULL, "k", 1, &d), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_peek(limiter, NULL, 1, &d), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_peek(limiter, "k", 1, NULL), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_reset(NULL, "k", 1), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_limiter_reset(limiter, NULL, 1), FLUX_RESULT_NULL_ARGUMENT);
    CHECK(memcmp(&d, &sentinel, sizeof d) == 0);

    /* Invalid UTF-8 keys: an error code naming the offset, nothing counted. */
    for (i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        CHECK_RESULT(flux_limiter_hit(limiter, bad_utf8[i], strlen(bad_utf8[i]), 1, &d),
                     FLUX_RESULT_INVALID_UTF8);
        CHECK_LAST_ERROR_HAS("not valid UTF-8");
        CHECK_RESULT(flux_limiter_peek(limiter, bad_utf8[i], strlen(bad_utf8[i]), &d),
                     FLUX_RESULT_INVALID_UTF8);
        CHECK_RESULT(flux_limiter_reset(limiter, bad_utf8[i], strlen(bad_utf8[i])),
                     FLUX_RESULT_INVALID_UTF8);
    }
    CHECK_RESULT(flux_limiter_hit(limiter, "ab\x80", 3, 1, &d), FLUX_RESULT_INVALID_UTF8);
    CHECK_LAST_ERROR_HAS("0x80 at offset 2");
    /* A length that cannot be a real buffer is refused before anything is read. */
    CHECK_RESULT(flux_limiter_hit(limiter, "k", SIZE_MAX, 1, &d), FLUX_RESULT_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("key_len");
    CHECK(memcmp(&d, &sentinel, sizeof d) == 0);
    d = peek(limiter, "k");
    CHECK(d.remaining == 5);

    /* Bad quotas: a distinct code each, a message naming the value, *out untouched. */
    memset(&options, 0, sizeof options);
    out = untouched;
    options.requests = 0;
    options.period_ns = SEC;
    CHECK_RESULT(flux_limiter_new(&options, &out), FLUX_RESULT_INVALID_REQUESTS);
    CHECK_LAST_ERROR_HAS("requests = 0");
    options.requests = 10;
    options.period_ns = 0;
    CHECK_RESULT(flux_limiter_new(&options, &out), FLUX_RESULT_INVALID_PERIOD);
    CHECK_LAST_ERROR_HAS("period_ns = 0");
    options.period_ns = UINT64_C(400) * 24 * 3600 * SEC;
    CHECK_RESULT(flux_limiter_new(&options, &out), FLUX_RESULT_INVALID_PERIOD);
    CHECK_LAST_ERROR_HAS("period_ns = 34560000000000000");
    options.requests = 2;
    options.period_ns = 1; /* finer than one request per nanosecond */
    CHECK_RESULT(flux_limiter_new(&options, &out), FLUX_RESULT_INVALID_REQUESTS);
    CHECK_LAST_ERROR_HAS("requests = 2");
    options.requests = 10;
    options.period_ns = SEC;
    options.burst = UINT64_MAX;
    CHECK_RESULT(flux_limiter_new(&options, &out), FLUX_RESULT_INVALID_BURST);
    CHECK_LAST_ERROR_HAS("burst = 18446744073709551615");
    options.burst = 0;
    options.algorithm = 6;
    CHECK_RESULT(flux_limiter_new(&options, &out), FLUX_RESULT_UNKNOWN_ALGORITHM);
    CHECK_LAST_ERROR_HAS("unknown algorithm 6");
    options.algorithm = UINT32_MAX;
    CHECK_RESULT(flux_limiter_new(&options, &out), FLUX_RESULT_UNKNOWN_ALGORITHM);
    CHECK_LAST_ERROR_HAS("4294967295");
    options.algorithm = FLUX_ALGORITHM_GCRA;
    options.prefix = "bad\xff";
    CHECK_RESULT(flux_limiter_new(&options, &out), FLUX_RESULT_INVALID_UTF8);
    CHECK_LAST_ERROR_HAS("prefix");
    options.prefix = NULL;
    CHECK_RESULT(flux_limiter_new(NULL, &out), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("options is NULL");
    CHECK_RESULT(flux_limiter_new(&options, NULL), FLUX_RESULT_NULL_ARGUMENT);
    CHECK(out == untouched);

    /* Successful calls leave the last error as it was. */
    CHECK(strstr(flux_last_error(), "options") == NULL);
    CHECK_LAST_ERROR_HAS("out is NULL");
    d = hit(limiter, "k", 1);
    CHECK_LAST_ERROR_HAS("out is NULL");

    flux_limiter_free(NULL);
    flux_limiter_free(limiter);
    flux_clock_free(clock);
}

/* Options: burst, max_keys, prefix; a clock freed before its limiter. */
static void test_options(void) {
    flux_clock *clock = NULL;
    flux_limiter *limiter = NULL;
    flux_limiter_options options;
    flux_decision d;
    char key[32];
    int i;
    CHECK_OK(flux_clock_new_manual(START, &clock));
    memset(&options, 0, sizeof options);
    options.requests = 1;
    options.period_ns = SEC;
    options.burst = 5;
    options.algorithm = FLUX_ALGORITHM_GCRA;
    options.max_keys = 64;
    options.clock = clock;
    options.prefix = "api:";
    CHECK_OK(flux_limiter_new(&options, &limiter));
    flux_clock_free(clock); /* the limiter holds its own reference */
    d = hit(limiter, "k", 5);
    CHECK(d.allowed && d.limit == 5 && d.remaining == 0 && d.reset_after_ns == 5 * SEC);
    /* max_keys bounds memory: many keys evict the least recently used. */
    for (i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "flood-%d", i);
        d = hit(limiter, key, 1);
        CHECK(d.allowed);
    }
    d = peek(limiter, "flood-9999");
    CHECK(d.remaining == 4);
    flux_limiter_free(limiter);
}

/* Several limits in one all-or-nothing hit. */
static void test_hit_many(void) {
    flux_clock *clock = NULL;
    flux_limiter *second, *hour;
    flux_hit batch[3];
    flux_decision decisions[3], sentinel[3];
    bool allowed = false;
    int i;
    CHECK_OK(flux_clock_new_manual(START, &clock));
    second = new_limiter(2, SEC, 0, FLUX_ALGORITHM_GCRA, clock);
    hour = new_limiter(3, 3600 * SEC, 0, FLUX_ALGORITHM_FIXED_WINDOW, clock);
    memset(batch, 0, sizeof batch);
    batch[0].limiter = second;
    batch[0].key = "client";
    batch[0].key_len = 6;
    batch[0].cost = 1;
    batch[1].limiter = hour;
    batch[1].key = "client";
    batch[1].key_len = 6;
    batch[1].cost = 1;

    for (i = 0; i < 2; i++) {
        CHECK_OK(flux_hit_many(batch, 2, decisions, &allowed));
        CHECK(allowed && decisions[0].allowed && decisions[1].allowed);
        CHECK(decisions[0].limit == 2 && decisions[1].limit == 3);
    }
    /* The per-second limit denies: the hourly budget is not spent. */
    CHECK_OK(flux_hit_many(batch, 2, decisions, &allowed));
    CHECK(!allowed && !decisions[0].allowed && decisions[0].retry_after_ns == SEC / 2);
    CHECK(decisions[1].allowed && decisions[1].remaining == 1);
    CHECK(peek(hour, "client").remaining == 1);
    /* A second later the batch passes again and takes the last hourly hit; then the hourly
     * limit denies and the per-second one keeps its budget. */
    CHECK_OK(flux_clock_advance(clock, SEC));
    CHECK_OK(flux_hit_many(batch, 2, decisions, &allowed));
    CHECK(allowed && decisions[1].remaining == 0);
    CHECK_OK(flux_hit_many(batch, 2, decisions, &allowed));
    CHECK(!allowed && decisions[0].allowed && !decisions[1].allowed);
    CHECK(peek(second, "client").remaining == 1);

    /* The same limiter and key twice: the second element sees the first. */
    batch[0].key = "twice";
    batch[0].key_len = 5;
    batch[1] = batch[0];
    CHECK_OK(flux_hit_many(batch, 2, decisions, &allowed));
    CHECK(allowed && decisions[0].remaining == 1 && decisions[1].remaining == 0);
    batch[2] = batch[0];
    CHECK_OK(flux_clock_advance(clock, SEC));
    CHECK_OK(flux_hit_many(batch, 3, decisions, &allowed));
    CHECK(!allowed && decisions[0].allowed && decisions[1].allowed && !decisions[2].allowed);
    CHECK(peek(second, "twice").remaining == 2);

    /* Errors name the element; nothing is counted and the outputs are untouched. */
    memset(sentinel, 0xAB, sizeof sentinel);
    memcpy(decisions, sentinel, sizeof decisions);
    batch[0].limiter = hour;
    batch[0].key = "fresh";
    batch[1].key = "bad\xff";
    batch[1].key_len = 4;
    allowed = false;
    CHECK_RESULT(flux_hit_many(batch, 2, decisions, &allowed), FLUX_RESULT_INVALID_UTF8);
    CHECK_LAST_ERROR_HAS("hits[1]: key is not valid UTF-8");
    batch[1].key = "ok";
    batch[1].key_len = 2;
    batch[1].cost = 3;
    CHECK_RESULT(flux_hit_many(batch, 2, decisions, &allowed), FLUX_RESULT_INVALID_COST);
    CHECK_LAST_ERROR_HAS("hits[1]: invalid cost 3");
    batch[1].cost = 0;
    CHECK_RESULT(flux_hit_many(batch, 2, decisions, &allowed), FLUX_RESULT_INVALID_COST);
    batch[1].cost = 1;
    batch[1].key = NULL;
    CHECK_RESULT(flux_hit_many(batch, 2, decisions, &allowed), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("hits[1]: key is NULL");
    batch[1].key = "ok";
    batch[1].limiter = NULL;
    CHECK_RESULT(flux_hit_many(batch, 2, decisions, &allowed), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("hits[1]: limiter is NULL");
    batch[1].limiter = second;
    CHECK_RESULT(flux_hit_many(NULL, 2, decisions, &allowed), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_hit_many(batch, 2, NULL, &allowed), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_hit_many(batch, 2, decisions, NULL), FLUX_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(flux_hit_many(batch, SIZE_MAX, decisions, &allowed),
                 FLUX_RESULT_INVALID_ARGUMENT);
    CHECK(memcmp(decisions, sentinel, sizeof decisions) == 0 && !allowed);
    CHECK(peek(hour, "fresh").remaining == 3);
    /* An empty batch passes. */
    CHECK_OK(flux_hit_many(NULL, 0, NULL, &allowed));
    CHECK(allowed);

    flux_limiter_free(second);
    flux_limiter_free(hour);
    flux_clock_free(clock);
}

int main(void) {
    CHECK(strcmp(flux_last_error(), "") == 0);
    test_version();
    test_result_codes();
    test_algorithm_names();
    test_clock();
    test_gcra_semantics();
    test_every_algorithm();
    test_keys();
    test_error_paths();
    test_options();
    test_hit_many();
    return check_summary("test_api");
}
