/* bindings/bench.sh's C baseline: the mean time of one flux_limiter_hit on a hot key of the
 * embedded store (1e9 per second: never denied), over N hits after a warm-up; the same loop the
 * Go and Node benchmarks run. Prints the ns per hit. Usage: bench_hit N */
#define _POSIX_C_SOURCE 200809L
#include <flux.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    flux_limiter_options options;
    flux_limiter *limiter = NULL;
    flux_decision d;
    unsigned long allowed = 0;
    memset(&options, 0, sizeof options);
    options.requests = 1000000000;
    options.period_ns = 1000000000;
    if (flux_limiter_new(&options, &limiter) != FLUX_RESULT_OK) {
        fprintf(stderr, "%s\n", flux_last_error());
        return 1;
    }
    for (long i = 0; i < n / 10; i++) {
        flux_limiter_hit(limiter, "user:42", 7, 1, &d);
    }
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (flux_limiter_hit(limiter, "user:42", 7, 1, &d) != FLUX_RESULT_OK) {
            return 1;
        }
        allowed += d.allowed;
    }
    double t1 = now_ns();
    printf("%.1f\n", (t1 - t0) / (double)n);
    flux_limiter_free(limiter);
    return allowed > 0 ? 0 : 1;
}
