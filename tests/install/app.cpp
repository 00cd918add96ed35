// The C++ wrapper from an installed flux: the same check as app.c through flux.hpp.
#include <flux.hpp>

#include <chrono>
#include <cstdio>

int main() {
    using namespace std::chrono_literals;
    flux::limiter_options options;
    options.requests = 2;
    options.period = 60s;
    flux::limiter limiter(options);
    int allowed = 0;
    for (int i = 0; i < 3; i++) {
        allowed += limiter.hit("k") ? 1 : 0;
    }
    std::printf("flux %s: %d of 3\n", flux_version(), allowed);
    return allowed == 2 ? 0 : 1;
}
