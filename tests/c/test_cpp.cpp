// flux from C++: RAII ownership with std::unique_ptr, exceptions carrying flux_last_error(),
// std::string_view keys, and a std::thread race. The header is included twice on purpose.
#include "flux.h"
#include "flux.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "check.h"

static_assert(FLUX_RESULT_OK == 0, "FLUX_RESULT_OK is 0");
static_assert(FLUX_VERSION_NUMBER ==
                  FLUX_VERSION_MAJOR * 1000000 + FLUX_VERSION_MINOR * 1000 + FLUX_VERSION_PATCH,
              "composite version");
static_assert(sizeof(FLUX_VERSION) >= 6, "FLUX_VERSION is a string literal");

namespace {

constexpr std::uint64_t kSecond = 1000000000;

class FluxError : public std::runtime_error {
public:
    FluxError(flux_result code, const char *what) : std::runtime_error(what), code_(code) {}
    flux_result code() const noexcept { return code_; }

private:
    flux_result code_;
};

void check(flux_result code) {
    if (code != FLUX_RESULT_OK) {
        throw FluxError(code, flux_last_error());
    }
}

struct ClockDeleter {
    void operator()(flux_clock *clock) const noexcept { flux_clock_free(clock); }
};
struct LimiterDeleter {
    void operator()(flux_limiter *limiter) const noexcept { flux_limiter_free(limiter); }
};
using Clock = std::unique_ptr<flux_clock, ClockDeleter>;

Clock manual_clock(std::uint64_t start_ns) {
    flux_clock *raw = nullptr;
    check(flux_clock_new_manual(start_ns, &raw));
    return Clock(raw);
}

class Limiter {
public:
    explicit Limiter(const flux_limiter_options &options) {
        flux_limiter *raw = nullptr;
        check(flux_limiter_new(&options, &raw));
        handle_.reset(raw);
    }
    flux_decision hit(std::string_view key, std::uint64_t cost = 1) const {
        flux_decision decision{};
        check(flux_limiter_hit(handle_.get(), key.data(), key.size(), cost, &decision));
        return decision;
    }
    flux_decision peek(std::string_view key) const {
        flux_decision decision{};
        check(flux_limiter_peek(handle_.get(), key.data(), key.size(), &decision));
        return decision;
    }
    void reset(std::string_view key) const {
        check(flux_limiter_reset(handle_.get(), key.data(), key.size()));
    }

    const flux_limiter *get() const noexcept { return handle_.get(); }

private:
    std::unique_ptr<flux_limiter, LimiterDeleter> handle_;
};

flux_limiter_options quota(std::uint64_t requests, std::uint64_t period_ns,
                           flux_algorithm algorithm = FLUX_ALGORITHM_GCRA) {
    flux_limiter_options options{};  // value-initialised: every default
    options.requests = requests;
    options.period_ns = period_ns;
    options.algorithm = algorithm;
    return options;
}

void test_basics() {
    CHECK(std::string(flux_version()) == FLUX_VERSION);
    Clock clock = manual_clock(1700000000 * kSecond);
    flux_limiter_options options = quota(3, 60 * kSecond, FLUX_ALGORITHM_SLIDING_LOG);
    options.clock = clock.get();
    const Limiter limiter(options);
    clock.reset();  // fine: the limiter keeps its own reference (time now stays put)
    for (int i = 0; i < 3; i++) {
        CHECK(limiter.hit("user:1").allowed);
    }
    const flux_decision denied = limiter.hit("user:1");
    CHECK(!denied.allowed && denied.limit == 3 && denied.retry_after_ns == 60 * kSecond);
    limiter.reset("user:1");
    CHECK(limiter.peek("user:1").remaining == 3);

    // std::string keys may hold NUL bytes; they are part of the key.
    const std::string with_nul("a\0b", 3);
    CHECK(limiter.hit(with_nul, 3).remaining == 0);
    CHECK(limiter.peek("a").remaining == 3);
}

void test_exceptions() {
    try {
        Limiter bad(quota(0, kSecond));
        CHECK(false);
    } catch (const FluxError &e) {
        CHECK(e.code() == FLUX_RESULT_INVALID_REQUESTS);
        CHECK(std::string(e.what()).find("requests = 0") != std::string::npos);
    }
    const Limiter limiter(quota(2, kSecond, FLUX_ALGORITHM_LEAKY_BUCKET));
    try {
        limiter.hit("k", 3);
        CHECK(false);
    } catch (const FluxError &e) {
        CHECK(e.code() == FLUX_RESULT_INVALID_COST);
        CHECK(std::string(e.what()).find("invalid cost 3") != std::string::npos);
    }
    try {
        limiter.hit("\xc3\x28");
        CHECK(false);
    } catch (const FluxError &e) {
        CHECK(e.code() == FLUX_RESULT_INVALID_UTF8);
    }
    switch (flux_limiter_hit(nullptr, "k", 1, 1, nullptr)) {
    case FLUX_RESULT_NULL_ARGUMENT:
        CHECK(true);
        break;
    default:
        CHECK(false);
        break;
    }
}

// Two limits on one route in one all-or-nothing hit.
bool hit_route(const Limiter &per_second, const Limiter &per_hour, std::string_view key) {
    const std::array<flux_hit, 2> batch{{{per_second.get(), key.data(), key.size(), 1},
                                         {per_hour.get(), key.data(), key.size(), 1}}};
    std::array<flux_decision, 2> decisions{};
    bool allowed = false;
    check(flux_hit_many(batch.data(), batch.size(), decisions.data(), &allowed));
    return allowed;
}

void test_hit_many() {
    const Limiter per_second(quota(2, kSecond));
    const Limiter per_hour(quota(1000, 3600 * kSecond, FLUX_ALGORITHM_FIXED_WINDOW));
    int passed = 0;
    for (int i = 0; i < 5; i++) {
        passed += hit_route(per_second, per_hour, "client:7") ? 1 : 0;
    }
    CHECK(passed == 2);
    CHECK(per_hour.peek("client:7").remaining == 998);
}

void test_race() {
    const Limiter limiter(quota(100, 3600 * kSecond, FLUX_ALGORITHM_TOKEN_BUCKET));
    std::atomic<int> allowed{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; t++) {
        threads.emplace_back([&limiter, &allowed, &failures] {
            for (int i = 0; i < 1000; i++) {
                try {
                    if (limiter.hit("shared").allowed) {
                        allowed++;
                    }
                } catch (const FluxError &) {
                    failures++;
                }
            }
        });
    }
    for (std::thread &thread : threads) {
        thread.join();
    }
    CHECK(allowed.load() == 100);
    CHECK(failures.load() == 0);
}

}  // namespace

int main() {
    test_basics();
    test_exceptions();
    test_hit_many();
    test_race();
    return check_summary("test_cpp");
}
