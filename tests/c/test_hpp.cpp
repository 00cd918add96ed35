// include/flux.hpp, the header-only C++17 wrapper: RAII and moves (no leak, no double free under
// ASan and valgrind), exceptions carrying the flux_result and the message, string_view keys,
// the multi-limit hit, and Redis when FLUX_TEST_REDIS_URL names one (FLUX_TEST_DEAD_URL: a port
// nobody listens on, for failing closed). Included twice on purpose (the include guard).
#include "flux.hpp"
#include "flux.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "check.h"

#include <unistd.h>

static_assert(!std::is_copy_constructible_v<flux::limiter>, "limiter is move-only");
static_assert(!std::is_copy_assignable_v<flux::limiter>, "limiter is move-only");
static_assert(std::is_nothrow_move_constructible_v<flux::limiter>, "limiter moves");
static_assert(std::is_nothrow_move_assignable_v<flux::limiter>, "limiter moves");
static_assert(!std::is_copy_constructible_v<flux::redis>, "redis is move-only");
static_assert(!std::is_copy_constructible_v<flux::manual_clock>, "clock is move-only");
static_assert(std::is_base_of_v<std::runtime_error, flux::error>, "error is a runtime_error");

namespace {

using namespace std::chrono_literals;

// Runs `f`, which must throw flux::error with `code` and a message containing `needle`.
template <typename F>
void expect_error(F &&f, flux_result code, std::string_view needle) {
    try {
        f();
        CHECK(false);
    } catch (const flux::error &e) {
        CHECK(e.code() == code);
        CHECK(std::string_view(e.what()).find(needle) != std::string_view::npos);
        if (e.code() != code || std::string_view(e.what()).find(needle) == std::string_view::npos) {
            fprintf(stderr, "  got code %d: %s\n", static_cast<int>(e.code()), e.what());
        }
    }
}

void embedded() {
    CHECK(flux::version() == FLUX_VERSION);
    flux::manual_clock clock(1000s);
    flux::limiter_options options;
    options.requests = 3;
    options.period = 60s;
    options.clock = &clock;
    flux::limiter limiter(options);
    for (int i = 0; i < 3; i++) {
        CHECK(limiter.hit("user:1").allowed);
    }
    flux::decision denied = limiter.hit("user:1");
    CHECK(!denied && denied.limit == 3 && denied.retry_after == 20s);
    CHECK(denied.source == flux::source::memory);
    CHECK(!limiter.peek("user:1").allowed);
    clock.advance(20s);
    CHECK(limiter.peek("user:1").allowed && limiter.peek("user:1").remaining == 1);
    CHECK(limiter.hit("user:1").allowed && !limiter.hit("user:1").allowed);
    flux::decision refunded = limiter.refund("user:1");
    CHECK(refunded.allowed && refunded.remaining == 1);
    CHECK(limiter.hit("user:1").allowed && !limiter.hit("user:1").allowed);
    CHECK(limiter.refund("user:1", 3).remaining == 3); // never above full capacity
    expect_error([&] { limiter.refund("user:1", 4); }, FLUX_RESULT_INVALID_COST, "cost");
    limiter.reset("user:1");
    CHECK(limiter.peek("user:1").remaining == 3);
    CHECK(clock.now() == 1020s);

    // Keys are string_views: not NUL-terminated, may contain NUL, may be empty.
    std::string buffer = "alpha:beta";
    CHECK(limiter.hit(std::string_view(buffer).substr(0, 5), 3).remaining == 0);
    CHECK(limiter.peek("alpha").remaining == 0 && limiter.peek("alpha:beta").remaining == 3);
    CHECK(limiter.hit(std::string_view("a\0b", 3)).remaining == 2);
    CHECK(limiter.peek("a").remaining == 3);
    CHECK(limiter.hit(std::string_view()).allowed);

    // Errors: the flux_result and flux_last_error()'s message.
    expect_error([&] { limiter.hit("user:2", 0); }, FLUX_RESULT_INVALID_COST, "cost");
    expect_error([&] { limiter.hit("user:2", 4); }, FLUX_RESULT_INVALID_COST, "cost");
    expect_error([&] { limiter.hit(std::string_view("\xff", 1)); }, FLUX_RESULT_INVALID_UTF8,
                 "UTF-8");
    flux::limiter_options bad;
    bad.period = 1s;
    expect_error([&] { flux::limiter{bad}; }, FLUX_RESULT_INVALID_REQUESTS, "requests");
    bad.requests = 1;
    bad.period = -1s;
    expect_error([&] { flux::limiter{bad}; }, FLUX_RESULT_INVALID_PERIOD, "negative");

    // Moves: the handle goes with the move; the moved-from object throws, and frees nothing.
    flux::limiter moved = std::move(limiter);
    CHECK(moved.peek("user:1").remaining == 3);
    expect_error([&] { limiter.hit("user:1"); }, FLUX_RESULT_NULL_ARGUMENT, "");  // NOLINT
    flux::limiter_options other = options;
    other.requests = 10;
    flux::limiter target(other);
    target = std::move(moved);  // frees target's own limiter
    CHECK(target.peek("user:1").limit == 3);
    target = std::move(target);  // self-move keeps the handle
    CHECK(target.peek("user:1").limit == 3);
    flux::manual_clock clock2 = std::move(clock);
    clock2.advance(1s);  // the limiter still reads it: it holds its own reference
    CHECK(clock2.now() == 1021s);
}

void multi() {
    flux::manual_clock clock(0s);
    flux::limiter_options second;
    second.requests = 2;
    second.period = 1s;
    second.clock = &clock;
    flux::limiter_options hour = second;
    hour.requests = 1000;
    hour.period = 3600s;
    flux::limiter per_second(second);
    flux::limiter per_hour(hour);
    int passed = 0;
    for (int i = 0; i < 5; i++) {
        flux::batch_decision batch =
            flux::hit_many({{per_second, "client:7"}, {per_hour, "client:7", 1}});
        CHECK(batch.decisions.size() == 2);
        passed += batch ? 1 : 0;
    }
    CHECK(passed == 2);
    CHECK(per_hour.peek("client:7").remaining == 998);  // denied batches took nothing
    CHECK(flux::hit_many(std::vector<flux::hit_request>{}).allowed);
    expect_error([&] { flux::hit_many({{per_second, "k", 0}}); }, FLUX_RESULT_INVALID_COST,
                 "hits[0]");
}

// One limiter shared by threads without locking (the C ABI's thread-safety, through the wrapper).
void threads() {
    flux::limiter_options options;
    options.requests = 100;
    options.period = 3600s;
    const flux::limiter limiter(options);
    std::atomic<int> allowed{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; t++) {
        pool.emplace_back([&] {
            for (int i = 0; i < 50; i++) {
                allowed += limiter.hit("shared") ? 1 : 0;
            }
        });
    }
    for (std::thread &t : pool) {
        t.join();
    }
    CHECK(allowed.load() == 100);
}

void on_redis(const char *url, const char *dead_url) {
    flux::redis_options ro;
    ro.url = url;
    // A prefix of its own per run: the asan and valgrind runs share one redis-server.
    ro.key_prefix = "flux-hpp-test:" +
                    std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) +
                    ":";
    ro.timeout = 2000ms;
    ro.fail_closed = true;
    flux::redis store(ro);
    store.ping();
    flux::limiter_options options;
    options.requests = 2;
    options.period = 60s;
    options.prefix = "hpp:";
    flux::limiter limiter(options, store);
    CHECK(limiter.hit("k").source == flux::source::redis);
    CHECK(limiter.hit("k").allowed);
    CHECK(!limiter.hit("k").allowed);
    CHECK(!limiter.peek("k").allowed);
    limiter.reset("k");
    CHECK(limiter.peek("k").remaining == 2);
    flux::limiter other(options, store);  // the same limit: shares the state
    CHECK(other.hit("k", 2).remaining == 0 && limiter.peek("k").remaining == 0);
    flux::batch_decision batch = flux::hit_many({{limiter, "a"}, {other, "b"}});
    CHECK(batch.allowed && batch.decisions[0].source == flux::source::redis);

    flux::redis_options dead = ro;
    dead.url = dead_url;
    dead.timeout = 200ms;
    flux::redis gone(dead);
    expect_error([&] { gone.ping(); }, FLUX_RESULT_STORE_ERROR, "");
    flux::limiter closed(options, gone);
    expect_error([&] { closed.hit("k"); }, FLUX_RESULT_STORE_ERROR, "");
    dead.fail_closed = false;
    flux::redis open_store(dead);
    flux::limiter open(options, open_store);
    flux::decision let_through = open.hit("k");
    CHECK(let_through.allowed && let_through.source == flux::source::fail_open);
}

}  // namespace

/* Two handles on one shared-memory region (a file in a temporary directory, removed after):
   hit, peek, reset and clear through one are seen by the other. */
static void shared() {
    using namespace std::chrono_literals;
    char dir[] = "/tmp/flux-hpp-shared.XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    const std::string path = std::string(dir) + "/region";
    {
        flux::shared_region region({path, {}, 64});
        flux::shared_region again({path, {}, 0});
        flux::limiter_options options;
        options.requests = 3;
        options.period = 60s;
        options.prefix = "hpp-test:";
        flux::limiter a(options, region);
        flux::limiter b(options, again);
        flux::decision d = a.hit("k", 2);
        CHECK(d.allowed && d.remaining == 1);
        CHECK(b.peek("k").remaining == 1);
        CHECK(!b.hit("k", 2).allowed);
        b.reset("k");
        CHECK(a.peek("k").remaining == 3);
        a.hit("k", 3);
        a.hit("other", 1);
        CHECK(again.clear() == 2);
        CHECK(b.peek("k").remaining == 3 && b.peek("other").remaining == 3);
        CHECK(region.clear() == 0);
        bool threw = false;
        try {
            flux::shared_region other({path, {}, 128});
        } catch (const flux::error &) {
            threw = true;
        }
        CHECK(threw);
    }
    std::remove(path.c_str());
    rmdir(dir);
}

int main() {
    try {
        embedded();
        multi();
        threads();
        shared();
        const char *url = std::getenv("FLUX_TEST_REDIS_URL");
        const char *dead = std::getenv("FLUX_TEST_DEAD_URL");
        if (url != nullptr && dead != nullptr) {
            on_redis(url, dead);
        } else {
            printf("test_hpp: no FLUX_TEST_REDIS_URL, Redis part skipped\n");
        }
    } catch (const flux::error &e) {
        fprintf(stderr, "unexpected flux::error %d: %s\n", static_cast<int>(e.code()), e.what());
        return 1;
    }
    return check_summary("test_hpp");
}
