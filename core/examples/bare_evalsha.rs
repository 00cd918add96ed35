//! The floor of a Redis-backed hit: a bare EVALSHA of a minimal GCRA script through the `redis`
//! crate on one connection, no pool, no breaker, no cost, no peek. The Python bench
//! (`benches/python/bench_redis.py`) compares flux's hit from Python against it.
//!
//! Usage: `bare_evalsha URL [CALLS]` (default 10000 calls after 500 to warm up). Prints one
//! JSON line: `{"calls": N, "median_us": …, "p90_us": …, "p99_us": …}`.

use std::time::{Duration, Instant};

/// GCRA in a dozen lines (the same script as `benches/redis.rs`).
const MINIMAL_GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + tonumber(ARGV[1])
if new_tat - now <= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
  return {1, new_tat - now}
end
return {0, new_tat - now}
";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: bare_evalsha URL [CALLS]")?;
    let calls: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 10_000,
    };
    let client = redis::Client::open(url.as_str())?;
    let mut con = client.get_connection()?;
    let script = redis::Script::new(MINIMAL_GCRA);
    // A billion per second: every call passes, as a flux hit under a generous limit does.
    let mut call = || -> redis::RedisResult<Vec<i64>> {
        script
            .key("bare-evalsha")
            .arg(1)
            .arg(1_000_000_000_u64)
            .invoke(&mut con)
    };
    for _ in 0..500 {
        call()?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        std::hint::black_box(call()?);
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "{{\"calls\": {calls}, \"median_us\": {:.3}, \"p90_us\": {:.3}, \"p99_us\": {:.3}}}",
        at(0.5),
        at(0.9),
        at(0.99)
    );
    Ok(())
}
