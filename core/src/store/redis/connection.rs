//! One connection to one server or to a cluster: opening it within a time budget, commands
//! with a time budget, and the one place where scripts are sent (EVALSHA, then SCRIPT LOAD
//! and again after NOSCRIPT, pipelines included). The pool that keeps them is `pool.rs`.
//!
//! A connection that saw an I/O error or a timeout is marked broken and dropped by the pool,
//! never reused: a late reply must not be read as the answer to the next command.

use super::breaker::Breaker;
use super::config::{address_of, RedisConfig};
use crate::{Error, Result};
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Cmd, ConnectionInfo, ConnectionLike, ErrorKind, RedisError, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where connections go.
enum Target {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// Opens connections to the configured target.
pub(crate) struct Manager {
    target: Target,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

enum Raw {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

/// One pooled connection.
pub(crate) struct Conn {
    raw: Raw,
    broken: bool,
    read_timeout: Duration,
}

impl Manager {
    pub(crate) fn new(
        config: &RedisConfig,
        infos: Vec<ConnectionInfo>,
        breaker: Arc<Breaker>,
    ) -> Result<Self> {
        let timeout = config.timeout();
        let target = if config.is_cluster() {
            let client = ClusterClient::builder(infos)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .min_retry_wait(1)
                .max_retry_wait(timeout.as_millis().max(1) as u64 / 4)
                .build()
                .map_err(|err| {
                    Error::InvalidArgument(format!("invalid redis cluster configuration: {err}"))
                })?;
            Target::Cluster(client)
        } else {
            let info = infos
                .into_iter()
                .next()
                .ok_or_else(|| Error::InvalidArgument("no redis address configured".to_string()))?;
            let address = address_of(&info);
            let client = redis::Client::open(info).map_err(|err| {
                Error::InvalidArgument(format!("invalid redis address {address}: {err}"))
            })?;
            Target::Single(client)
        };
        Ok(Manager {
            target,
            timeout,
            breaker,
        })
    }

    /// A new connection, opened within `budget` (at least 1 ms), with commands bounded by
    /// `timeout_ms` until [`Conn::set_budget`] says otherwise.
    pub(crate) fn open_within(&self, budget: Duration) -> std::result::Result<Conn, RedisError> {
        let budget = budget.clamp(Duration::from_millis(1), self.timeout);
        let raw = match &self.target {
            Target::Single(client) => {
                // The client library waits up to its timeout for each reply of the set-up
                // pipeline (AUTH, SELECT), even after one timed out: split the budget.
                let settings = client.get_connection_info().redis_settings();
                let replies =
                    u32::from(settings.password().is_some()) + u32::from(settings.db() != 0);
                let con = client.get_connection_with_timeout(budget / replies.max(1))?;
                con.set_read_timeout(Some(self.timeout))?;
                con.set_write_timeout(Some(self.timeout))?;
                Raw::Single(con)
            }
            Target::Cluster(client) => {
                let con = client.get_connection()?;
                con.set_read_timeout(Some(self.timeout))?;
                con.set_write_timeout(Some(self.timeout))?;
                Raw::Cluster(Box::new(con))
            }
        };
        Ok(Conn {
            raw,
            broken: false,
            read_timeout: self.timeout,
        })
    }

    /// A new connection for the pool, within `budget`; refused without trying while the
    /// circuit breaker is open (a dead server must not be hammered with connects).
    pub(crate) fn connect(&self, budget: Duration) -> std::result::Result<Conn, RedisError> {
        if self.breaker.blocks_connect() {
            return Err(RedisError::from((
                ErrorKind::Io,
                "circuit breaker open: not reconnecting until the next probe",
            )));
        }
        self.open_within(budget)
    }

    /// True when `conn` must not be used again.
    pub(crate) fn has_broken(&self, conn: &Conn) -> bool {
        conn.broken
            || match &conn.raw {
                Raw::Single(con) => !con.is_open(),
                Raw::Cluster(_) => false,
            }
    }
}

/// True for errors after which the connection's stream is in an unknown state.
fn breaks_connection(err: &RedisError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Io | ErrorKind::Parse | ErrorKind::ClusterConnectionNotFound
    ) || err.is_timeout()
}

fn is_noscript(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript)
        || err.code() == Some("NOSCRIPT")
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match &mut self.raw {
            Raw::Single(con) => con,
            Raw::Cluster(con) => con.as_mut(),
        }
    }

    /// Limits the next command's wait to `budget` (at least 1 ms).
    pub(crate) fn set_budget(&mut self, budget: Duration) -> std::result::Result<(), RedisError> {
        let budget = budget.max(Duration::from_millis(1));
        if budget == self.read_timeout {
            return Ok(());
        }
        match &self.raw {
            Raw::Single(con) => {
                con.set_read_timeout(Some(budget))?;
                con.set_write_timeout(Some(budget))?;
            }
            Raw::Cluster(con) => {
                con.set_read_timeout(Some(budget))?;
                con.set_write_timeout(Some(budget))?;
            }
        }
        self.read_timeout = budget;
        Ok(())
    }

    /// Runs one command.
    pub(crate) fn query(&mut self, cmd: &Cmd) -> std::result::Result<Value, RedisError> {
        let result = cmd.query::<Value>(self.like());
        if let Err(err) = &result {
            if breaks_connection(err) {
                self.broken = true;
            }
        }
        result
    }

    /// Runs a script: EVALSHA, and after NOSCRIPT (script cache flushed, server restarted or
    /// failed over) SCRIPT LOAD and EVALSHA once more.
    pub(crate) fn eval(
        &mut self,
        script: &redis::Script,
        code: &str,
        evalsha: &Cmd,
    ) -> std::result::Result<Value, RedisError> {
        match self.query(evalsha) {
            Err(err) if is_noscript(&err) => {
                self.load(script, code)?;
                self.query(evalsha)
            }
            other => other,
        }
    }

    pub(crate) fn load(
        &mut self,
        script: &redis::Script,
        code: &str,
    ) -> std::result::Result<(), RedisError> {
        let loaded = self.query(redis::cmd("SCRIPT").arg("LOAD").arg(code))?;
        debug_assert!(
            matches!(&loaded, Value::BulkString(sha) if sha == script.get_hash().as_bytes())
                || matches!(&loaded, Value::SimpleString(sha) if sha == script.get_hash())
        );
        Ok(())
    }

    /// Runs several independent EVALSHA commands in one pipeline (one round trip). A command
    /// that met NOSCRIPT did nothing, so after loading its script it is sent again (alone among
    /// the pipeline's commands: the others already ran and must not run twice). On a cluster
    /// the commands run one by one (their keys may live on different nodes).
    pub(crate) fn eval_pipeline(
        &mut self,
        calls: &[(&redis::Script, &str, Cmd)],
    ) -> std::result::Result<Vec<std::result::Result<Value, RedisError>>, RedisError> {
        if let Raw::Cluster(_) = self.raw {
            return Ok(calls
                .iter()
                .map(|(script, code, cmd)| self.eval(script, code, cmd))
                .collect());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (_, _, cmd) in calls {
            pipe.add_command(cmd.clone());
        }
        let replies = match pipe.query::<Vec<Value>>(self.like()) {
            Ok(replies) => replies,
            Err(err) => {
                if breaks_connection(&err) {
                    self.broken = true;
                }
                return Err(err);
            }
        };
        let mut out = Vec::with_capacity(calls.len());
        let mut loaded: Vec<&str> = Vec::new();
        for ((script, code, cmd), reply) in calls.iter().zip(replies) {
            let result = match reply {
                Value::ServerError(err) => Err(RedisError::from(err)),
                value => Ok(value),
            };
            let result = match result {
                Err(err) if is_noscript(&err) => {
                    if !loaded.contains(&script.get_hash()) {
                        self.load(script, code)?;
                        loaded.push(script.get_hash());
                    }
                    self.query(cmd)
                }
                other => other,
            };
            out.push(result);
        }
        Ok(out)
    }

    /// Counts the keys matching `pattern` (SCAN, on every master of a cluster).
    pub(crate) fn count_keys(&mut self, pattern: &str) -> std::result::Result<usize, RedisError> {
        match &mut self.raw {
            Raw::Single(con) => scan_count(pattern, |cmd| cmd.query::<Value>(con)),
            Raw::Cluster(con) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(con.as_mut())?;
                let mut total = 0;
                for line in nodes.lines() {
                    let fields: Vec<&str> = line.split(' ').collect();
                    if fields.len() < 3
                        || !fields[2].contains("master")
                        || fields[2].contains("fail")
                    {
                        continue;
                    }
                    let address = fields[1].split('@').next().unwrap_or_default();
                    let Some((host, port)) = address.rsplit_once(':') else {
                        continue;
                    };
                    let Ok(port) = port.parse::<u16>() else {
                        continue;
                    };
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.to_string(),
                        port,
                    });
                    total += scan_count(pattern, |cmd| con.route_command(cmd, route.clone()))?;
                }
                Ok(total)
            }
        }
    }
}

/// Iterates SCAN MATCH `pattern` through `run` and counts the keys.
fn scan_count(
    pattern: &str,
    mut run: impl FnMut(&Cmd) -> std::result::Result<Value, RedisError>,
) -> std::result::Result<usize, RedisError> {
    let mut cursor = "0".to_string();
    let mut total = 0;
    loop {
        let reply = run(redis::cmd("SCAN")
            .arg(&cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000))?;
        let (next, keys): (String, Vec<Value>) = redis::from_redis_value(reply)?;
        total += keys.len();
        if next == "0" {
            return Ok(total);
        }
        cursor = next;
    }
}

/// Time left of a budget that started at `start`.
pub(crate) fn remaining(start: Instant, budget: Duration) -> Duration {
    budget.saturating_sub(start.elapsed())
}
