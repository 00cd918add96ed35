//! The floor of a Redis-backed hit: a bare EVALSHA of a minimal GCRA script through the `redis`
//! crate on one connection, no pool, no breaker, no cost, no peek. The Python bench
//! (`benches/python/bench_redis.py`) compares flux's hit from Python against it.
//!
//! Usage: `bare_evalsha URL [CALLS]` (default 10000 calls after 500 to warm up). Prints one
//! JSON line: `{"calls": N, "median_us": …, "p90_us": …, "p99_us": …}`.

use std::time::{Duration, Instant};

/// The baseline: GCRA in a dozen lines, no cost, no peek, no explicit time.
const MINIMAL_GCRA: &str = include_str!("minimal_gcra.lua");

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
