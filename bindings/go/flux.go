// Package flux is the Go binding of flux, a rate limiter with a Rust core, through its C ABI
// (flux.h) and cgo. It finds libflux with pkg-config (`make install` installs flux.pc), so a
// program builds with `go build` once flux is installed; see README.md.
//
// Handles (Limiter, Redis, ManualClock) own a C handle: Close releases it (a finalizer does
// too, for a handle that is dropped unclosed). Every method may be called from many goroutines
// at once, except Close. Failures are returned as *Error, whose Code says which; errors.Is
// matches them against the Err* values (errors.Is(err, flux.ErrInvalidCost)). A denied hit is
// not an error: Decision.Allowed is false.
package flux

/*
#cgo pkg-config: flux
#include <stdlib.h>
#include <string.h>
#include "flux.h"

// flux_last_error() is per OS thread, and a goroutine may move to another thread between two
// cgo calls: so each wrapper copies the message in the same C call that failed (strdup, freed by
// Go). Keys are passed as Go strings without a copy (_GoString_), valid during the call only.
static char *fluxgo_error(flux_result r) {
	return r == FLUX_RESULT_OK ? NULL : strdup(flux_last_error());
}
static const char *fluxgo_key(_GoString_ key) {
	const char *p = _GoStringPtr(key);
	return p != NULL ? p : "";
}
// Hit and peek return their decision by value: passing Go pointers for the out-params would
// move them to the heap and have cgo check them on every call, which tripled the hit's cost.
typedef struct {
	flux_decision decision;
	flux_result result;
	char *err;
} fluxgo_decision;
static fluxgo_decision fluxgo_hit(const flux_limiter *l, _GoString_ key, uint64_t cost) {
	fluxgo_decision out;
	out.result = flux_limiter_hit(l, fluxgo_key(key), _GoStringLen(key), cost, &out.decision);
	out.err = fluxgo_error(out.result);
	return out;
}
static fluxgo_decision fluxgo_peek(const flux_limiter *l, _GoString_ key) {
	fluxgo_decision out;
	out.result = flux_limiter_peek(l, fluxgo_key(key), _GoStringLen(key), &out.decision);
	out.err = fluxgo_error(out.result);
	return out;
}
static fluxgo_decision fluxgo_refund(const flux_limiter *l, _GoString_ key, uint64_t cost) {
	fluxgo_decision out;
	out.result = flux_limiter_refund(l, fluxgo_key(key), _GoStringLen(key), cost, &out.decision);
	out.err = fluxgo_error(out.result);
	return out;
}
static flux_result fluxgo_reset(const flux_limiter *l, _GoString_ key, char **err) {
	flux_result r = flux_limiter_reset(l, fluxgo_key(key), _GoStringLen(key));
	*err = fluxgo_error(r);
	return r;
}
static flux_result fluxgo_limiter_new(const flux_limiter_options *o, const flux_redis *redis,
                                      flux_limiter **out, char **err) {
	flux_result r = redis == NULL ? flux_limiter_new(o, out) : flux_limiter_new_redis(o, redis, out);
	*err = fluxgo_error(r);
	return r;
}
static flux_result fluxgo_limiter_new_shared(const flux_limiter_options *o,
                                             const flux_shared *shared, flux_limiter **out,
                                             char **err) {
	flux_result r = flux_limiter_new_shared(o, shared, out);
	*err = fluxgo_error(r);
	return r;
}
static flux_result fluxgo_shared_open(const flux_shared_options *o, flux_shared **out,
                                      char **err) {
	flux_result r = flux_shared_open(o, out);
	*err = fluxgo_error(r);
	return r;
}
static flux_result fluxgo_redis_new(const flux_redis_options *o, flux_redis **out, char **err) {
	flux_result r = flux_redis_new(o, out);
	*err = fluxgo_error(r);
	return r;
}
static flux_result fluxgo_redis_ping(const flux_redis *redis, char **err) {
	flux_result r = flux_redis_ping(redis);
	*err = fluxgo_error(r);
	return r;
}
static flux_result fluxgo_hit_many(const flux_hit *hits, size_t n, flux_decision *out,
                                   bool *allowed, char **err) {
	flux_result r = flux_hit_many(hits, n, out, allowed);
	*err = fluxgo_error(r);
	return r;
}
static flux_result fluxgo_clock_new(uint64_t start, flux_clock **out, char **err) {
	flux_result r = flux_clock_new_manual(start, out);
	*err = fluxgo_error(r);
	return r;
}
static flux_result fluxgo_clock_advance(const flux_clock *c, uint64_t d, char **err) {
	flux_result r = flux_clock_advance(c, d);
	*err = fluxgo_error(r);
	return r;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"
)

// Result is the C ABI's flux_result: why a call failed.
type Result int

// The flux_result codes (stable numbers; see flux.h).
const (
	ResultOK               Result = C.FLUX_RESULT_OK
	ResultPanic            Result = C.FLUX_RESULT_PANIC
	ResultNullArgument     Result = C.FLUX_RESULT_NULL_ARGUMENT
	ResultInvalidUTF8      Result = C.FLUX_RESULT_INVALID_UTF8
	ResultInvalidRequests  Result = C.FLUX_RESULT_INVALID_REQUESTS
	ResultInvalidPeriod    Result = C.FLUX_RESULT_INVALID_PERIOD
	ResultInvalidBurst     Result = C.FLUX_RESULT_INVALID_BURST
	ResultInvalidCost      Result = C.FLUX_RESULT_INVALID_COST
	ResultUnknownAlgorithm Result = C.FLUX_RESULT_UNKNOWN_ALGORITHM
	ResultInvalidKey       Result = C.FLUX_RESULT_INVALID_KEY
	ResultInvalidArgument  Result = C.FLUX_RESULT_INVALID_ARGUMENT
	ResultStoreError       Result = C.FLUX_RESULT_STORE_ERROR
)

// Error is a failed flux call: the code and flux_last_error()'s message.
type Error struct {
	Code    Result
	Message string
}

func (e *Error) Error() string { return "flux: " + e.Message }

// Is makes errors.Is(err, flux.ErrInvalidCost) true for any *Error with that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is, one per code.
var (
	ErrNullArgument     = &Error{Code: ResultNullArgument, Message: "a required argument is missing"}
	ErrInvalidUTF8      = &Error{Code: ResultInvalidUTF8, Message: "not valid UTF-8"}
	ErrInvalidRequests  = &Error{Code: ResultInvalidRequests, Message: "invalid requests"}
	ErrInvalidPeriod    = &Error{Code: ResultInvalidPeriod, Message: "invalid period"}
	ErrInvalidBurst     = &Error{Code: ResultInvalidBurst, Message: "invalid burst"}
	ErrInvalidCost      = &Error{Code: ResultInvalidCost, Message: "invalid cost"}
	ErrUnknownAlgorithm = &Error{Code: ResultUnknownAlgorithm, Message: "unknown algorithm"}
	ErrInvalidKey       = &Error{Code: ResultInvalidKey, Message: "invalid key"}
	ErrInvalidArgument  = &Error{Code: ResultInvalidArgument, Message: "invalid argument"}
	ErrStore            = &Error{Code: ResultStoreError, Message: "the store failed"}
	ErrPanic            = &Error{Code: ResultPanic, Message: "a panic in flux"}
	// ErrClosed is returned by a method of a handle after Close.
	ErrClosed = &Error{Code: ResultNullArgument, Message: "use of a closed flux handle"}
)

// check turns a result and the message copied by the C wrapper into an error (freeing it).
func check(r C.flux_result, msg *C.char) error {
	if r == C.FLUX_RESULT_OK {
		return nil
	}
	text := C.GoString(C.flux_result_message(C.int(r)))
	if msg != nil {
		if m := C.GoString(msg); m != "" {
			text = m
		}
		C.free(unsafe.Pointer(msg))
	}
	return &Error{Code: Result(r), Message: text}
}

// Version is the library's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.flux_version()) }

// Algorithm is a rate-limiting algorithm, by the C ABI's stable number.
type Algorithm uint32

const (
	GCRA          Algorithm = C.FLUX_ALGORITHM_GCRA
	TokenBucket   Algorithm = C.FLUX_ALGORITHM_TOKEN_BUCKET
	LeakyBucket   Algorithm = C.FLUX_ALGORITHM_LEAKY_BUCKET
	FixedWindow   Algorithm = C.FLUX_ALGORITHM_FIXED_WINDOW
	SlidingWindow Algorithm = C.FLUX_ALGORITHM_SLIDING_WINDOW
	SlidingLog    Algorithm = C.FLUX_ALGORITHM_SLIDING_LOG
)

// Source says where a decision came from.
type Source uint32

const (
	SourceMemory    Source = C.FLUX_SOURCE_MEMORY
	SourceRedis     Source = C.FLUX_SOURCE_REDIS
	SourceDenyCache Source = C.FLUX_SOURCE_DENY_CACHE
	SourceFailOpen  Source = C.FLUX_SOURCE_FAIL_OPEN
)

// Decision is what a limiter decided for one hit (or what a peek saw).
type Decision struct {
	Allowed    bool
	Limit      uint64
	Remaining  uint64
	ResetAfter time.Duration
	RetryAfter time.Duration
	Source     Source
}

func decision(d *C.flux_decision) Decision {
	return Decision{
		Allowed:    bool(d.allowed),
		Limit:      uint64(d.limit),
		Remaining:  uint64(d.remaining),
		ResetAfter: time.Duration(d.reset_after_ns),
		RetryAfter: time.Duration(d.retry_after_ns),
		Source:     Source(d.source),
	}
}

// ManualClock is a clock that moves only when told to, for tests.
type ManualClock struct{ p *C.flux_clock }

// NewManualClock makes a clock standing at `start` after the Unix epoch.
func NewManualClock(start time.Duration) (*ManualClock, error) {
	if start < 0 {
		return nil, &Error{Code: ResultInvalidArgument, Message: "a negative start time"}
	}
	var p *C.flux_clock
	var msg *C.char
	if err := check(C.fluxgo_clock_new(C.uint64_t(start), &p, &msg), msg); err != nil {
		return nil, err
	}
	c := &ManualClock{p: p}
	runtime.SetFinalizer(c, (*ManualClock).Close)
	return c, nil
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) error {
	if d < 0 {
		return &Error{Code: ResultInvalidArgument, Message: "a negative duration"}
	}
	var msg *C.char
	err := check(C.fluxgo_clock_advance(c.p, C.uint64_t(d), &msg), msg)
	runtime.KeepAlive(c)
	return err
}

// Close releases the clock (limiters using it keep their own reference).
func (c *ManualClock) Close() error {
	runtime.SetFinalizer(c, nil)
	C.flux_clock_free(c.p)
	c.p = nil
	return nil
}

// Options describe a limit: Requests hits per Period, Burst at once (0: Requests).
type Options struct {
	Requests  uint64
	Period    time.Duration
	Burst     uint64
	Algorithm Algorithm
	// MaxKeys bounds the embedded store's keys (0: no bound); must be 0 for Redis.
	MaxKeys int
	// Prefix names this limit's keys in Redis.
	Prefix string
	// Clock: nil for the system clock; must be nil for Redis.
	Clock *ManualClock
}

// Limiter is one rate limit over many keys, on the embedded store or on Redis.
type Limiter struct{ p *C.flux_limiter }

// New makes a limiter on the embedded (in-process) store.
func New(o Options) (*Limiter, error) { return newLimiter(o, nil) }

// NewOnRedis makes a limiter whose state lives in Redis, shared with every process (in any
// language) that uses the same key prefix, limit prefix and quota.
func NewOnRedis(o Options, r *Redis) (*Limiter, error) {
	if r == nil || r.p == nil {
		return nil, ErrClosed
	}
	l, err := newLimiter(o, r.p)
	runtime.KeepAlive(r)
	return l, err
}

// NewOnShared makes a limiter whose state lives in a shared-memory region, shared with every
// process (in any language) on this machine that opens the same region with the same limit
// prefix and quota: one limit, exactly, with no Redis.
func NewOnShared(o Options, s *SharedRegion) (*Limiter, error) {
	if s == nil || s.p == nil {
		return nil, ErrClosed
	}
	l, err := newLimiterOn(o, nil, s.p)
	runtime.KeepAlive(s)
	return l, err
}

func newLimiter(o Options, redis *C.flux_redis) (*Limiter, error) {
	return newLimiterOn(o, redis, nil)
}

func newLimiterOn(o Options, redis *C.flux_redis, shared *C.flux_shared) (*Limiter, error) {
	if o.Period < 0 || o.MaxKeys < 0 {
		return nil, &Error{Code: ResultInvalidArgument, Message: "a negative period or max_keys"}
	}
	prefix := C.CString(o.Prefix)
	defer C.free(unsafe.Pointer(prefix))
	var c C.flux_limiter_options
	c.requests = C.uint64_t(o.Requests)
	c.period_ns = C.uint64_t(o.Period)
	c.burst = C.uint64_t(o.Burst)
	c.algorithm = C.uint32_t(o.Algorithm)
	c.max_keys = C.size_t(o.MaxKeys)
	c.prefix = prefix
	if o.Clock != nil {
		c.clock = o.Clock.p
	}
	var p *C.flux_limiter
	var msg *C.char
	var err error
	if shared != nil {
		err = check(C.fluxgo_limiter_new_shared(&c, shared, &p, &msg), msg)
	} else {
		err = check(C.fluxgo_limiter_new(&c, redis, &p, &msg), msg)
	}
	runtime.KeepAlive(o.Clock)
	if err != nil {
		return nil, err
	}
	l := &Limiter{p: p}
	runtime.SetFinalizer(l, (*Limiter).Close)
	return l, nil
}

// Hit counts a hit of `cost` (at least 1) on key if it passes.
func (l *Limiter) Hit(key string, cost uint64) (Decision, error) {
	out := C.fluxgo_hit(l.p, key, C.uint64_t(cost))
	runtime.KeepAlive(l)
	// Spelled out rather than through decided, which the compiler does not inline: the call
	// costs a hot hit about 10% (bindings/bench.sh: 111 -> 123 ns).
	if out.result != C.FLUX_RESULT_OK {
		return Decision{}, check(out.result, out.err)
	}
	return decision(&out.decision), nil
}

// Peek says what a hit of cost 1 on key would see now, counting nothing.
func (l *Limiter) Peek(key string) (Decision, error) {
	out := C.fluxgo_peek(l.p, key)
	runtime.KeepAlive(l)
	return decided(&out)
}

// Refund gives back `cost` units (at least 1, at most the capacity) of key's capacity, for a
// hit that should not count after all, and returns what a hit of cost 1 would see next. It
// never lifts a key above full capacity and leaves a key that is at full capacity, expired
// or unknown as it is. Atomic with the store's hits (on Redis: one round trip).
func (l *Limiter) Refund(key string, cost uint64) (Decision, error) {
	out := C.fluxgo_refund(l.p, key, C.uint64_t(cost))
	runtime.KeepAlive(l)
	return decided(&out)
}

// decided is the Decision of a keyed call's reply, or its error.
func decided(out *C.fluxgo_decision) (Decision, error) {
	if out.result != C.FLUX_RESULT_OK {
		return Decision{}, check(out.result, out.err)
	}
	return decision(&out.decision), nil
}

// Reset puts key back to full capacity.
func (l *Limiter) Reset(key string) error {
	var msg *C.char
	err := check(C.fluxgo_reset(l.p, key, &msg), msg)
	runtime.KeepAlive(l)
	return err
}

// Close releases the limiter; it must not be used afterwards (methods then fail with a
// null-argument error) and must not be called while other goroutines use it.
func (l *Limiter) Close() error {
	runtime.SetFinalizer(l, nil)
	C.flux_limiter_free(l.p)
	l.p = nil
	return nil
}

// Hit is one element of HitMany.
type Hit struct {
	Limiter *Limiter
	Key     string
	Cost    uint64
}

// HitMany hits every element atomically: all are counted, or (when any limit denies) none.
// It returns whether the batch passed and one decision per element.
func HitMany(hits []Hit) (bool, []Decision, error) {
	n := len(hits)
	if n == 0 {
		return true, nil, nil
	}
	// C memory may not hold Go pointers: the keys are copied into one C buffer.
	total := 0
	for _, h := range hits {
		total += len(h.Key)
	}
	keys := unsafe.Slice((*byte)(C.malloc(C.size_t(total+1))), total+1)
	chits := unsafe.Slice((*C.flux_hit)(C.malloc(C.size_t(n)*C.sizeof_flux_hit)), n)
	defer C.free(unsafe.Pointer(&keys[0]))
	defer C.free(unsafe.Pointer(&chits[0]))
	off := 0
	for i, h := range hits {
		if h.Limiter == nil {
			return false, nil, fmt.Errorf("hits[%d]: %w", i, ErrNullArgument)
		}
		copy(keys[off:], h.Key)
		chits[i] = C.flux_hit{
			limiter: h.Limiter.p,
			key:     (*C.char)(unsafe.Pointer(&keys[off])),
			key_len: C.size_t(len(h.Key)),
			cost:    C.uint64_t(h.Cost),
		}
		off += len(h.Key)
	}
	out := make([]C.flux_decision, n)
	var allowed C.bool
	var msg *C.char
	err := check(C.fluxgo_hit_many(&chits[0], C.size_t(n), &out[0], &allowed, &msg), msg)
	runtime.KeepAlive(hits)
	if err != nil {
		return false, nil, err
	}
	decisions := make([]Decision, n)
	for i := range out {
		decisions[i] = decision(&out[i])
	}
	return bool(allowed), decisions, nil
}

// RedisOptions say how to reach Redis; zero values mean the C ABI's defaults
// (redis://127.0.0.1:6379, pool of 5, 200 ms, key prefix "flux:", fail open).
type RedisOptions struct {
	URL        string
	Nodes      []string // Redis Cluster seeds; non-empty implies Cluster
	Cluster    bool
	PoolSize   uint32
	Timeout    time.Duration
	KeyPrefix  string // "" means "flux:"
	FailClosed bool
}

// Redis is a connection to Redis shared by any number of limiters.
type Redis struct{ p *C.flux_redis }

// NewRedis connects lazily: only a configuration that can never work fails here.
func NewRedis(o RedisOptions) (*Redis, error) {
	var c C.flux_redis_options
	var frees []unsafe.Pointer
	defer func() {
		for _, p := range frees {
			C.free(p)
		}
	}()
	cstr := func(s string) *C.char {
		p := C.CString(s)
		frees = append(frees, unsafe.Pointer(p))
		return p
	}
	if o.URL != "" {
		c.url = cstr(o.URL)
	}
	if o.KeyPrefix != "" {
		c.key_prefix = cstr(o.KeyPrefix)
	}
	if len(o.Nodes) > 0 {
		size := C.size_t(len(o.Nodes)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
		nodes := unsafe.Slice((**C.char)(C.malloc(size)), len(o.Nodes))
		frees = append(frees, unsafe.Pointer(&nodes[0]))
		for i, n := range o.Nodes {
			nodes[i] = cstr(n)
		}
		c.nodes = &nodes[0]
		c.node_count = C.size_t(len(o.Nodes))
	}
	c.cluster = C.bool(o.Cluster)
	c.pool_size = C.uint32_t(o.PoolSize)
	c.timeout_ms = C.uint64_t(o.Timeout / time.Millisecond)
	c.fail_closed = C.bool(o.FailClosed)
	var p *C.flux_redis
	var msg *C.char
	if err := check(C.fluxgo_redis_new(&c, &p, &msg), msg); err != nil {
		return nil, err
	}
	r := &Redis{p: p}
	runtime.SetFinalizer(r, (*Redis).Close)
	return r, nil
}

// Ping connects now and reports whether Redis answers.
func (r *Redis) Ping() error {
	var msg *C.char
	err := check(C.fluxgo_redis_ping(r.p, &msg), msg)
	runtime.KeepAlive(r)
	return err
}

// Close releases this handle (limiters built on it keep their own reference).
func (r *Redis) Close() error {
	runtime.SetFinalizer(r, nil)
	C.flux_redis_free(r.p)
	r.p = nil
	return nil
}

// SharedOptions say which shared-memory region to open; zero values mean the C ABI's
// defaults (the default region for KeyPrefix "flux:", 65536 keys).
type SharedOptions struct {
	Path      string // the region file; "" for the default path for KeyPrefix
	KeyPrefix string // names the default region; ignored when Path is set
	MaxKeys   int    // the most keys the region holds, used when it is created
}

// SharedRegion is a shared-memory region of the machine (a memory-mapped file) holding the
// state of limiters in every process that opens it.
type SharedRegion struct{ p *C.flux_shared }

// OpenShared opens the region, creating it if it does not exist.
func OpenShared(o SharedOptions) (*SharedRegion, error) {
	if o.MaxKeys < 0 {
		return nil, &Error{Code: ResultInvalidArgument, Message: "a negative max_keys"}
	}
	var c C.flux_shared_options
	if o.Path != "" {
		p := C.CString(o.Path)
		defer C.free(unsafe.Pointer(p))
		c.path = p
	}
	if o.KeyPrefix != "" {
		p := C.CString(o.KeyPrefix)
		defer C.free(unsafe.Pointer(p))
		c.key_prefix = p
	}
	c.max_keys = C.size_t(o.MaxKeys)
	var p *C.flux_shared
	var msg *C.char
	if err := check(C.fluxgo_shared_open(&c, &p, &msg), msg); err != nil {
		return nil, err
	}
	s := &SharedRegion{p: p}
	runtime.SetFinalizer(s, (*SharedRegion).Close)
	return s, nil
}

// Close releases this handle (the region file stays; limiters built on it keep their own
// reference).
func (s *SharedRegion) Close() error {
	runtime.SetFinalizer(s, nil)
	C.flux_shared_free(s.p)
	s.p = nil
	return nil
}

// cgoFloor is one cgo call to a trivial flux function (flux_version), for BenchmarkCgoFloor:
// the fixed cost any cgo binding pays per call on this machine, whatever flux does.
func cgoFloor() { C.flux_version() }
