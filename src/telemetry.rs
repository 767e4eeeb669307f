//! Logging setup: tracing with JSON or human output; `RUST_LOG` wins over config.
//!
//! Lines go through a bounded queue to a writer thread that batches them
//! into large writes, so a request never waits on stderr (a synchronous
//! write per access-log line cost about 6 µs per request). When the queue is
//! full a line is dropped and counted ([`dropped_lines`]), never waited for.

use std::io::BufWriter;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines the queue holds before it drops: several seconds of access log at
/// full speed, so only a stalled stderr loses lines.
pub const QUEUE_LINES: usize = 256 * 1024;
/// Bytes the writer thread gathers into one write.
const WRITE_BUFFER: usize = 64 * 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the writer thread; dropping it writes out what is still queued.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat, level: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("sessiongate-log")
        .finish(BufWriter::with_capacity(WRITE_BUFFER, std::io::stderr()));
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    match installed {
        Ok(()) => {
            let _ = DROPPED.set(dropped);
            LogGuard {
                _writer: Some(guard),
            }
        }
        Err(_) => LogGuard { _writer: None },
    }
}

/// Log lines dropped so far because the queue was full.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}
