/* The include guard: flux.h included twice (and first, so it needs nothing before it) must
 * compile cleanly under strict warnings, in C99 and (as C++) in C++11. */
#include "flux.h"
#include "flux.h"

int main(void) {
    flux_limiter *limiter = NULL;
    flux_clock *clock = NULL;
    flux_limiter_free(limiter);
    flux_clock_free(clock);
    return flux_version()[0] == FLUX_VERSION[0] ? FLUX_RESULT_OK : 1;
}
