'use strict';
// Hits one Redis limit (100 per hour, gcra) from Node and prints how many hits passed;
// bindings/run.sh runs it beside Python, C, C++ and Go processes on the same limit.
// Usage: node examples_interop.js URL KEY_PREFIX PREFIX KEY HITS
const flux = require('.');

const [url, keyPrefix, prefix, key, hits] = process.argv.slice(2);
// A URL "shared:PATH" uses the shared-memory region at PATH instead of Redis.
const store = url.startsWith('shared:')
  ? { shared: new flux.SharedRegion({ path: url.slice('shared:'.length) }) }
  : { redis: new flux.Redis({ url, keyPrefix, timeoutMs: 2000, failClosed: true }) };
const limiter = new flux.Limiter({ requests: 100, periodMs: 3600000, prefix, ...store });
let allowed = 0;
for (let i = 0; i < Number(hits); i++) {
  if (limiter.allow(key)) allowed++;
}
console.log(allowed);
