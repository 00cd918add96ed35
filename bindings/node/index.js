'use strict';
// flux for Node.js: a rate limiter with a Rust core, through its C ABI and a N-API addon
// (src/flux_node.c, built into build/flux.node by build.sh). hit/peek/reset are synchronous,
// like the C ABI: right for the embedded store (well under a microsecond); on Redis they block
// the event loop for a round trip (at most timeoutMs), so a server uses hitAsync/peekAsync/
// resetAsync there, which run on libuv's thread pool and return Promises.
//
// Failures throw FluxError: err.code is a string ('FLUX_INVALID_COST', ...), err.result the
// C ABI's flux_result number. A denied hit is not an error: decision.allowed is false.

const path = require('path');

const native = require(process.env.FLUX_NODE_ADDON || path.join(__dirname, 'build', 'flux.node'));

class FluxError extends Error {
  constructor(code, result, message) {
    super(message);
    this.name = 'FluxError';
    this.code = code;
    this.result = result;
  }
}
native.setErrorClass(FluxError);

const Algorithm = Object.freeze({
  GCRA: 0, TOKEN_BUCKET: 1, LEAKY_BUCKET: 2, FIXED_WINDOW: 3, SLIDING_WINDOW: 4, SLIDING_LOG: 5,
});
const SOURCES = ['memory', 'redis', 'deny_cache', 'fail_open'];
const LIMITER = 0;
const REDIS = 1;
const CLOCK = 2;
const SHARED = 3;

function decisionAt(out, i) {
  return {
    allowed: out[i] === 1,
    limit: out[i + 1],
    remaining: out[i + 2],
    resetAfterMs: out[i + 3],
    retryAfterMs: out[i + 4],
    source: SOURCES[out[i + 5]],
  };
}

function algorithmNumber(algorithm) {
  if (algorithm === undefined) return 0;
  if (typeof algorithm === 'number') return algorithm;
  const n = Algorithm[String(algorithm).toUpperCase().replace(/-/g, '_')];
  if (n === undefined) {
    throw new FluxError('FLUX_UNKNOWN_ALGORITHM', 8, `unknown algorithm ${JSON.stringify(algorithm)}`);
  }
  return n;
}

/** A clock that moves only when told to, for tests. Times in milliseconds. */
class ManualClock {
  constructor(startMs = 0) { this._h = native.clockNew(startMs); }
  advance(ms) { native.clockAdvance(this._h, ms); }
  close() { native.close(this._h, CLOCK); }
}

/** A connection to Redis shared by any number of limiters. */
class Redis {
  /** @param {{url?: string, nodes?: string[], cluster?: boolean, poolSize?: number,
   *           timeoutMs?: number, keyPrefix?: string, failClosed?: boolean}} options */
  constructor(options = {}) { this._h = native.redisNew(options); }
  ping() { native.redisPing(this._h); }
  close() { native.close(this._h, REDIS); }
}

/** A shared-memory region of the machine (a memory-mapped file) holding limiters' state for
 *  every process that opens it: one limit, exactly, with no Redis. close() frees the handle
 *  (the region file stays; limiters on it keep their own reference). */
class SharedRegion {
  /** @param {{path?: string, keyPrefix?: string, maxKeys?: number}} options */
  constructor(options = {}) { this._h = native.sharedOpen(options); }
  close() { native.close(this._h, SHARED); }
}

/** One rate limit over many keys: `requests` hits per `periodMs`, `burst` at once. */
class Limiter {
  /** @param {{requests: number, periodMs: number, burst?: number, algorithm?: string|number,
   *           maxKeys?: number, prefix?: string, clock?: ManualClock, redis?: Redis,
   *           shared?: SharedRegion}} options */
  constructor(options) {
    const { clock, redis, shared } = options;
    this._out = new Float64Array(6);
    this._h = native.limiterNew(
      { ...options, algorithm: algorithmNumber(options.algorithm) },
      clock ? clock._h : null,
      redis ? redis._h : null,
      this._out,
      shared ? shared._h : null,
    );
  }
  /** Counts a hit of `cost` on `key` if it passes. */
  hit(key, cost = 1) {
    native.hit(this._h, key, cost);
    return decisionAt(this._out, 0);
  }
  /** Whether `key` has room now (the cheapest check: no decision object). */
  allow(key, cost = 1) { return native.hit(this._h, key, cost); }
  /** What a hit of cost 1 would see now, counting nothing. */
  peek(key) {
    native.peek(this._h, key);
    return decisionAt(this._out, 0);
  }
  /** Gives back `cost` units of `key`'s capacity (a hit that should not count after all);
   *  returns what a hit of cost 1 would see next. Never above full capacity; an idle or
   *  unknown key is left as it is. */
  refund(key, cost = 1) {
    native.refund(this._h, key, cost);
    return decisionAt(this._out, 0);
  }
  /** Puts `key` back to full capacity. */
  reset(key) { native.reset(this._h, key); }
  /** hit() off the event loop: a Promise of the decision (rejected with a FluxError). */
  hitAsync(key, cost = 1) { return native.hitAsync(this._h, key, cost); }
  /** peek() off the event loop. */
  peekAsync(key) { return native.peekAsync(this._h, key); }
  /** reset() off the event loop. */
  resetAsync(key) { return native.resetAsync(this._h, key); }
  /** refund() off the event loop. */
  refundAsync(key, cost = 1) { return native.refundAsync(this._h, key, cost); }
  /** Frees the limiter now, or once its async calls in flight are done (else when it is
   *  garbage-collected); later calls throw. */
  close() { native.close(this._h, LIMITER); }
}

/** Hits every [limiter, key, cost] atomically: all counted, or none. */
function hitMany(hits) {
  const out = new Float64Array(6 * hits.length);
  const allowed = native.hitMany(
    hits.map((h) => h[0]._h), hits.map((h) => h[1]), hits.map((h) => (h[2] === undefined ? 1 : h[2])), out,
  );
  return { allowed, decisions: hits.map((_, i) => decisionAt(out, 6 * i)) };
}

module.exports = {
  Algorithm, FluxError, Limiter, ManualClock, Redis, SharedRegion, hitMany, version: native.version,
};
