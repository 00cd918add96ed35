package flux

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func mustLimiter(t testing.TB, o Options) *Limiter {
	t.Helper()
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestVersion(t *testing.T) {
	if Version() == "" {
		t.Fatal("no version")
	}
}

func TestHitPeekResetWithCost(t *testing.T) {
	clock, err := NewManualClock(1000 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer clock.Close()
	l := mustLimiter(t, Options{Requests: 3, Period: time.Minute, Clock: clock})
	d, err := l.Hit("user:1", 2)
	if err != nil || !d.Allowed || d.Remaining != 1 || d.Limit != 3 || d.Source != SourceMemory {
		t.Fatalf("%+v %v", d, err)
	}
	if d, _ = l.Hit("user:1", 2); d.Allowed || d.RetryAfter != 20*time.Second {
		t.Fatalf("a cost of 2 with 1 left must be denied, retry in 20 s: %+v", d)
	}
	if d, _ = l.Peek("user:1"); d.Remaining != 1 {
		t.Fatalf("peek: %+v", d)
	}
	if err := clock.Advance(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d, _ = l.Peek("user:1"); d.Remaining != 2 {
		t.Fatalf("after 20 s: %+v", d)
	}
	if err := l.Reset("user:1"); err != nil {
		t.Fatal(err)
	}
	if d, _ = l.Peek("user:1"); d.Remaining != 3 {
		t.Fatalf("after reset: %+v", d)
	}
	if d, err = l.Hit("", 1); err != nil || !d.Allowed { // the empty key is a key
		t.Fatalf("empty key: %+v %v", d, err)
	}
}

func TestRefundGivesBackCapacity(t *testing.T) {
	clock, err := NewManualClock(1000 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer clock.Close()
	l := mustLimiter(t, Options{Requests: 3, Period: time.Minute, Clock: clock})
	if d, err := l.Hit("login:ann", 3); err != nil || !d.Allowed || d.Remaining != 0 {
		t.Fatalf("%+v %v", d, err)
	}
	if d, _ := l.Hit("login:ann", 1); d.Allowed {
		t.Fatalf("over the limit: %+v", d)
	}
	// The refund's decision is what a hit of cost 1 would see next.
	d, err := l.Refund("login:ann", 2)
	if err != nil || !d.Allowed || d.Remaining != 2 {
		t.Fatalf("refund 2: %+v %v", d, err)
	}
	// Never above full capacity.
	if d, _ = l.Refund("login:ann", 3); d.Remaining != 3 {
		t.Fatalf("refund past full: %+v", d)
	}
	// An unknown key stays unknown.
	if d, err = l.Refund("nobody", 1); err != nil || d.Remaining != 3 {
		t.Fatalf("unknown key: %+v %v", d, err)
	}
	if _, err = l.Refund("login:ann", 0); !errors.Is(err, ErrInvalidCost) {
		t.Fatalf("cost 0: %v", err)
	}
	if _, err = l.Refund("login:ann", 4); !errors.Is(err, ErrInvalidCost) {
		t.Fatalf("cost 4 > capacity 3: %v", err)
	}
	if _, err = l.Refund("\xff", 1); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("invalid UTF-8: %v", err)
	}
}

func TestErrorsAreTyped(t *testing.T) {
	l := mustLimiter(t, Options{Requests: 3, Period: time.Minute})
	_, err := l.Hit("k", 0)
	var fe *Error
	if !errors.Is(err, ErrInvalidCost) || !errors.As(err, &fe) || fe.Code != ResultInvalidCost {
		t.Fatalf("cost 0: %v", err)
	}
	if _, err = l.Hit("k", 4); !errors.Is(err, ErrInvalidCost) {
		t.Fatalf("cost 4 > capacity 3: %v", err)
	}
	if _, err = l.Hit("\xff", 1); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("invalid UTF-8: %v", err)
	}
	if _, err = New(Options{Period: time.Second}); !errors.Is(err, ErrInvalidRequests) {
		t.Fatalf("requests 0: %v", err)
	} else if fe = err.(*Error); fe.Message == "" {
		t.Fatal("no message")
	}
	if _, err = New(Options{Requests: 1, Period: time.Second, Algorithm: 99}); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Fatalf("algorithm 99: %v", err)
	}
	closed := mustLimiter(t, Options{Requests: 1, Period: time.Second})
	closed.Close()
	if _, err = closed.Hit("k", 1); !errors.Is(err, ErrNullArgument) {
		t.Fatalf("hit after close: %v", err)
	}
}

func TestHitManyIsAtomic(t *testing.T) {
	clock, _ := NewManualClock(0)
	perSecond := mustLimiter(t, Options{Requests: 2, Period: time.Second, Clock: clock})
	perHour := mustLimiter(t, Options{Requests: 1000, Period: time.Hour, Clock: clock})
	passed := 0
	for i := 0; i < 5; i++ {
		ok, ds, err := HitMany([]Hit{{perSecond, "client:7", 1}, {perHour, "client:7", 1}})
		if err != nil || len(ds) != 2 {
			t.Fatal(err)
		}
		if ok {
			passed++
		}
	}
	if d, _ := perHour.Peek("client:7"); passed != 2 || d.Remaining != 998 {
		t.Fatalf("passed %d, hourly remaining %d", passed, d.Remaining)
	}
	if _, _, err := HitMany([]Hit{{perSecond, "k", 0}}); !errors.Is(err, ErrInvalidCost) {
		t.Fatalf("cost 0 in a batch: %v", err)
	}
}

func TestConcurrentHitsCountExactly(t *testing.T) {
	l := mustLimiter(t, Options{Requests: 100, Period: time.Hour})
	var allowed int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if d, err := l.Hit("shared", 1); err == nil && d.Allowed {
					atomic.AddInt64(&allowed, 1)
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 100 {
		t.Fatalf("allowed %d of 400, want 100", allowed)
	}
}

func redisURL(t *testing.T) string {
	url := os.Getenv("FLUX_TEST_REDIS_URL")
	if url == "" {
		t.Skip("FLUX_TEST_REDIS_URL is not set (bindings/run.sh starts a redis-server)")
	}
	return url
}

func TestRedis(t *testing.T) {
	url := redisURL(t)
	r, err := NewRedis(RedisOptions{URL: url, KeyPrefix: fmt.Sprintf("flux-go-test:%d:", time.Now().UnixNano()), Timeout: 2 * time.Second, FailClosed: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Ping(); err != nil {
		t.Fatal(err)
	}
	l, err := NewOnRedis(Options{Requests: 3, Period: time.Minute, Prefix: "go:"}, r)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := l.Hit("k", 2)
	if err != nil || !d.Allowed || d.Remaining != 1 || d.Source != SourceRedis {
		t.Fatalf("%+v %v", d, err)
	}
	if d, _ = l.Hit("k", 2); d.Allowed {
		t.Fatalf("over the limit: %+v", d)
	}
	if d, _ = l.Peek("k"); d.Remaining != 1 {
		t.Fatalf("peek: %+v", d)
	}
	if d, err = l.Refund("k", 1); err != nil || d.Remaining != 2 || d.Source != SourceRedis {
		t.Fatalf("refund: %+v %v", d, err)
	}
	if err = l.Reset("k"); err != nil {
		t.Fatal(err)
	}
	other, _ := NewOnRedis(Options{Requests: 3, Period: time.Minute, Prefix: "go:"}, r)
	defer other.Close()
	ok, ds, err := HitMany([]Hit{{l, "a", 1}, {other, "b", 3}})
	if err != nil || !ok || ds[1].Remaining != 0 {
		t.Fatalf("batch: %v %+v %v", ok, ds, err)
	}
	if d, _ = l.Peek("k"); d.Remaining != 3 {
		t.Fatalf("after reset: %+v", d)
	}

	dead := os.Getenv("FLUX_TEST_DEAD_URL")
	if dead == "" {
		return
	}
	gone, _ := NewRedis(RedisOptions{URL: dead, Timeout: 200 * time.Millisecond, FailClosed: true})
	defer gone.Close()
	if err := gone.Ping(); !errors.Is(err, ErrStore) {
		t.Fatalf("ping a dead Redis: %v", err)
	}
	closed, _ := NewOnRedis(Options{Requests: 3, Period: time.Minute}, gone)
	defer closed.Close()
	if _, err := closed.Hit("k", 1); !errors.Is(err, ErrStore) {
		t.Fatalf("failing closed: %v", err)
	}
	openStore, _ := NewRedis(RedisOptions{URL: dead, Timeout: 200 * time.Millisecond})
	defer openStore.Close()
	open, _ := NewOnRedis(Options{Requests: 3, Period: time.Minute}, openStore)
	defer open.Close()
	if d, err := open.Hit("k", 1); err != nil || !d.Allowed || d.Source != SourceFailOpen {
		t.Fatalf("failing open: %+v %v", d, err)
	}
}

// BenchmarkHit: one hit on the embedded store through cgo (bindings/bench.sh compares it
// with the C ABI's own hit).
func BenchmarkHit(b *testing.B) {
	l := mustLimiter(b, Options{Requests: 1000000000, Period: time.Second})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Hit("user:42", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCgoFloor: the cost of crossing into C at all (see cgoFloor).
func BenchmarkCgoFloor(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cgoFloor()
	}
}

func TestShared(t *testing.T) {
	dir := t.TempDir() // removed after the test, region file and all
	region, err := OpenShared(SharedOptions{Path: dir + "/region", MaxKeys: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer region.Close()
	l, err := NewOnShared(Options{Requests: 3, Period: time.Minute, Prefix: "go-test:"}, region)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A second limiter on a second handle to the same region sees the same state.
	region2, err := OpenShared(SharedOptions{Path: dir + "/region"})
	if err != nil {
		t.Fatal(err)
	}
	defer region2.Close()
	l2, err := NewOnShared(Options{Requests: 3, Period: time.Minute, Prefix: "go-test:"}, region2)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if d, err := l.Hit("k", 2); err != nil || !d.Allowed || d.Remaining != 1 {
		t.Fatalf("%+v %v", d, err)
	}
	if d, err := l2.Peek("k"); err != nil || !d.Allowed || d.Remaining != 1 {
		t.Fatalf("peek: %+v %v", d, err)
	}
	if d, _ := l2.Hit("k", 2); d.Allowed {
		t.Fatalf("over the limit: %+v", d)
	}
	// A refund through one handle is seen through the other.
	if d, err := l2.Refund("k", 1); err != nil || d.Remaining != 2 || d.Source != SourceMemory {
		t.Fatalf("refund: %+v %v", d, err)
	}
	if d, _ := l.Peek("k"); d.Remaining != 2 {
		t.Fatalf("peek after refund: %+v", d)
	}
	if err := l2.Reset("k"); err != nil {
		t.Fatal(err)
	}
	if d, _ := l.Peek("k"); d.Remaining != 3 {
		t.Fatalf("after reset: %+v", d)
	}
	if _, err := OpenShared(SharedOptions{Path: dir + "/region", MaxKeys: 128}); err == nil {
		t.Fatal("a different max_keys on an existing region opened")
	}
	if _, err := NewOnShared(Options{Requests: 3, Period: time.Minute}, &SharedRegion{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed region: %v", err)
	}
}
