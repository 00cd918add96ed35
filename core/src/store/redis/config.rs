//! `RedisConfig`: where Redis is and how to talk to it (flux.toml's `[redis]` section, plus the
//! failure policy from `[flux]`), and its translation into the `redis` crate's connection info.

use crate::{Error, Result};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use std::time::Duration;

/// How to reach Redis and what to do when it fails.
///
/// Mirrors flux.toml's `[redis]` section (`host`, `port`, `url`, `pool_size`, `timeout_ms`,
/// `cluster`, `nodes`, `password`, `db`, `key_prefix`) and takes the failure policy
/// (`fail_silently`) from `[flux]`. `Default` gives flux.toml's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Host name or address (used when `url` is None). Default `127.0.0.1`.
    pub host: String,
    /// TCP port (used when `url` is None). Default 6379.
    pub port: u16,
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS, feature `redis-tls`),
    /// `unix:///path/to/redis.sock[?db=N]` or `redis+unix://…`. Overrides `host` and `port`.
    pub url: Option<String>,
    /// Connections kept per process (the pool's size). Default 5.
    pub pool_size: u32,
    /// Connect timeout and command timeout, in milliseconds: no hit waits longer for Redis
    /// (waiting for a pooled connection included). Default 200.
    pub timeout_ms: u64,
    /// Talk to a Redis Cluster, seeded by `nodes` or else by `url`/`host:port`.
    pub cluster: bool,
    /// Cluster seed nodes, `host:port` or URLs; a non-empty list implies `cluster`.
    pub nodes: Vec<String>,
    /// ACL user name (None: the default user, or the URL's).
    pub username: Option<String>,
    /// Password (None: no password, or the URL's).
    pub password: Option<String>,
    /// Database number (None: 0, or the URL's). Must be 0 on a cluster.
    pub db: Option<i64>,
    /// Prepended to every key. Default `flux:`.
    pub key_prefix: String,
    /// When Redis fails: true lets the hit pass (fail open, flagged in
    /// [`super::Outcome::source`]), false returns [`Error::Store`] (fail closed). Default true.
    pub fail_silently: bool,
    /// Consecutive connection failures (or timeouts) that open the circuit breaker. Default 3.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before one hit probes Redis again, in milliseconds.
    /// Default 1000.
    pub breaker_cooldown_ms: u64,
    /// Keys remembered as denied by Redis (the local deny cache); 0 turns it off.
    /// Default 4096.
    pub deny_cache_size: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: "127.0.0.1".into(),
            port: 6379,
            url: None,
            pool_size: 5,
            timeout_ms: 200,
            cluster: false,
            nodes: Vec::new(),
            username: None,
            password: None,
            db: None,
            key_prefix: "flux:".into(),
            fail_silently: true,
            breaker_threshold: 3,
            breaker_cooldown_ms: 1000,
            deny_cache_size: 4096,
        }
    }
}

impl RedisConfig {
    /// The default configuration with `url`.
    pub fn from_url(url: impl Into<String>) -> Self {
        RedisConfig {
            url: Some(url.into()),
            ..RedisConfig::default()
        }
    }

    /// The connect and command timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// True when this configuration talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster || !self.nodes.is_empty()
    }

    /// Checks the numbers and turns the addresses into connection infos: one for a single
    /// server, the seed nodes for a cluster.
    pub(crate) fn connection_infos(&self) -> Result<Vec<ConnectionInfo>> {
        let invalid = |reason: String| Err(Error::InvalidArgument(reason));
        if self.pool_size == 0 {
            return invalid("redis pool_size must be at least 1, got 0".into());
        }
        if self.timeout_ms == 0 {
            return invalid("redis timeout_ms must be at least 1, got 0".into());
        }
        if self.key_prefix.contains(['{', '}']) {
            return invalid(format!(
                "redis key_prefix {:?} contains a brace: braces delimit the identity in a key",
                self.key_prefix
            ));
        }
        if self.breaker_threshold == 0 {
            return invalid("redis breaker_threshold must be at least 1, got 0".into());
        }
        if self.is_cluster() && self.db.is_some_and(|db| db != 0) {
            return invalid(format!(
                "redis db must be 0 on a cluster (Redis Cluster has one database), got {}",
                self.db.unwrap_or(0)
            ));
        }
        let addresses: Vec<String> = if !self.nodes.is_empty() {
            self.nodes.clone()
        } else if let Some(url) = &self.url {
            vec![url.clone()]
        } else {
            vec![format!(
                "redis://{}:{}",
                bracket_ipv6(&self.host),
                self.port
            )]
        };
        addresses
            .iter()
            .map(|address| self.connection_info(address))
            .collect()
    }

    fn connection_info(&self, address: &str) -> Result<ConnectionInfo> {
        let with_scheme = if address.contains("://") {
            address.to_string()
        } else {
            // A bare `host:port` (cluster node lists are usually written so).
            format!("redis://{address}")
        };
        let scheme = with_scheme.split("://").next().unwrap_or_default();
        if !matches!(scheme, "redis" | "rediss" | "unix" | "redis+unix") {
            return Err(Error::InvalidArgument(format!(
                "redis url {} has scheme {scheme:?}: expected redis://, rediss://, unix:// or \
                 redis+unix://",
                redact(address)
            )));
        }
        if scheme == "rediss" && !cfg!(feature = "redis-tls") {
            return Err(Error::InvalidArgument(format!(
                "redis url {} asks for TLS (rediss://), but this build of flux has no TLS \
                 support: build flux-core with the `redis-tls` feature",
                redact(address)
            )));
        }
        let info = with_scheme.as_str().into_connection_info().map_err(|err| {
            Error::InvalidArgument(format!("invalid redis url {}: {err}", redact(address)))
        })?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        if let Some(db) = self.db {
            settings = settings.set_db(db);
        }
        // No CLIENT SETINFO on connect: it is one more round trip per new connection, and the
        // client library reads both of its replies even after the first timed out, so a
        // frozen server held a connect for twice its budget.
        settings = settings.set_skip_set_lib_name();
        let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
        Ok(info.set_redis_settings(settings).set_tcp_settings(tcp))
    }

    /// A readable name for the target, without credentials (for messages and logs).
    pub fn describe(&self) -> String {
        if !self.nodes.is_empty() {
            let nodes: Vec<String> = self.nodes.iter().map(|n| redact(n)).collect();
            return format!("redis cluster {}", nodes.join(","));
        }
        let target = match &self.url {
            Some(url) => redact(url),
            None => format!("{}:{}", bracket_ipv6(&self.host), self.port),
        };
        if self.cluster {
            format!("redis cluster {target}")
        } else {
            format!("redis {target}")
        }
    }
}

/// A short display form of a connection info's address.
pub(crate) fn address_of(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{}:{port}", bracket_ipv6(host))
        }
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => other.to_string(),
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `address` with any password replaced by `***`.
pub(crate) fn redact(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let credentials = &rest[..at];
            let user = credentials.split(':').next().unwrap_or_default();
            let shown = if credentials.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{shown}{}", &rest[at..])
        }
        None => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_mirror_flux_toml() {
        let config = RedisConfig::default();
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 6379);
        assert_eq!(config.pool_size, 5);
        assert_eq!(config.timeout_ms, 200);
        assert_eq!(config.key_prefix, "flux:");
        assert!(config.fail_silently);
        assert!(!config.is_cluster());
    }

    #[test]
    fn url_password_and_db_are_applied_and_fields_override_them() {
        let config = RedisConfig::from_url("redis://:secret@localhost:6380/3");
        let info = &config.connection_infos().unwrap()[0];
        assert_eq!(info.redis_settings().password(), Some("secret"));
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(address_of(info), "localhost:6380");
        let config = RedisConfig {
            password: Some("other".into()),
            db: Some(5),
            ..config
        };
        let info = &config.connection_infos().unwrap()[0];
        assert_eq!(info.redis_settings().password(), Some("other"));
        assert_eq!(info.redis_settings().db(), 5);
        assert!(info.tcp_settings().nodelay());
    }

    #[test]
    fn unix_urls_are_accepted() {
        let config = RedisConfig::from_url("unix:///tmp/redis.sock");
        let info = &config.connection_infos().unwrap()[0];
        assert_eq!(address_of(info), "/tmp/redis.sock");
    }

    #[test]
    fn bad_values_are_named() {
        let err = RedisConfig::from_url("http://localhost")
            .connection_infos()
            .unwrap_err();
        assert!(err.to_string().contains("scheme \"http\""), "{err}");
        let err = RedisConfig {
            pool_size: 0,
            ..RedisConfig::default()
        }
        .connection_infos()
        .unwrap_err();
        assert!(err.to_string().contains("pool_size"), "{err}");
        let err = RedisConfig {
            nodes: vec!["127.0.0.1:7000".into()],
            db: Some(2),
            ..RedisConfig::default()
        }
        .connection_infos()
        .unwrap_err();
        assert!(err.to_string().contains("db must be 0"), "{err}");
    }

    #[cfg(not(feature = "redis-tls"))]
    #[test]
    fn tls_without_the_feature_is_a_clear_error() {
        let err = RedisConfig::from_url("rediss://:pw@example.invalid:6380")
            .connection_infos()
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("redis-tls"), "{message}");
        assert!(!message.contains("pw@"), "password leaked: {message}");
    }

    #[cfg(feature = "redis-tls")]
    #[test]
    fn tls_urls_are_accepted_with_the_feature() {
        let infos = RedisConfig::from_url("rediss://:pw@localhost:6380/1")
            .connection_infos()
            .unwrap();
        assert!(matches!(infos[0].addr(), ConnectionAddr::TcpTls { .. }));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://:pw@host:1/0"), "redis://:***@host:1/0");
        assert_eq!(redact("redis://user:pw@host"), "redis://user:***@host");
        assert_eq!(redact("redis://host:1"), "redis://host:1");
        assert_eq!(redact("host:1"), "host:1");
    }

    #[test]
    fn cluster_nodes_take_bare_host_port() {
        let config = RedisConfig {
            nodes: vec!["127.0.0.1:7000".into(), "redis://127.0.0.1:7001".into()],
            ..RedisConfig::default()
        };
        let infos = config.connection_infos().unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(address_of(&infos[1]), "127.0.0.1:7001");
        assert!(config.describe().starts_with("redis cluster"));
    }
}
