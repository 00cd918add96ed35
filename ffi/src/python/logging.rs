//! The core's log records (the Redis store's breaker and failure warnings), forwarded to Python's
//! `logging` under the logger `flux.redis`, so they reach whatever handlers the application has.
//!
//! Only records from flux's own crates are forwarded (the `redis` crate's are not). They are
//! rare by design, one line per breaker state change, so taking the GIL for each is cheap.
//! No flux lock is held while one is logged.

use log::{Level, LevelFilter, Log, Metadata, Record};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The Python logger the records go to.
pub const LOGGER_NAME: &str = "flux.redis";

struct PythonLogger;

static LOGGER: PythonLogger = PythonLogger;

fn python_level(level: Level) -> u8 {
    match level {
        Level::Error => 40,
        Level::Warn => 30,
        Level::Info => 20,
        Level::Debug => 10,
        Level::Trace => 5,
    }
}

impl Log for PythonLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("flux")
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let level = python_level(record.level());
        // Not during interpreter shutdown: the record is dropped then.
        Python::try_attach(|py| {
            static PY_LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            let logger = PY_LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                Ok(py
                    .import("logging")?
                    .call_method1("getLogger", (LOGGER_NAME,))?
                    .unbind())
            });
            if let Ok(logger) = logger {
                if let Err(err) = logger.bind(py).call_method1("log", (level, message)) {
                    err.write_unraisable(py, None);
                }
            }
        });
    }

    fn flush(&self) {}
}

/// Installs the forwarder as the process's `log` logger (once; a logger installed earlier by
/// something else in the process is left in place).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
}
