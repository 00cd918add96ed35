// Hits one Redis limit (100 per hour, gcra) through flux.hpp and prints how many hits passed;
// bindings/run.sh runs it beside Python, C, Go and Node processes on the same limit.
// Usage: interop URL KEY_PREFIX PREFIX KEY HITS
#include <flux.hpp>

#include <cstdio>
#include <cstdlib>

int main(int argc, char **argv) {
    using namespace std::chrono_literals;
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s URL KEY_PREFIX PREFIX KEY HITS\n", argv[0]);
        return 2;
    }
    try {
        flux::redis_options ro;
        ro.url = argv[1];
        ro.key_prefix = argv[2];
        ro.timeout = 2000ms;
        ro.fail_closed = true;
        flux::redis store(ro);
        flux::limiter_options options;
        options.requests = 100;
        options.period = 3600s;
        options.prefix = argv[3];
        flux::limiter limiter(options, store);
        long allowed = 0;
        for (long i = 0, n = std::strtol(argv[5], nullptr, 10); i < n; i++) {
            allowed += limiter.hit(argv[4]) ? 1 : 0;
        }
        std::printf("%ld\n", allowed);
    } catch (const flux::error &e) {
        std::fprintf(stderr, "flux error %d: %s\n", static_cast<int>(e.code()), e.what());
        return 1;
    }
    return 0;
}
