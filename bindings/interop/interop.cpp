// Hits one Redis limit (100 per hour, gcra) through flux.hpp and prints how many hits passed;
// bindings/run.sh runs it beside Python, C, Go and Node processes on the same limit.
// Usage: interop URL KEY_PREFIX PREFIX KEY HITS
// A URL "shared:PATH" uses the shared-memory region at PATH instead of Redis (KEY_PREFIX is
// then ignored).
#include <flux.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

int main(int argc, char **argv) {
    using namespace std::chrono_literals;
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s URL KEY_PREFIX PREFIX KEY HITS\n", argv[0]);
        return 2;
    }
    try {
        flux::limiter_options options;
        options.requests = 100;
        options.period = 3600s;
        options.prefix = argv[3];
        const std::string url = argv[1];
        std::unique_ptr<flux::limiter> made;
        if (url.rfind("shared:", 0) == 0) {
            flux::shared_options so;
            so.path = url.substr(7);
            flux::shared_region region(so);
            made = std::make_unique<flux::limiter>(options, region);
        } else {
            flux::redis_options ro;
            ro.url = url;
            ro.key_prefix = argv[2];
            ro.timeout = 2000ms;
            ro.fail_closed = true;
            flux::redis store(ro);
            made = std::make_unique<flux::limiter>(options, store);
        }
        const flux::limiter &limiter = *made;
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
