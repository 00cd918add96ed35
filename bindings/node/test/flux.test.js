'use strict';
// node --test: the binding on the embedded store, and on Redis when FLUX_TEST_REDIS_URL names
// one (bindings/run.sh starts its own redis-server; FLUX_TEST_DEAD_URL is a port nobody uses).
const test = require('node:test');
const assert = require('node:assert/strict');
const flux = require('..');

function rejects(fn, code) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof flux.FluxError, `not a FluxError: ${err}`);
    assert.equal(err.code, code);
    assert.equal(typeof err.result, 'number');
    assert.ok(err.message.length > 0);
    return true;
  });
}

test('hit, peek and reset with a cost, on a manual clock', () => {
  const clock = new flux.ManualClock(1000000);
  const limiter = new flux.Limiter({ requests: 3, periodMs: 60000, clock });
  let d = limiter.hit('user:1', 2);
  assert.deepEqual([d.allowed, d.remaining, d.limit, d.source], [true, 1, 3, 'memory']);
  d = limiter.hit('user:1', 2);
  assert.equal(d.allowed, false);
  assert.equal(d.retryAfterMs, 20000);
  assert.equal(limiter.peek('user:1').remaining, 1);
  clock.advance(20000);
  assert.equal(limiter.peek('user:1').remaining, 2);
  limiter.reset('user:1');
  assert.equal(limiter.peek('user:1').remaining, 3);
  assert.equal(limiter.allow('', 1), true); // the empty key is a key
  assert.equal(limiter.hit('k'.repeat(1000)).allowed, true); // longer than the stack buffer
  assert.equal(limiter.peek('k'.repeat(1000)).remaining, 2);
  assert.equal(limiter.peek('k'.repeat(999)).remaining, 3);
  assert.equal(limiter.hit('é', 3).remaining, 0);
  clock.close();
  limiter.close();
});

test('refund gives back capacity, never past full, and leaves unknown keys alone', async () => {
  const clock = new flux.ManualClock(1000000);
  const limiter = new flux.Limiter({ requests: 3, periodMs: 60000, clock });
  assert.equal(limiter.hit('login:ann', 3).remaining, 0);
  assert.equal(limiter.hit('login:ann').allowed, false);
  let d = limiter.refund('login:ann', 2); // what a hit of cost 1 would see next
  assert.deepEqual([d.allowed, d.remaining, d.limit], [true, 2, 3]);
  assert.equal(limiter.refund('login:ann', 3).remaining, 3);
  assert.equal(limiter.refund('nobody').remaining, 3);
  assert.equal(limiter.hit('login:ann').remaining, 2);
  d = await limiter.refundAsync('login:ann');
  assert.deepEqual([d.allowed, d.remaining, d.source], [true, 3, 'memory']);
  rejects(() => limiter.refund('k', 0), 'FLUX_INVALID_COST');
  rejects(() => limiter.refund('k', 4), 'FLUX_INVALID_COST');
  await assert.rejects(limiter.refundAsync('k', 0), (e) => e instanceof flux.FluxError && e.code === 'FLUX_INVALID_COST');
  assert.throws(() => limiter.refund(42), TypeError);
  limiter.close();
  rejects(() => limiter.refund('k'), 'FLUX_NULL_ARGUMENT');
  clock.close();
});

test('errors are FluxErrors with a code and a result', () => {
  const limiter = new flux.Limiter({ requests: 3, periodMs: 1000 });
  rejects(() => limiter.hit('k', 0), 'FLUX_INVALID_COST');
  rejects(() => limiter.hit('k', 4), 'FLUX_INVALID_COST');
  rejects(() => new flux.Limiter({ periodMs: 1000 }), 'FLUX_INVALID_REQUESTS');
  rejects(() => new flux.Limiter({ requests: 1, periodMs: 0 }), 'FLUX_INVALID_PERIOD');
  rejects(() => new flux.Limiter({ requests: 1, periodMs: 1, algorithm: 'nope' }), 'FLUX_UNKNOWN_ALGORITHM');
  assert.throws(() => limiter.hit(42), TypeError);
  limiter.close();
  rejects(() => limiter.hit('k'), 'FLUX_NULL_ARGUMENT');
});

test('algorithms by name', () => {
  const limiter = new flux.Limiter({ requests: 2, periodMs: 1000, algorithm: 'fixed-window' });
  assert.equal(limiter.hit('k').limit, 2);
});

test('hitMany is atomic', () => {
  const clock = new flux.ManualClock(0);
  const perSecond = new flux.Limiter({ requests: 2, periodMs: 1000, clock });
  const perHour = new flux.Limiter({ requests: 1000, periodMs: 3600000, clock });
  let passed = 0;
  for (let i = 0; i < 5; i++) {
    const batch = flux.hitMany([[perSecond, 'client:7'], [perHour, 'client:7', 1]]);
    assert.equal(batch.decisions.length, 2);
    if (batch.allowed) passed++;
  }
  assert.equal(passed, 2);
  assert.equal(perHour.peek('client:7').remaining, 998);
  rejects(() => flux.hitMany([[perSecond, 'k', 0]]), 'FLUX_INVALID_COST');
  assert.equal(flux.hitMany([]).allowed, true);
});

const url = process.env.FLUX_TEST_REDIS_URL;
test('Redis: hit, peek, reset, hitMany, fail closed and open', { skip: !url && 'FLUX_TEST_REDIS_URL is not set' }, () => {
  const redis = new flux.Redis({
    url, keyPrefix: `flux-node-test:${process.pid}:${Date.now()}:`, timeoutMs: 2000, failClosed: true,
  });
  redis.ping();
  const limiter = new flux.Limiter({ requests: 3, periodMs: 60000, prefix: 'node:', redis });
  let d = limiter.hit('k', 2);
  assert.deepEqual([d.allowed, d.remaining, d.source], [true, 1, 'redis']);
  assert.equal(limiter.hit('k', 2).allowed, false);
  assert.equal(limiter.peek('k').remaining, 1);
  d = limiter.refund('k', 1);
  assert.deepEqual([d.remaining, d.source], [2, 'redis']);
  limiter.reset('k');
  assert.equal(limiter.peek('k').remaining, 3);
  const other = new flux.Limiter({ requests: 3, periodMs: 60000, prefix: 'node:', redis });
  const batch = flux.hitMany([[limiter, 'a'], [other, 'b', 3]]);
  assert.equal(batch.allowed, true);
  assert.equal(batch.decisions[1].remaining, 0);

  const dead = process.env.FLUX_TEST_DEAD_URL;
  if (!dead) return;
  const gone = new flux.Redis({ url: dead, timeoutMs: 200, failClosed: true });
  rejects(() => gone.ping(), 'FLUX_STORE_ERROR');
  rejects(() => new flux.Limiter({ requests: 3, periodMs: 60000, redis: gone }).hit('k'), 'FLUX_STORE_ERROR');
  const open = new flux.Redis({ url: dead, timeoutMs: 200 });
  d = new flux.Limiter({ requests: 3, periodMs: 60000, redis: open }).hit('k');
  assert.deepEqual([d.allowed, d.source], [true, 'fail_open']);
});

test('a worker thread loads its own instance and gets FluxErrors', async () => {
  const { Worker } = require('node:worker_threads');
  const code = `
    const flux = require(${JSON.stringify(require.resolve('..'))});
    const { parentPort } = require('node:worker_threads');
    const l = new flux.Limiter({ requests: 1, periodMs: 1000 });
    let code = null;
    try { l.hit('k', 0); } catch (e) { code = e instanceof flux.FluxError && e.code; }
    parentPort.postMessage([l.hit('k').allowed, code]);`;
  const result = await new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    w.once('message', resolve);
    w.once('error', reject);
  });
  assert.deepEqual(result, [true, 'FLUX_INVALID_COST']);
});

test('async hit, peek and reset resolve decisions and reject with FluxErrors', async () => {
  const limiter = new flux.Limiter({ requests: 3, periodMs: 60000 });
  const decisions = await Promise.all([1, 2, 3, 4].map(() => limiter.hitAsync('k')));
  assert.equal(decisions.filter((d) => d.allowed).length, 3);
  assert.equal(decisions[0].source, 'memory');
  assert.equal((await limiter.peekAsync('k')).remaining, 0);
  await limiter.resetAsync('k');
  assert.equal((await limiter.peekAsync('k')).remaining, 3);
  await assert.rejects(limiter.hitAsync('k', 0), (e) => e instanceof flux.FluxError && e.code === 'FLUX_INVALID_COST');
  const pending = limiter.hitAsync('k');
  limiter.close(); // waits for the call in flight
  assert.equal((await pending).allowed, true);
  rejects(() => limiter.hitAsync('k'), 'FLUX_NULL_ARGUMENT');
});

test('async on Redis: fail closed rejects', { skip: !process.env.FLUX_TEST_DEAD_URL && 'no FLUX_TEST_DEAD_URL' }, async () => {
  const redis = new flux.Redis({
    url: process.env.FLUX_TEST_REDIS_URL, keyPrefix: `flux-node-async:${process.pid}:${Date.now()}:`, timeoutMs: 2000,
  });
  const limiter = new flux.Limiter({ requests: 2, periodMs: 60000, redis });
  const d = await limiter.hitAsync('k', 2);
  assert.deepEqual([d.allowed, d.remaining, d.source], [true, 0, 'redis']);
  const gone = new flux.Redis({ url: process.env.FLUX_TEST_DEAD_URL, timeoutMs: 200, failClosed: true });
  await assert.rejects(new flux.Limiter({ requests: 2, periodMs: 60000, redis: gone }).hitAsync('k'),
    (e) => e instanceof flux.FluxError && e.code === 'FLUX_STORE_ERROR');
});

test('hit, peek and reset on a shared-memory region, seen by a second handle', () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flux-node-shared-'));
  try {
    const file = path.join(dir, 'region');
    const region = new flux.SharedRegion({ path: file, maxKeys: 64 });
    const region2 = new flux.SharedRegion({ path: file });
    const options = { requests: 3, periodMs: 60000, prefix: 'node-test:' };
    const a = new flux.Limiter({ ...options, shared: region });
    const b = new flux.Limiter({ ...options, shared: region2 });
    let d = a.hit('k', 2);
    assert.deepEqual([d.allowed, d.remaining, d.limit], [true, 1, 3]);
    assert.equal(b.peek('k').remaining, 1);
    assert.equal(b.hit('k', 2).allowed, false);
    assert.equal(b.refund('k').remaining, 2); // seen through the other handle
    assert.equal(a.peek('k').remaining, 2);
    b.reset('k');
    d = a.peek('k');
    assert.equal(d.remaining, 3);
    rejects(() => new flux.SharedRegion({ path: file, maxKeys: 128 }), 'FLUX_STORE_ERROR');
    a.close();
    b.close();
    region.close();
    region2.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
