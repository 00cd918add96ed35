'use strict';
// bindings/bench.sh's Node row: the mean time of one hit on a hot key of the embedded store
// (1e9 per second: never denied), over N hits after a warm-up, through hit() (a decision
// object) or allow() (a boolean). Prints the ns per hit. Usage: node bench.js hit|allow N
const flux = require('.');

const [what, n] = [process.argv[2], Number(process.argv[3] || 1000000)];
const limiter = new flux.Limiter({ requests: 1e9, periodMs: 1000 });
const call = what === 'allow' ? (k) => limiter.allow(k) : (k) => limiter.hit(k).allowed;
let allowed = 0;
for (let i = 0; i < n / 10; i++) allowed += call('user:42') ? 1 : 0;
const t0 = process.hrtime.bigint();
for (let i = 0; i < n; i++) allowed += call('user:42') ? 1 : 0;
const t1 = process.hrtime.bigint();
console.log((Number(t1 - t0) / n).toFixed(1));
if (allowed === 0) process.exit(1);
