/* Thread safety from C: 8 threads x 1000 hits on one key with a limit of 100 per hour must
 * admit exactly 100, for every algorithm, with the system clock (the real hot path); the last
 * error is per thread; the all-or-nothing flux_hit_many holds under contention. */
#define _POSIX_C_SOURCE 200809L /* pthread barriers under -std=c11 */
#include "flux.h"

#include <pthread.h>
#include <stdint.h>

#include "check.h"

#define THREADS 8
#define HITS_PER_THREAD 1000
#define SEC UINT64_C(1000000000)

struct worker {
    const flux_limiter *limiter;
    int index;
    pthread_barrier_t *start;
    uint64_t allowed;
    uint64_t denied;
    int errors;
    int last_error_was_empty;
    int last_error_was_own;
};

static void *work(void *arg) {
    struct worker *w = (struct worker *)arg;
    char own[64];
    flux_decision d;
    int i;
    w->last_error_was_empty = flux_last_error()[0] == '\0';
    pthread_barrier_wait(w->start);
    for (i = 0; i < HITS_PER_THREAD; i++) {
        if (flux_limiter_hit(w->limiter, "shared", 6, 1, &d) != FLUX_RESULT_OK) {
            w->errors++;
        } else if (d.allowed) {
            w->allowed++;
        } else {
            w->denied++;
        }
        /* Other keys and peeks at the same time. */
        snprintf(own, sizeof own, "thread-%d-%d", w->index, i % 7);
        if (flux_limiter_peek(w->limiter, own, strlen(own), &d) != FLUX_RESULT_OK) {
            w->errors++;
        }
    }
    /* A failure on this thread sets this thread's last error only. */
    snprintf(own, sizeof own, "invalid cost %d", 1000 + w->index);
    flux_limiter_hit(w->limiter, "shared", 6, (uint64_t)(1000 + w->index), &d);
    pthread_barrier_wait(w->start);
    w->last_error_was_own = strstr(flux_last_error(), own) != NULL;
    return NULL;
}

static void race(uint32_t algorithm) {
    flux_limiter_options options;
    flux_limiter *limiter = NULL;
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    pthread_barrier_t start;
    uint64_t allowed = 0, denied = 0;
    int i;

    memset(&options, 0, sizeof options);
    options.requests = 100;
    options.period_ns = 3600 * SEC;
    options.algorithm = algorithm;
    CHECK_OK(flux_limiter_new(&options, &limiter));
    CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
    for (i = 0; i < THREADS; i++) {
        memset(&workers[i], 0, sizeof workers[i]);
        workers[i].limiter = limiter;
        workers[i].index = i;
        workers[i].start = &start;
        CHECK(pthread_create(&threads[i], NULL, work, &workers[i]) == 0);
    }
    for (i = 0; i < THREADS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        allowed += workers[i].allowed;
        denied += workers[i].denied;
        CHECK(workers[i].errors == 0);
        CHECK(workers[i].last_error_was_empty);
        CHECK(workers[i].last_error_was_own);
    }
    if (allowed != 100) {
        fprintf(stderr, "%s: %llu allowed\n", flux_algorithm_name(algorithm),
                (unsigned long long)allowed);
    }
    CHECK(allowed == 100);
    CHECK(allowed + denied == THREADS * HITS_PER_THREAD);
    pthread_barrier_destroy(&start);
    flux_limiter_free(limiter);
}

/* flux_hit_many from every thread, half of them listing the two limits in the opposite
 * order: no deadlock, exactly 60 batches pass (the tighter limit), and the looser limit is
 * charged for those 60 only. */
struct many_worker {
    const flux_limiter *first, *second;
    pthread_barrier_t *start;
    uint64_t allowed;
    int errors;
};

static void *work_many(void *arg) {
    struct many_worker *w = (struct many_worker *)arg;
    flux_hit batch[2];
    flux_decision decisions[2];
    bool allowed;
    int i;
    memset(batch, 0, sizeof batch);
    batch[0].limiter = w->first;
    batch[1].limiter = w->second;
    batch[0].key = batch[1].key = "route";
    batch[0].key_len = batch[1].key_len = 5;
    batch[0].cost = batch[1].cost = 1;
    pthread_barrier_wait(w->start);
    for (i = 0; i < HITS_PER_THREAD; i++) {
        if (flux_hit_many(batch, 2, decisions, &allowed) != FLUX_RESULT_OK) {
            w->errors++;
        } else if (allowed) {
            w->allowed++;
        }
    }
    return NULL;
}

static void race_many(void) {
    flux_limiter_options options;
    flux_limiter *loose = NULL, *tight = NULL;
    pthread_t threads[THREADS];
    struct many_worker workers[THREADS];
    pthread_barrier_t start;
    flux_decision d;
    uint64_t allowed = 0;
    int i;
    memset(&options, 0, sizeof options);
    options.requests = 100;
    options.period_ns = 3600 * SEC;
    CHECK_OK(flux_limiter_new(&options, &loose));
    options.requests = 60;
    options.algorithm = FLUX_ALGORITHM_SLIDING_LOG;
    CHECK_OK(flux_limiter_new(&options, &tight));
    CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
    for (i = 0; i < THREADS; i++) {
        memset(&workers[i], 0, sizeof workers[i]);
        workers[i].first = i % 2 ? loose : tight;
        workers[i].second = i % 2 ? tight : loose;
        workers[i].start = &start;
        CHECK(pthread_create(&threads[i], NULL, work_many, &workers[i]) == 0);
    }
    for (i = 0; i < THREADS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        allowed += workers[i].allowed;
        CHECK(workers[i].errors == 0);
    }
    CHECK(allowed == 60);
    CHECK_OK(flux_limiter_peek(loose, "route", 5, &d));
    CHECK(d.remaining == 40);
    CHECK_OK(flux_limiter_peek(tight, "route", 5, &d));
    CHECK(d.remaining == 0);
    pthread_barrier_destroy(&start);
    flux_limiter_free(loose);
    flux_limiter_free(tight);
}

int main(void) {
    uint32_t algorithm;
    for (algorithm = 0; algorithm < 6; algorithm++) {
        race(algorithm);
    }
    race_many();
    /* The main thread saw no failure of the workers. */
    CHECK(strcmp(flux_last_error(), "") == 0);
    return check_summary("test_threads");
}
