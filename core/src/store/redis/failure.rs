//! Failure handling: every request to Redis goes through the circuit breaker within one
//! `timeout_ms` budget (`run`), a failure gets a readable message saying whether Redis is
//! unavailable or refused this one request (`describe`), and the limit's failure policy turns
//! it into a fail-open outcome or an error (`fail`), here and nowhere else. See
//! docs/architecture.md, *Failures*.

use super::breaker::{Admission, BreakerState};
use super::connection::{remaining, Conn};
use super::stats::Counters;
use super::store::Shared;
use crate::{Error, FailurePolicy, Outcome, Result};
use log::{debug, warn};
use redis::{ErrorKind, RedisError};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Why a request to Redis failed.
#[derive(Clone)]
pub(crate) struct Failure {
    pub(crate) message: String,
    /// Redis could not be reached or could not serve (what the circuit breaker counts, and
    /// logs when it opens), as opposed to Redis refusing this one request.
    pub(crate) unavailable: bool,
}

impl Failure {
    /// The same failure, its message naming the keys involved (identities left out).
    pub(crate) fn naming_keys<'a>(self, keys: impl IntoIterator<Item = &'a String>) -> Failure {
        if self.message.contains("(key") {
            return self;
        }
        let keys: Vec<String> = keys.into_iter().map(|k| shown_key(k)).collect();
        let label = if keys.len() == 1 { "key" } else { "keys" };
        Failure {
            message: format!("{} ({label} {})", self.message, keys.join(", ")),
            ..self
        }
    }

    /// The error a failing-closed caller gets.
    pub(crate) fn into_error(self) -> Error {
        Error::Store(self.message)
    }
}

impl Shared {
    /// Runs `f` on a connection within `timeout_ms`, through the circuit breaker.
    pub(crate) fn run<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> std::result::Result<T, RedisError>,
    ) -> std::result::Result<T, Failure> {
        let start = Instant::now();
        let probe = match self.breaker.admit() {
            Admission::Reject => {
                return Err(Failure {
                    message: self.breaker.open_message(),
                    unavailable: true,
                })
            }
            Admission::Probe => true,
            Admission::Pass => false,
        };
        Counters::bump(&self.counters.round_trips);
        let result = if probe {
            // A probe opens its own connection, within the same budget as any hit.
            match self.prober.open_within(self.timeout) {
                Ok(mut conn) => match conn.set_budget(remaining(start, self.timeout)) {
                    Ok(()) => f(&mut conn),
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            }
        } else {
            let mut conn = match self.pool.get(start + self.timeout) {
                Ok(conn) => conn,
                Err(err) => {
                    let err = err.to_string();
                    let message = if err.contains("uthentication") {
                        format!(
                            "{} rejected the credentials (check password/username): {err}",
                            self.target
                        )
                    } else {
                        format!(
                            "{}: no connection within timeout_ms = {} ms: {err}",
                            self.target, self.config.timeout_ms
                        )
                    };
                    self.breaker.failure(&message, false);
                    return Err(Failure {
                        message,
                        unavailable: true,
                    });
                }
            };
            // Connecting took part of the budget: the command gets what is left. (A checkout
            // under 1 ms keeps the full budget, which spares two syscalls per hit.)
            let budget = if start.elapsed() >= Duration::from_millis(1) {
                remaining(start, self.timeout)
            } else {
                self.timeout
            };
            match conn.set_budget(budget) {
                Ok(()) => f(&mut conn),
                Err(err) => Err(err),
            }
        };
        match result {
            Ok(value) => {
                self.breaker.success();
                Ok(value)
            }
            Err(err) => {
                let (message, unavailable) = self.describe(&err);
                if unavailable {
                    self.breaker.failure(&message, probe);
                } else {
                    // Redis answered: it is up, whatever it said.
                    self.breaker.success();
                }
                Err(Failure {
                    message,
                    unavailable,
                })
            }
        }
    }

    /// A readable message for `err`, and whether it means Redis is unavailable (which counts
    /// towards the breaker) rather than that it refused this request.
    fn describe(&self, err: &RedisError) -> (String, bool) {
        let target = &self.target;
        if err.is_timeout() {
            return (
                format!(
                    "{target} did not answer within timeout_ms = {} ms",
                    self.config.timeout_ms
                ),
                true,
            );
        }
        if err.is_connection_refusal() {
            return (format!("{target} refused the connection: {err}"), true);
        }
        let code = err.code().unwrap_or_default();
        if err.kind() == ErrorKind::AuthenticationFailed || matches!(code, "WRONGPASS" | "NOAUTH") {
            return (
                format!("{target} rejected the credentials (check password/username): {err}"),
                true,
            );
        }
        match err.kind() {
            ErrorKind::Io | ErrorKind::Parse | ErrorKind::ClusterConnectionNotFound => {
                return (format!("{target}: connection failed: {err}"), true)
            }
            ErrorKind::Server(kind) => {
                use redis::ServerErrorKind::*;
                if matches!(
                    kind,
                    BusyLoading | TryAgain | ClusterDown | MasterDown | ReadOnly
                ) {
                    return (format!("{target} cannot serve requests now: {err}"), true);
                }
            }
            _ => {}
        }
        match code {
            "BUSY" => (format!("{target} is busy running a script: {err}"), true),
            "OOM" => (
                format!(
                    "{target} is out of memory (maxmemory reached and its policy refuses \
                     writes); nothing was counted: {err}"
                ),
                false,
            ),
            "WRONGTYPE" => (
                format!(
                    "{target}: a flux key holds a value of another type (written by another \
                     program?); nothing was counted: {err}"
                ),
                false,
            ),
            _ => (format!("{target} refused the request: {err}"), false),
        }
    }

    /// A failure on a request Redis answered (the pipeline's per-command errors).
    pub(crate) fn rejected(&self, err: &RedisError, redis_key: &str) -> Failure {
        let (message, unavailable) = self.describe(err);
        Failure {
            message: format!("{message} (key {})", shown_key(redis_key)),
            unavailable,
        }
    }

    /// The outcome of a failed hit of `cost` (0 for a peek or refund) on a limit of capacity
    /// `limit` under `policy`: an allowed decision flagged fail-open, or an error. The one
    /// place a failure policy is applied.
    pub(crate) fn fail(
        &self,
        failure: Failure,
        limit: u64,
        cost: u64,
        policy: FailurePolicy,
    ) -> Result<Outcome> {
        self.count_failure(&failure, policy);
        if !policy.is_open() {
            return Err(failure.into_error());
        }
        self.count_fail_open();
        Ok(Outcome::failed_open(limit, cost, failure.into_error()))
    }

    /// Counts a hit let through by a fail-open policy.
    pub(crate) fn count_fail_open(&self) {
        Counters::bump(&self.counters.fail_open);
    }

    /// Counts and logs a failure (whatever the policy does with it).
    pub(crate) fn count_failure(&self, failure: &Failure, policy: FailurePolicy) {
        Counters::bump(&self.counters.errors);
        if failure.unavailable {
            // The breaker warns once when these add up to an outage (one line per state
            // change); a blip that does not open it is debug news, and an open breaker's
            // rejections are none.
            if self.breaker.state() == BreakerState::Closed {
                debug!("flux: {}", failure.message);
            }
        } else {
            self.warn_rarely(&failure.message, policy);
        }
    }

    /// Logs a refused request (Redis answered, with an error) at most once a minute.
    fn warn_rarely(&self, message: &str, policy: FailurePolicy) {
        const EVERY: u64 = 60_000_000_000;
        let now = self.origin.elapsed().as_nanos() as u64 + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + EVERY)
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                "flux: {message}; {} (further failures of the redis store are not logged for \
                 a minute)",
                if policy.is_open() {
                    "failing open"
                } else {
                    "failing closed"
                }
            );
        }
    }
}

/// `redis_key` as messages and logs show it: the identity (the hash tag) is left out, so no
/// client address, user id or API key reaches a log line or an error a web page may print.
/// Limit names and key prefixes hold no braces (the builder refuses them), so the tag is
/// from the first `{` to the last `}:`.
pub(crate) fn shown_key(redis_key: &str) -> String {
    match (redis_key.find('{'), redis_key.rfind("}:")) {
        (Some(open), Some(close)) if open < close => {
            format!("{}{{…}}{}", &redis_key[..open], &redis_key[close + 1..])
        }
        _ => "<a key>".to_string(),
    }
}
