/* The C ABI's hit cost on the embedded store (the README's targets: <= 50 ns per hit on a hot
 * key, <= 150 ns across 1 000 000 keys), with a baseline measured in the same run: the same
 * loop calling flux_version(), a trivial exported function. Per-hit times are the means of
 * batches of BATCH hits timed with clock_gettime; median and p99 are over the batches.
 * Prints figures and ratios; never fails on timing. Usage: bench [KEYS] */
#define _POSIX_C_SOURCE 200809L
#include "flux.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 1000
#define HOT_BATCHES 5000
#define KEY_PASSES 3
#define KEY_WIDTH 16
#define SEC UINT64_C(1000000000)

static volatile uint64_t sink;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct stats {
    double median, p99;
};

static struct stats summarize(double *per_hit, size_t n) {
    struct stats s;
    qsort(per_hit, n, sizeof *per_hit, by_value);
    s.median = per_hit[n / 2];
    s.p99 = per_hit[(size_t)((double)n * 0.99)];
    return s;
}

static flux_limiter *limiter_for(uint64_t requests, uint64_t period_ns) {
    flux_limiter_options options;
    flux_limiter *limiter = NULL;
    memset(&options, 0, sizeof options);
    options.requests = requests;
    options.period_ns = period_ns;
    if (flux_limiter_new(&options, &limiter) != FLUX_RESULT_OK) {
        fprintf(stderr, "flux_limiter_new: %s\n", flux_last_error());
        exit(1);
    }
    return limiter;
}

static void hit_or_die(const flux_limiter *limiter, const char *key, size_t len,
                       flux_decision *d) {
    if (flux_limiter_hit(limiter, key, len, 1, d) != FLUX_RESULT_OK) {
        fprintf(stderr, "flux_limiter_hit: %s\n", flux_last_error());
        exit(1);
    }
}

static void report(const char *what, struct stats s, struct stats base, double target) {
    printf("%-34s median %7.1f ns  p99 %7.1f ns  (%5.2fx baseline)", what, s.median, s.p99,
           s.median / base.median);
    if (target > 0) {
        printf("  target <= %.0f ns: %s", target, s.median <= target ? "met" : "MISSED");
    }
    printf("\n");
}

/* The hot key: one key hit over and over (a quota it never exhausts). */
static void bench_hot(void) {
    static double base[HOT_BATCHES], hot[HOT_BATCHES];
    flux_limiter *limiter = limiter_for(1000000000, SEC);
    flux_decision d;
    uint64_t acc = 0;
    int b, i;
    for (i = 0; i < 100000; i++) { /* warm-up */
        hit_or_die(limiter, "user:42", 7, &d);
        acc += flux_version()[0];
    }
    for (b = 0; b < HOT_BATCHES; b++) {
        uint64_t t0 = now_ns();
        for (i = 0; i < BATCH; i++) {
            acc += (uint64_t)flux_version()[0];
        }
        uint64_t t1 = now_ns();
        for (i = 0; i < BATCH; i++) {
            hit_or_die(limiter, "user:42", 7, &d);
            acc += d.allowed;
        }
        uint64_t t2 = now_ns();
        base[b] = (double)(t1 - t0) / BATCH;
        hot[b] = (double)(t2 - t1) / BATCH;
    }
    sink = acc;
    {
        struct stats sb = summarize(base, HOT_BATCHES), sh = summarize(hot, HOT_BATCHES);
        report("baseline: flux_version() call", sb, sb, 0);
        report("flux_limiter_hit, hot key", sh, sb, 50);
    }
    flux_limiter_free(limiter);
}

/* Many keys: each pass hits every key once, in a fixed order that the seeded hash scatters. */
static void bench_keys(size_t keys) {
    size_t batches = keys / BATCH * KEY_PASSES, n = 0, k, pass;
    double *base = malloc(batches * sizeof *base), *hits = malloc(batches * sizeof *hits);
    char *names = malloc(keys * KEY_WIDTH);
    size_t *lens = malloc(keys * sizeof *lens);
    /* 100 per hour: every key stays live (not idle) for the whole run. */
    flux_limiter *limiter = limiter_for(100, 3600 * SEC);
    flux_decision d;
    uint64_t acc = 0, t0, t1, t2;
    char label[64];
    if (base == NULL || hits == NULL || names == NULL || lens == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (k = 0; k < keys; k++) {
        lens[k] = (size_t)snprintf(names + k * KEY_WIDTH, KEY_WIDTH, "key-%08zu", k);
    }
    t0 = now_ns();
    for (k = 0; k < keys; k++) { /* first pass: inserts every key */
        hit_or_die(limiter, names + k * KEY_WIDTH, lens[k], &d);
    }
    t1 = now_ns();
    printf("%-34s mean   %7.1f ns\n", "first pass over the keys (insert)",
           (double)(t1 - t0) / (double)keys);
    for (pass = 0; pass < KEY_PASSES; pass++) {
        for (k = 0; k + BATCH <= keys; k += BATCH, n++) {
            size_t i;
            t0 = now_ns();
            for (i = k; i < k + BATCH; i++) {
                acc += (uint64_t)flux_version()[0] + (uint64_t)names[i * KEY_WIDTH + 4];
            }
            t1 = now_ns();
            for (i = k; i < k + BATCH; i++) {
                hit_or_die(limiter, names + i * KEY_WIDTH, lens[i], &d);
                acc += d.allowed;
            }
            t2 = now_ns();
            base[n] = (double)(t1 - t0) / BATCH;
            hits[n] = (double)(t2 - t1) / BATCH;
        }
    }
    sink = acc;
    {
        struct stats sb = summarize(base, n), sh = summarize(hits, n);
        snprintf(label, sizeof label, "baseline over %zu keys", keys);
        report(label, sb, sb, 0);
        snprintf(label, sizeof label, "flux_limiter_hit, %zu keys", keys);
        report(label, sh, sb, keys >= 1000000 ? 150 : 0);
    }
    flux_limiter_free(limiter);
    free(base);
    free(hits);
    free(names);
    free(lens);
}

/* A reference for the many-keys figure: this machine's latency of one dependent random read
 * in a buffer the size of a large table (64 MiB), since a hit on a cold key cannot be cheaper
 * than the cache misses it takes to find the key. */
static void bench_memory(void) {
    size_t n = (64u << 20) / sizeof(size_t), i, p = 0;
    size_t *next = malloc(n * sizeof *next);
    uint64_t seed = 88172645463325252u, t0, t1;
    long steps = 2000000, step;
    if (next == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (i = 0; i < n; i++) {
        next[i] = i;
    }
    /* Sattolo's shuffle: one cycle through every slot. */
    for (i = n - 1; i > 0; i--) {
        size_t j, t;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        j = (size_t)(seed % i);
        t = next[i];
        next[i] = next[j];
        next[j] = t;
    }
    t0 = now_ns();
    for (step = 0; step < steps; step++) {
        p = next[p];
    }
    t1 = now_ns();
    sink = p;
    printf("%-34s mean   %7.1f ns\n", "reference: random read, 64 MiB",
           (double)(t1 - t0) / (double)steps);
    free(next);
}

int main(int argc, char **argv) {
    size_t keys = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000000;
    if (keys < BATCH) {
        keys = BATCH;
    }
    printf("flux %s C ABI benchmark: batches of %d hits, embedded store, system clock\n",
           flux_version(), BATCH);
    bench_hot();
    bench_keys(keys);
    bench_memory();
    return 0;
}
