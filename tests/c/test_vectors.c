/* Replays the shared algorithm vectors (the JSON files in tests/vectors/, turned into lines by
 * vectors_to_lines.py) through the C ABI with a manual clock: every decision must be exactly
 * the expected one. Usage: test_vectors FILE (the lines; "-" for standard input). */
#include "flux.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

#define NS_PER_US UINT64_C(1000)
#define MAX_KEY 1024

static uint64_t us_rounded_up(uint64_t ns) { return ns / NS_PER_US + (ns % NS_PER_US != 0); }

/* Decodes "x<hex>" into key; returns its length or -1. */
static long decode_key(const char *word, char *key) {
    size_t n = strlen(word), i;
    if (n == 0 || word[0] != 'x' || (n - 1) % 2 != 0 || (n - 1) / 2 > MAX_KEY) {
        return -1;
    }
    for (i = 0; i < (n - 1) / 2; i++) {
        unsigned int byte;
        if (sscanf(word + 1 + 2 * i, "%2x", &byte) != 1) {
            return -1;
        }
        key[i] = (char)byte;
    }
    return (long)((n - 1) / 2);
}

int main(int argc, char **argv) {
    FILE *in;
    char line[4 * MAX_KEY], file[256] = "", algorithm_name[64], op[16], key_word[2 * MAX_KEY + 2];
    char key[MAX_KEY];
    flux_clock *clock = NULL;
    flux_limiter *limiter = NULL;
    int vectors = 0, steps = 0, seen[6] = {0}, i;
    unsigned long line_number = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s LINES-FILE\n", argv[0]);
        return 2;
    }
    in = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "r");
    if (in == NULL) {
        perror(argv[1]);
        return 2;
    }
    CHECK_OK(flux_clock_new_manual(0, &clock));
    while (fgets(line, sizeof line, in) != NULL) {
        line_number++;
        if (strncmp(line, "vector ", 7) == 0) {
            flux_limiter_options options;
            uint32_t algorithm = UINT32_MAX;
            uint64_t period_us;
            memset(&options, 0, sizeof options);
            if (sscanf(line, "vector %255s %63s %" SCNu64 " %" SCNu64 " %" SCNu64, file,
                       algorithm_name, &options.requests, &period_us, &options.burst) != 5) {
                fprintf(stderr, "line %lu: malformed: %s", line_number, line);
                return 2;
            }
            flux_limiter_free(limiter);
            limiter = NULL;
            CHECK_OK(flux_algorithm_from_name(algorithm_name, &algorithm));
            if (algorithm < 6) {
                seen[algorithm] = 1;
            }
            options.algorithm = algorithm;
            options.period_ns = period_us * NS_PER_US;
            options.clock = clock;
            CHECK_OK(flux_limiter_new(&options, &limiter));
            vectors++;
        } else if (strncmp(line, "step ", 5) == 0) {
            unsigned int index, allowed = 0;
            uint64_t now_us, cost, limit = 0, remaining = 0, reset_us = 0, retry_us = 0;
            flux_decision d;
            long key_len;
            int fields = sscanf(line,
                                "step %u %15s %" SCNu64 " %2049s %" SCNu64 " %u %" SCNu64
                                " %" SCNu64 " %" SCNu64 " %" SCNu64,
                                &index, op, &now_us, key_word, &cost, &allowed, &limit,
                                &remaining, &reset_us, &retry_us);
            key_len = decode_key(key_word, key);
            if (limiter == NULL || key_len < 0 || (fields != 5 && fields != 10) ||
                (fields == 5) != (strcmp(op, "reset") == 0)) {
                fprintf(stderr, "line %lu: malformed: %s", line_number, line);
                return 2;
            }
            steps++;
            CHECK_OK(flux_clock_set(clock, now_us * NS_PER_US));
            if (strcmp(op, "reset") == 0) {
                CHECK_OK(flux_limiter_reset(limiter, key, (size_t)key_len));
                continue;
            }
            memset(&d, 0, sizeof d);
            if (strcmp(op, "hit") == 0) {
                CHECK_OK(flux_limiter_hit(limiter, key, (size_t)key_len, cost, &d));
            } else {
                CHECK_OK(flux_limiter_peek(limiter, key, (size_t)key_len, &d));
            }
            check_count++;
            if (d.allowed != (allowed != 0) || d.limit != limit || d.remaining != remaining ||
                us_rounded_up(d.reset_after_ns) != reset_us ||
                us_rounded_up(d.retry_after_ns) != retry_us) {
                check_failures++;
                fprintf(stderr,
                        "%s step %u (%s at %" PRIu64 " us): expected allowed=%u limit=%" PRIu64
                        " remaining=%" PRIu64 " reset_after_us=%" PRIu64
                        " retry_after_us=%" PRIu64 ", got allowed=%d limit=%" PRIu64
                        " remaining=%" PRIu64 " reset_after_ns=%" PRIu64
                        " retry_after_ns=%" PRIu64 "\n",
                        file, index, op, now_us, allowed, limit, remaining, reset_us, retry_us,
                        (int)d.allowed, d.limit, d.remaining, d.reset_after_ns,
                        d.retry_after_ns);
            }
        } else {
            fprintf(stderr, "line %lu: unknown line: %s", line_number, line);
            return 2;
        }
    }
    if (in != stdin) {
        fclose(in);
    }
    flux_limiter_free(limiter);
    flux_clock_free(clock);
    /* As in core/tests/vectors.rs: every algorithm has a vector. */
    for (i = 0; i < 6; i++) {
        if (!seen[i]) {
            fprintf(stderr, "no vector for algorithm %s\n", flux_algorithm_name((uint32_t)i));
        }
        CHECK(seen[i]);
    }
    printf("test_vectors: %d vectors, %d steps replayed\n", vectors, steps);
    return check_summary("test_vectors");
}
