//! The shared store across real processes: this test binary re-runs itself as worker processes
//! (`child_worker` does the work when FLUX_SHARED_CHILD is set) on one region.
//!
//! - 8 processes × 4 threads × 500 hits on one key, limit 100 per period: exactly 100 allowed,
//!   for every algorithm the store supports.
//! - The same while some workers are SIGKILLed at random instants, in the middle of hits and of
//!   claims of fresh keys, every algorithm: no key is ever admitted beyond its limit, nothing
//!   hangs, and every later decision is right.
//!
//! Workers print one line per allowed hit, written before the next hit starts, so that the
//! parent counts them even for a worker killed later.

mod support;

use flux_core::store::shared::SharedRegion;
use flux_core::{AlgorithmKind, Limiter, Quota};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::rng::Rng;
use support::shared::ScratchPath;

const PROCESSES: usize = 8;
const THREADS: usize = 4;
const HITS: usize = 500;
const LIMIT: u64 = 100;
/// Keys of limit 1 per hour that the workers of the kill test claim concurrently, one per
/// TICK nanoseconds: 2 s of run.
const FRESH_KEYS: usize = 20_000;
const TICK: u64 = 100_000;

const SUPPORTED: [AlgorithmKind; 5] = [
    AlgorithmKind::Gcra,
    AlgorithmKind::TokenBucket,
    AlgorithmKind::LeakyBucket,
    AlgorithmKind::FixedWindow,
    AlgorithmKind::SlidingWindow,
];

/// The period of every limit here: the longest a quota may have, so that no window boundary
/// (fixed windows align to multiples of it since the epoch) falls inside a test run.
const PERIOD: u64 = flux_core::quota::MAX_PERIOD;

fn hot_limiter(region: &SharedRegion, kind: AlgorithmKind) -> Limiter {
    Limiter::builder(Quota::new(LIMIT, PERIOD, None).unwrap())
        .algorithm(kind)
        .prefix("hot:")
        .build_shared(region)
        .unwrap()
}

fn fresh_limiter(region: &SharedRegion, kind: AlgorithmKind) -> Limiter {
    Limiter::builder(Quota::new(1, PERIOD, None).unwrap())
        .algorithm(kind)
        .prefix("fresh:")
        .build_shared(region)
        .unwrap()
}

/// The time each algorithm's round of the exactness test has.
const ROUND: Duration = Duration::from_millis(300);

fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "flux-allowed {line}").unwrap();
    out.flush().unwrap();
}

/// The worker's side: does nothing in a normal test run.
#[test]
fn child_worker() {
    let Ok(role) = std::env::var("FLUX_SHARED_CHILD") else {
        return;
    };
    let region = SharedRegion::open(std::env::var("FLUX_SHARED_PATH").unwrap(), None).unwrap();
    match role.as_str() {
        "exact" => {
            // Every worker starts each algorithm's round at the same instant, so that all of
            // them contend (spawning 8 processes takes longer than one round of hits).
            let start: u64 = std::env::var("FLUX_SHARED_START").unwrap().parse().unwrap();
            for (round, kind) in SUPPORTED.into_iter().enumerate() {
                let at = start + round as u64 * ROUND.as_nanos() as u64;
                std::thread::sleep(Duration::from_nanos(at.saturating_sub(wall_nanos())));
                let limiter = hot_limiter(&region, kind);
                std::thread::scope(|scope| {
                    for _ in 0..THREADS {
                        scope.spawn(|| {
                            for _ in 0..HITS {
                                if limiter.hit("one-key", 1).unwrap().allowed {
                                    report(kind.name());
                                }
                            }
                        });
                    }
                });
            }
        }
        "kill" => {
            // Hits on the hot key interleaved with first hits of fresh keys: every thread of
            // every worker hits the key of the current 100 µs tick since the common start, so
            // that the workers race to claim each fresh key, until killed or 2 s have passed.
            let start: u64 = std::env::var("FLUX_SHARED_START").unwrap().parse().unwrap();
            std::thread::sleep(Duration::from_nanos(start.saturating_sub(wall_nanos())));
            let hot: Vec<Limiter> = SUPPORTED.map(|kind| hot_limiter(&region, kind)).into();
            let fresh: Vec<Limiter> = SUPPORTED.map(|kind| fresh_limiter(&region, kind)).into();
            std::thread::scope(|scope| {
                for _ in 0..THREADS {
                    let (hot, fresh) = (&hot, &fresh);
                    scope.spawn(move || loop {
                        let tick = wall_nanos().saturating_sub(start) / TICK;
                        if tick >= FRESH_KEYS as u64 {
                            break;
                        }
                        let key = format!("k{tick}");
                        for (hot, fresh) in hot.iter().zip(fresh) {
                            let kind = hot.algorithm();
                            if hot.hit("one-key", 1).unwrap().allowed {
                                report(&format!("hot {kind}"));
                            }
                            if fresh.hit(&key, 1).unwrap().allowed {
                                report(&format!("{kind} {key}"));
                            }
                        }
                    });
                }
            });
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// A worker process and the thread collecting its reports.
struct Worker {
    child: Child,
    lines: std::thread::JoinHandle<Vec<String>>,
}

/// Starts worker `index` in `role`; `start` is when an "exact" worker's first round begins.
fn spawn(role: &str, path: &std::path::Path, index: usize, start: u64) -> Worker {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_worker", "--nocapture", "--test-threads=1"])
        .env("FLUX_SHARED_CHILD", role)
        .env("FLUX_SHARED_PATH", path)
        .env("FLUX_SHARED_INDEX", index.to_string())
        .env("FLUX_SHARED_START", start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(|line| line.ok())
            // The harness prints "test child_worker ... " with no newline before the test's
            // own output, so a report may start mid-line.
            .filter_map(|line| {
                line.find("flux-allowed ")
                    .map(|at| line[at + "flux-allowed ".len()..].to_string())
            })
            .collect()
    });
    Worker { child, lines }
}

/// Waits for `worker` for at most `limit`; kills it (by its pid) and fails if it hangs.
fn finish(mut worker: Worker, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = worker.child.try_wait().unwrap() {
            let lines = worker.lines.join().unwrap();
            assert!(
                status.success() || status.code().is_none(),
                "worker failed: {status}"
            );
            return lines;
        }
        if Instant::now() > deadline {
            let _ = worker.child.kill();
            let _ = worker.child.wait();
            panic!("a worker hung for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn eight_processes_of_four_threads_get_exactly_the_quota_for_every_algorithm() {
    let scratch = ScratchPath::new("processes");
    let region = SharedRegion::open(scratch.path(), Some(1024)).unwrap();
    let start = wall_nanos() + 1_500_000_000;
    let workers: Vec<Worker> = (0..PROCESSES)
        .map(|i| spawn("exact", scratch.path(), i, start))
        .collect();
    let mut allowed: HashMap<String, u64> = HashMap::new();
    for worker in workers {
        for line in finish(worker, Duration::from_secs(120)) {
            *allowed.entry(line).or_default() += 1;
        }
    }
    for kind in SUPPORTED {
        assert_eq!(
            allowed.get(kind.name()),
            Some(&LIMIT),
            "{kind}: {allowed:?}"
        );
        let limiter = hot_limiter(&region, kind);
        assert!(!limiter.hit("one-key", 1).unwrap().allowed, "{kind}");
    }
}

#[test]
fn workers_killed_at_random_leave_every_later_decision_exact() {
    let scratch = ScratchPath::new("kills");
    // Room enough that no bucket overflows: an evicted key would rightly be admitted again.
    let region = SharedRegion::open(scratch.path(), Some(4 * 5 * FRESH_KEYS)).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill test seed {seed}");
    let mut rng = Rng(seed);
    let start = wall_nanos() + 1_000_000_000;
    let mut workers: Vec<Option<Worker>> = (0..PROCESSES)
        .map(|i| Some(spawn("kill", scratch.path(), i, start)))
        .collect();
    std::thread::sleep(Duration::from_millis(1_000));
    // Kill three workers, one at a time, at random instants of their 2 s run.
    let mut killed = 0;
    let mut lines = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
        let victim = loop {
            let i = rng.below(PROCESSES as u64) as usize;
            if workers[i].is_some() {
                break i;
            }
        };
        let mut worker = workers[victim].take().unwrap();
        if worker.child.try_wait().unwrap().is_none() {
            worker.child.kill().unwrap();
            killed += 1;
        }
        worker.child.wait().unwrap();
        lines.extend(worker.lines.join().unwrap());
    }
    for worker in workers.into_iter().flatten() {
        lines.extend(finish(worker, Duration::from_secs(60)));
    }
    let mut allowed: HashMap<String, u64> = HashMap::new();
    for line in lines {
        *allowed.entry(line).or_default() += 1;
    }
    let hot: Vec<(AlgorithmKind, u64)> = SUPPORTED
        .map(|kind| (kind, allowed.remove(&format!("hot {kind}")).unwrap_or(0)))
        .into();
    eprintln!(
        "killed {killed} workers; hot key allowed {hot:?}; {} fresh keys admitted",
        allowed.len()
    );
    // Never beyond the limit. A killed worker may have consumed a hit it had no time to
    // report (at most one per thread), never more.
    for (kind, hot) in hot {
        assert!(hot <= LIMIT, "{kind}: hot key admitted {hot} times");
        assert!(
            hot + THREADS as u64 * killed >= LIMIT,
            "{kind}: hot key lost capacity: {hot}"
        );
        assert!(
            !hot_limiter(&region, kind)
                .hit("one-key", 1)
                .unwrap()
                .allowed
        );
    }
    for (key, count) in &allowed {
        assert_eq!(*count, 1, "{key} admitted {count} times");
    }
    // Later decisions: every reported key is spent, and the region (stale claims of the dead
    // included) still admits new keys exactly.
    let fresh: Vec<Limiter> = SUPPORTED.map(|kind| fresh_limiter(&region, kind)).into();
    for line in allowed.keys() {
        let (kind, key) = line.split_once(' ').unwrap();
        let limiter = &fresh[SUPPORTED.iter().position(|k| k.name() == kind).unwrap()];
        assert!(
            !limiter.hit(key, 1).unwrap().allowed,
            "{line} admitted again: {:?}",
            region.stats()
        );
    }
    let fresh = &fresh[0];
    for i in 0..1_000 {
        let key = format!("after-{i}");
        assert!(fresh.hit(&key, 1).unwrap().allowed, "{key}");
        assert!(!fresh.hit(&key, 1).unwrap().allowed, "{key}");
    }
}
