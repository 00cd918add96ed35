/*
 * flux: a rate limiter, the C++17 wrapper over the C ABI (flux.h). SPDX-License-Identifier: MIT
 *
 * Header-only: include it and link libflux as for flux.h (`pkg-config --cflags --libs flux`,
 * or `target_link_libraries(app PRIVATE flux::flux)` after `find_package(flux)`).
 *
 * - Handles (flux::limiter, flux::redis, flux::shared_region, flux::manual_clock) own their
 *   C handle and free it in their destructor (RAII). They are move-only: copying would mean
 *   two owners of one handle. A moved-from object holds no handle; calling it throws
 *   flux::error with FLUX_RESULT_NULL_ARGUMENT (as the C ABI would report), and destroying it
 *   is fine.
 * - Errors are exceptions: flux::error, a std::runtime_error carrying the flux_result code
 *   (code()) and flux_last_error()'s message (what()), copied at the moment of the failure.
 *   Exceptions, not a result type, because every failure here is a programming or
 *   configuration error (bad quota, bad cost, invalid UTF-8) or a Redis failing closed, which
 *   callers handle far from the call; a denied hit is not an error and never throws.
 * - Keys are std::string_view: any bytes of UTF-8, no NUL needed, never copied.
 * - Thread safety is the C ABI's: any method but destruction and assignment may be called on
 *   the same object from many threads at once.
 */

#ifndef FLUX_HPP
#define FLUX_HPP

#include "flux.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if __cplusplus < 201703L && (!defined(_MSVC_LANG) || _MSVC_LANG < 201703L)
#error "flux.hpp needs C++17 (flux.h alone works from C++11)"
#endif

namespace flux {

/* A failed flux call: the flux_result code and flux_last_error()'s message. */
class error : public std::runtime_error {
public:
    error(flux_result code, const std::string &message)
        : std::runtime_error(message), code_(code) {}
    /* The C ABI's result code (never FLUX_RESULT_OK). */
    flux_result code() const noexcept { return code_; }

private:
    flux_result code_;
};

namespace detail {
/* Throws flux::error for a failed call. The message is copied at once: flux_last_error()'s
 * string is only valid until the next failing call on this thread. */
inline void check(flux_result code) {
    if (code != FLUX_RESULT_OK) {
        const char *message = flux_last_error();
        throw error(code, (message != nullptr && *message != '\0') ? std::string(message)
                                                                   : flux_result_message(code));
    }
}

/* Owns one C handle: frees it on destruction, moves it, never copies it. */
template <typename T, void (*Free)(T *)>
class handle {
public:
    handle() noexcept = default;
    explicit handle(T *raw) noexcept : raw_(raw) {}
    handle(const handle &) = delete;
    handle &operator=(const handle &) = delete;
    handle(handle &&other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
    handle &operator=(handle &&other) noexcept {
        if (this != &other) {
            Free(raw_);
            raw_ = std::exchange(other.raw_, nullptr);
        }
        return *this;
    }
    ~handle() { Free(raw_); }
    T *get() const noexcept { return raw_; }

private:
    T *raw_ = nullptr;
};
}  // namespace detail

using nanoseconds = std::chrono::nanoseconds;

/* The algorithms, by the C ABI's stable numbers. */
enum class algorithm : std::uint32_t {
    gcra = FLUX_ALGORITHM_GCRA,
    token_bucket = FLUX_ALGORITHM_TOKEN_BUCKET,
    leaky_bucket = FLUX_ALGORITHM_LEAKY_BUCKET,
    fixed_window = FLUX_ALGORITHM_FIXED_WINDOW,
    sliding_window = FLUX_ALGORITHM_SLIDING_WINDOW,
    sliding_log = FLUX_ALGORITHM_SLIDING_LOG,
};

/* Where a decision came from. */
enum class source : std::uint32_t {
    memory = FLUX_SOURCE_MEMORY,
    redis = FLUX_SOURCE_REDIS,
    deny_cache = FLUX_SOURCE_DENY_CACHE,
    fail_open = FLUX_SOURCE_FAIL_OPEN,
};

/* What a limiter decided for one hit (or what a peek saw); times relative to the decision. */
struct decision {
    bool allowed = false;
    std::uint64_t limit = 0;
    std::uint64_t remaining = 0;
    nanoseconds reset_after{0};
    nanoseconds retry_after{0};
    flux::source source = flux::source::memory;

    static decision from_c(const flux_decision &d) noexcept {
        decision out;
        out.allowed = d.allowed;
        out.limit = d.limit;
        out.remaining = d.remaining;
        out.reset_after = nanoseconds(static_cast<nanoseconds::rep>(d.reset_after_ns));
        out.retry_after = nanoseconds(static_cast<nanoseconds::rep>(d.retry_after_ns));
        out.source = static_cast<flux::source>(d.source);
        return out;
    }
    explicit operator bool() const noexcept { return allowed; }
};

/* The library's version ("MAJOR.MINOR.PATCH"); compare with FLUX_VERSION for a mismatch. */
inline std::string_view version() noexcept { return flux_version(); }

/* A clock that moves only when told to, for tests and simulations. */
class manual_clock {
public:
    explicit manual_clock(nanoseconds start_since_epoch = nanoseconds(0)) {
        flux_clock *raw = nullptr;
        detail::check(flux_clock_new_manual(to_ns(start_since_epoch), &raw));
        handle_ = decltype(handle_)(raw);
    }
    void advance(nanoseconds delta) const { detail::check(flux_clock_advance(get(), to_ns(delta))); }
    void set(nanoseconds since_epoch) const {
        detail::check(flux_clock_set(get(), to_ns(since_epoch)));
    }
    nanoseconds now() const {
        std::uint64_t ns = 0;
        detail::check(flux_clock_now(get(), &ns));
        return nanoseconds(static_cast<nanoseconds::rep>(ns));
    }
    const flux_clock *get() const noexcept { return handle_.get(); }

private:
    static std::uint64_t to_ns(nanoseconds d) {
        if (d.count() < 0) {
            throw error(FLUX_RESULT_INVALID_ARGUMENT, "flux: a negative duration");
        }
        return static_cast<std::uint64_t>(d.count());
    }
    detail::handle<flux_clock, flux_clock_free> handle_;
};

/* How to reach Redis; every default is the C ABI's (127.0.0.1:6379, pool of 5, 200 ms,
 * key prefix "flux:", fail open). */
struct redis_options {
    std::string url = "redis://127.0.0.1:6379";
    std::vector<std::string> cluster_nodes; /* non-empty: a Redis Cluster seeded by these */
    bool cluster = false;
    std::uint32_t pool_size = 0;              /* 0: 5 */
    std::chrono::milliseconds timeout{0};     /* 0: 200 ms */
    std::string key_prefix = "flux:";
    bool fail_closed = false;
};

/* A connection to Redis (pool, circuit breaker, deny cache) shared by any number of limiters.
 * Limiters keep their own reference: it may be destroyed before them. */
class redis {
public:
    explicit redis(const redis_options &options = redis_options()) {
        std::vector<const char *> nodes;
        nodes.reserve(options.cluster_nodes.size());
        for (const std::string &node : options.cluster_nodes) {
            nodes.push_back(node.c_str());
        }
        flux_redis_options c{};
        c.url = options.url.c_str();
        c.nodes = nodes.empty() ? nullptr : nodes.data();
        c.node_count = nodes.size();
        c.cluster = options.cluster;
        c.pool_size = options.pool_size;
        c.timeout_ms = options.timeout.count() < 0
                           ? 0
                           : static_cast<std::uint64_t>(options.timeout.count());
        c.key_prefix = options.key_prefix.c_str();
        c.fail_closed = options.fail_closed;
        flux_redis *raw = nullptr;
        detail::check(flux_redis_new(&c, &raw));
        handle_ = decltype(handle_)(raw);
    }
    /* Connects now (creation is lazy); throws flux::error (FLUX_RESULT_STORE_ERROR) if Redis
     * cannot be reached. */
    void ping() const { detail::check(flux_redis_ping(get())); }
    const flux_redis *get() const noexcept { return handle_.get(); }

private:
    detail::handle<flux_redis, flux_redis_free> handle_;
};


/* Which shared-memory region to open; every default is the C ABI's (an empty path: the
   default region for key_prefix, "/dev/shm/flux-<uid>-flux_" for "flux:"; 0 max_keys: 65536). */
struct shared_options {
    std::string path;
    std::string key_prefix;
    std::size_t max_keys = 0;
};

/* A shared-memory region of the machine (a memory-mapped file) holding limiters' state for
   every process that opens it: one limit, exactly, with no Redis. Frees its handle on
   destruction (the region file stays); limiters built on it keep their own reference. */
class shared_region {
public:
    explicit shared_region(const shared_options &options = shared_options()) {
        flux_shared_options c{};
        c.path = options.path.empty() ? nullptr : options.path.c_str();
        c.key_prefix = options.key_prefix.empty() ? nullptr : options.key_prefix.c_str();
        c.max_keys = options.max_keys;
        flux_shared *raw = nullptr;
        detail::check(flux_shared_open(&c, &raw));
        handle_ = decltype(handle_)(raw);
    }
    const flux_shared *get() const noexcept { return handle_.get(); }

    /* Puts every key of every limit in the region back to full capacity, for every process
       that uses it; returns how many keys were held. */
    std::uint64_t clear() const {
        std::uint64_t cleared = 0;
        detail::check(flux_shared_clear(handle_.get(), &cleared));
        return cleared;
    }

private:
    detail::handle<flux_shared, flux_shared_free> handle_;
};

/* A quota and how to keep it: `requests` hits per `period`, `burst` at once (0: requests). */
struct limiter_options {
    std::uint64_t requests = 0;
    nanoseconds period{0};
    std::uint64_t burst = 0;
    flux::algorithm algorithm = flux::algorithm::gcra;
    std::size_t max_keys = 0;                  /* embedded store only; 0: no bound */
    const manual_clock *clock = nullptr;       /* embedded store only; nullptr: system clock */
    std::string prefix;                        /* names this limit's keys in Redis */
};

class limiter;

/* One element of flux::hit_many: a hit of `cost` on `key` of `lim`. */
struct hit_request {
    const limiter &lim;
    std::string_view key;
    std::uint64_t cost = 1;
};

/* What flux::hit_many decided: the batch passed iff every decision is allowed. */
struct batch_decision {
    bool allowed = false;
    std::vector<decision> decisions;
    explicit operator bool() const noexcept { return allowed; }
};

/* One rate limit over many keys, its state in the embedded store or in Redis. */
class limiter {
public:
    /* On the embedded (in-process) store. */
    explicit limiter(const limiter_options &options) {
        flux_limiter_options c = to_c(options);
        flux_limiter *raw = nullptr;
        detail::check(flux_limiter_new(&c, &raw));
        handle_ = decltype(handle_)(raw);
    }
    /* On Redis, through `store` (the limiter keeps its own reference to it). */
    limiter(const limiter_options &options, const flux::redis &store) {
        flux_limiter_options c = to_c(options);
        flux_limiter *raw = nullptr;
        detail::check(flux_limiter_new_redis(&c, store.get(), &raw));
        handle_ = decltype(handle_)(raw);
    }
    /* On a shared-memory region (the limiter keeps its own reference to it). */
    limiter(const limiter_options &options, const flux::shared_region &region) {
        flux_limiter_options c = to_c(options);
        flux_limiter *raw = nullptr;
        detail::check(flux_limiter_new_shared(&c, region.get(), &raw));
        handle_ = decltype(handle_)(raw);
    }

    /* Counts a hit of `cost` on `key` if it passes; a denial is a decision, not an error. */
    decision hit(std::string_view key, std::uint64_t cost = 1) const {
        flux_decision out{};
        detail::check(flux_limiter_hit(get(), data(key), key.size(), cost, &out));
        return decision::from_c(out);
    }
    /* What a hit of cost 1 would see now, counting nothing. */
    decision peek(std::string_view key) const {
        flux_decision out{};
        detail::check(flux_limiter_peek(get(), data(key), key.size(), &out));
        return decision::from_c(out);
    }
    /* Gives back `cost` units of `key`'s capacity (a hit that should not count after all),
     * never above full capacity; an idle or unknown key is left alone. Returns what a hit of
     * cost 1 would see next. Throws as hit does (invalid cost, store failing closed). */
    decision refund(std::string_view key, std::uint64_t cost = 1) const {
        flux_decision out{};
        detail::check(flux_limiter_refund(get(), data(key), key.size(), cost, &out));
        return decision::from_c(out);
    }
    /* Puts `key` back to full capacity. */
    void reset(std::string_view key) const {
        detail::check(flux_limiter_reset(get(), data(key), key.size()));
    }
    const flux_limiter *get() const noexcept { return handle_.get(); }

    /* A string_view may be empty with a null data(); the C ABI wants a pointer even then. */
    static const char *data(std::string_view key) noexcept {
        return key.data() != nullptr ? key.data() : "";
    }

private:
    static flux_limiter_options to_c(const limiter_options &options) {
        if (options.period.count() < 0) {
            throw error(FLUX_RESULT_INVALID_PERIOD, "flux: a negative period");
        }
        flux_limiter_options c{};
        c.requests = options.requests;
        c.period_ns = static_cast<std::uint64_t>(options.period.count());
        c.burst = options.burst;
        c.algorithm = static_cast<std::uint32_t>(options.algorithm);
        c.max_keys = options.max_keys;
        c.clock = options.clock != nullptr ? options.clock->get() : nullptr;
        c.prefix = options.prefix.c_str(); /* copied by flux_limiter_new */
        return c;
    }
    detail::handle<flux_limiter, flux_limiter_free> handle_;
};

/* Hits every request atomically: all are counted or none is (e.g. 10/s and 1000/h on one
 * route). Limiters may mix stores only as the C ABI allows (see flux_hit_many). */
inline batch_decision hit_many(const std::vector<hit_request> &requests) {
    std::vector<flux_hit> hits;
    hits.reserve(requests.size());
    for (const hit_request &r : requests) {
        hits.push_back(flux_hit{r.lim.get(), limiter::data(r.key), r.key.size(), r.cost});
    }
    std::vector<flux_decision> out(hits.size());
    bool allowed = false;
    detail::check(flux_hit_many(hits.data(), hits.size(), out.data(), &allowed));
    batch_decision result;
    result.allowed = allowed;
    result.decisions.reserve(out.size());
    for (const flux_decision &d : out) {
        result.decisions.push_back(decision::from_c(d));
    }
    return result;
}

inline batch_decision hit_many(std::initializer_list<hit_request> requests) {
    return hit_many(std::vector<hit_request>(requests));
}

}  // namespace flux

#endif /* FLUX_HPP */
