/* Built by tests/install/run.sh against an installed flux (pkg-config, CMake): three hits on a
 * limit of two, and the header's version against the library's. Prints "flux VERSION: 2 of 3". */
#include <flux.h>

#include <stdio.h>
#include <string.h>

int main(void) {
    if (strcmp(flux_version(), FLUX_VERSION) != 0) {
        fprintf(stderr, "header %s, library %s\n", FLUX_VERSION, flux_version());
        return 1;
    }
    flux_limiter_options options;
    memset(&options, 0, sizeof options);
    options.requests = 2;
    options.period_ns = UINT64_C(60000000000);
    flux_limiter *limiter = NULL;
    if (flux_limiter_new(&options, &limiter) != FLUX_RESULT_OK) {
        fprintf(stderr, "flux_limiter_new: %s\n", flux_last_error());
        return 1;
    }
    int allowed = 0;
    for (int i = 0; i < 3; i++) {
        flux_decision decision;
        if (flux_limiter_hit(limiter, "k", 1, 1, &decision) != FLUX_RESULT_OK) {
            fprintf(stderr, "flux_limiter_hit: %s\n", flux_last_error());
            return 1;
        }
        allowed += decision.allowed;
    }
    flux_limiter_free(limiter);
    printf("flux %s: %d of 3\n", flux_version(), allowed);
    return allowed == 2 ? 0 : 1;
}
