//! Logging setup: tracing with JSON or human output; `RUST_LOG` wins over config.
//!
//! Lines are appended to a bounded in-memory buffer that a writer thread
//! hands to stderr every [`FLUSH_EVERY`], as nginx's `access_log ...
//! buffer= flush=` does. A request never waits on stderr, and never wakes
//! another thread: a synchronous write per access-log line cost about 6 µs
//! per request, and a channel to a writer thread (tracing-appender) cost
//! more, one thread wakeup per line. When the buffer is full because stderr
//! stalls, a line is dropped and counted ([`dropped_lines`]), never waited for.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How often buffered lines reach stderr: the longest a line waits.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes held before lines are dropped: seconds of access log at full speed,
/// so only a stalled stderr loses lines.
pub const BUFFER_BYTES: usize = 8 * 1024 * 1024;

static DROPPED: OnceLock<Arc<Shared>> = OnceLock::new();

/// The log buffer, when access lines may skip tracing (see [`Access::write`]):
/// set by [`init`] for the human format without colour.
static ACCESS: OnceLock<Arc<Shared>> = OnceLock::new();

/// Keeps the writer thread; dropping it writes out what is still buffered.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    writer: Option<(Arc<Shared>, JoinHandle<()>)>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((shared, thread)) = self.writer.take() {
            shared.stop();
            let _ = thread.join();
        }
    }
}

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat, level: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let shared = Arc::new(Shared::new(BUFFER_BYTES));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(Clock)
        // Colour codes only for a person at a terminal: in a log file they
        // are noise, and writing them cost about 4% of a request's instructions.
        .with_ansi(ansi)
        .with_writer(LineSink(Arc::clone(&shared)));
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().fmt_fields(Fields).try_init(),
    };
    if installed.is_err() {
        return LogGuard { writer: None };
    }
    if matches!(format, LogFormat::Pretty) && !ansi {
        let _ = ACCESS.set(Arc::clone(&shared));
    }
    let _ = DROPPED.set(Arc::clone(&shared));
    let flusher = Arc::clone(&shared);
    match std::thread::Builder::new()
        .name("sessiongate-log".into())
        .spawn(move || flusher.run(&mut std::io::stderr()))
    {
        Ok(thread) => LogGuard {
            writer: Some((shared, thread)),
        },
        Err(e) => {
            // Without the thread nothing would ever reach stderr.
            eprintln!("cannot start the log writer thread: {e}");
            LogGuard { writer: None }
        }
    }
}

/// Log lines dropped so far because the buffer was full.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

/// The buffer the request path appends to and the writer thread drains.
struct Shared {
    buf: Mutex<Vec<u8>>,
    capacity: usize,
    dropped: AtomicU64,
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn new(capacity: usize) -> Self {
        Self {
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            capacity,
            dropped: AtomicU64::new(0),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    /// Appends one whole line, or drops and counts it when the buffer is full.
    fn push(&self, line: &[u8]) {
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.len() + line.len() > self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            buf.extend_from_slice(line);
        }
    }

    /// The writer thread: every [`FLUSH_EVERY`] (and once more on stop),
    /// swaps the buffer out under the lock and writes it outside it.
    fn run(&self, out: &mut impl Write) {
        let mut spare = Vec::with_capacity(64 * 1024);
        loop {
            let stop = {
                let stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
                let (stopping, _) = self
                    .wake
                    .wait_timeout_while(stopping, FLUSH_EVERY, |s| !*s)
                    .unwrap_or_else(PoisonError::into_inner);
                *stopping
            };
            {
                let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
                std::mem::swap(&mut *buf, &mut spare);
            }
            if !spare.is_empty() {
                // A failing stderr has nowhere to report to; the lines are lost.
                let _ = out.write_all(&spare).and_then(|()| out.flush());
                spare.clear();
            }
            if stop {
                return;
            }
        }
    }

    fn stop(&self) {
        *self.stopping.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

/// Target of the access log's lines (`RUST_LOG=sessiongate::access=off` silences it).
pub const ACCESS_TARGET: &str = "sessiongate::access";

/// One answered request's access-log line; `None` fields are left out, as
/// tracing leaves them out.
pub struct Access<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// `proxy` or `forward_auth`.
    pub mode: &'a str,
    /// Written as is (it is a token).
    pub method: &'a str,
    /// The path only: query values may carry tokens.
    pub path: &'a str,
    /// The matched route's prefix.
    pub route: Option<&'a str>,
    /// The status sent.
    pub status: u16,
    /// Time to the response head.
    pub latency_us: u64,
    /// How the session cache answered.
    pub cache: Option<&'a str>,
    /// The error table's reason.
    pub reason: Option<&'a str>,
    /// More about the reason.
    pub detail: Option<&'a str>,
    /// The permission a refusal was missing.
    pub missing: Option<&'a str>,
    /// The user, when authenticated.
    pub profile_id: Option<&'a str>,
    /// The session's fingerprint, written as is (hex digits).
    pub session: Option<&'a str>,
}

impl Access<'_> {
    /// Logs the line at INFO on [`ACCESS_TARGET`]. In the human format
    /// without colour the line goes straight into the log buffer, byte for
    /// byte what tracing would write: tracing's dispatch and field visiting
    /// were 12% of a proxied request's instructions under callgrind. JSON,
    /// a terminal, and subscribers installed by tests get a tracing event.
    pub fn write(&self) {
        if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
            return;
        }
        let Some(shared) = ACCESS.get() else {
            tracing::info!(
                target: ACCESS_TARGET,
                request_id = self.request_id,
                mode = self.mode,
                method = %self.method,
                path = self.path,
                route = self.route,
                status = self.status,
                latency_us = self.latency_us,
                cache = self.cache,
                reason = self.reason,
                detail = self.detail,
                missing = self.missing,
                profile_id = self.profile_id,
                session = self.session.map(tracing::field::display),
                "request"
            );
            return;
        };
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            if write_time(&mut *line)
                .and_then(|()| self.write_human(&mut *line))
                .is_ok()
            {
                shared.push(line.as_bytes());
            }
        });
    }

    /// The line after its timestamp, as tracing's compact format writes it.
    fn write_human(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        out.write_str("  INFO sessiongate::access: request")?;
        write_field(out, "request_id", Some(self.request_id), true)?;
        write_field(out, "mode", Some(self.mode), true)?;
        write_field(out, "method", Some(self.method), false)?;
        write_field(out, "path", Some(self.path), true)?;
        write_field(out, "route", self.route, true)?;
        out.write_str(" status=")?;
        write_u64(out, u64::from(self.status))?;
        out.write_str(" latency_us=")?;
        write_u64(out, self.latency_us)?;
        for (name, value) in [
            ("cache", self.cache),
            ("reason", self.reason),
            ("detail", self.detail),
            ("missing", self.missing),
            ("profile_id", self.profile_id),
        ] {
            write_field(out, name, value, true)?;
        }
        write_field(out, "session", self.session, false)?;
        out.write_char('\n')
    }
}

/// ` name=value` (quoted as [`write_quoted`] does), or nothing for `None`.
fn write_field(
    out: &mut impl std::fmt::Write,
    name: &str,
    value: Option<&str>,
    quoted: bool,
) -> std::fmt::Result {
    let Some(value) = value else {
        return Ok(());
    };
    out.write_char(' ')?;
    out.write_str(name)?;
    out.write_char('=')?;
    if quoted {
        write_quoted(out, value)
    } else {
        out.write_str(value)
    }
}

/// A string field's value as tracing writes it (`{:?}`), without the
/// per-character escaping when nothing needs escaping.
fn write_quoted(out: &mut impl std::fmt::Write, value: &str) -> std::fmt::Result {
    // Every byte looked at, no early exit: the loop vectorizes, and the
    // values (ids, paths, prefixes) are short and nearly always plain.
    let plain = value.bytes().fold(true, |plain, b| {
        plain & (b' '..=b'~').contains(&b) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.write_char('"')?;
        out.write_str(value)?;
        out.write_char('"')
    } else {
        write!(out, "{value:?}")
    }
}

/// Decimal digits, without `core::fmt`.
fn write_u64(out: &mut impl std::fmt::Write, value: u64) -> std::fmt::Result {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.write_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"))
}

/// The human format's fields, `name=value` separated by spaces, exactly as
/// tracing's default writes them without colour, but strings and integers
/// go straight into the line: through `write!` each field cost about a
/// thousand instructions, three quarters of an access-log line.
struct Fields;

impl<'writer> FormatFields<'writer> for Fields {
    fn format_fields<R: RecordFields>(
        &self,
        writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = FieldWriter {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes one event's (or span's) fields for [`Fields`].
struct FieldWriter<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: std::fmt::Result,
}

impl FieldWriter<'_> {
    /// The separator, then `name=` (nothing before the message).
    fn start(&mut self, field: &Field) -> std::fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        match field.name() {
            "message" => Ok(()),
            name => {
                self.writer
                    .write_str(name.strip_prefix("r#").unwrap_or(name))?;
                self.writer.write_char('=')
            }
        }
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = self.start(field).and_then(|()| {
            if field.name() == "message" {
                self.writer.write_str(value)
            } else {
                write_quoted(&mut self.writer, value)
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_err() {
            return;
        }
        self.result = self
            .start(field)
            .and_then(|()| write_u64(&mut self.writer, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = self
            .start(field)
            .and_then(|()| write!(self.writer, "{value:?}"));
    }
}

/// RFC 3339 UTC timestamps with microseconds, as tracing's own `SystemTime`
/// writes them, but with the date and time of day formatted once per second
/// per thread: formatting the whole date per access-log line cost more than
/// the rest of the line's fields.
struct Clock;

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        write_time(w)
    }
}

/// Now, as [`Clock`] shows it.
fn write_time(w: &mut impl std::fmt::Write) -> std::fmt::Result {
    thread_local! {
        /// The second last formatted, and its text up to the seconds.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != now.as_secs() {
            second.0 = now.as_secs();
            second.1 = up_to_seconds(now.as_secs());
        }
        w.write_str(&second.1)
    })?;
    let fraction = fraction(now.subsec_micros());
    w.write_str(std::str::from_utf8(&fraction).unwrap_or(".000000Z"))
}

/// `2026-12-01T04:36:38` for a Unix time in seconds.
fn up_to_seconds(secs: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// `.166649Z` for 166649 µs.
fn fraction(micros: u32) -> [u8; 8] {
    let mut out = *b".000000Z";
    let mut rest = micros;
    for digit in out[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out
}

/// What the fmt layer writes each formatted event into (one `write` per event).
struct LineSink(Arc<Shared>);

impl Write for LineSink {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineSink {
    type Writer = LineSink;

    fn make_writer(&'a self) -> Self::Writer {
        LineSink(Arc::clone(&self.0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A test writer: what the formatter wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Emits every kind of field the gateway logs.
    fn emit() {
        let addr = std::net::Ipv4Addr::LOCALHOST;
        tracing::info!(
            target: "sessiongate::access",
            request_id = "abc-123",
            quoted = "say \"hi\"\n",
            unicode = "caf\u{e9} \u{200b}",
            empty = "",
            method = %addr,
            status = 200u16,
            latency_us = 18_446_744_073_709_551_615u64,
            zero = 0u64,
            signed = -5i64,
            flag = true,
            float = 1.5f64,
            missing = Option::<&str>::None,
            present = Some("x"),
            r#type = "raw",
            "request"
        );
        tracing::warn!(error = "x", "message with {} args", 2);
    }

    #[test]
    fn fields_are_written_as_tracing_writes_them() {
        let theirs = Captured::default();
        let ours = Captured::default();
        let default = tracing_subscriber::fmt()
            .compact()
            .without_time()
            .with_ansi(false)
            .with_writer(theirs.clone())
            .finish();
        let fast = tracing_subscriber::fmt()
            .compact()
            .without_time()
            .with_ansi(false)
            .fmt_fields(Fields)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(default, emit);
        tracing::subscriber::with_default(fast, emit);
        let theirs = String::from_utf8(theirs.0.lock().unwrap().clone()).unwrap();
        let ours = String::from_utf8(ours.0.lock().unwrap().clone()).unwrap();
        assert!(
            theirs.contains("latency_us=18446744073709551615"),
            "{theirs}"
        );
        assert_eq!(ours, theirs);
    }

    #[test]
    fn access_lines_are_written_as_tracing_writes_them() {
        let lines = [
            Access {
                request_id: "abc-123",
                mode: "proxy",
                method: "GET",
                path: "/app/x",
                route: Some("/app"),
                status: 200,
                latency_us: 18_446_744_073_709_551_615,
                cache: Some("hit"),
                reason: None,
                detail: None,
                missing: None,
                profile_id: Some("518"),
                session: Some("0a1b2c3d"),
            },
            Access {
                request_id: "r",
                mode: "forward_auth",
                method: "POST",
                path: "/caf\u{e9}/\"q\"",
                route: None,
                status: 403,
                latency_us: 0,
                cache: None,
                reason: Some("missing_permission"),
                detail: Some("line\nbreak \\ back"),
                missing: Some("P1"),
                profile_id: None,
                session: None,
            },
        ];
        for line in &lines {
            let theirs = Captured::default();
            let subscriber = tracing_subscriber::fmt()
                .compact()
                .without_time()
                .with_ansi(false)
                .with_writer(theirs.clone())
                .finish();
            // No `init` in unit tests: `write` takes the tracing path.
            tracing::subscriber::with_default(subscriber, || line.write());
            let theirs = String::from_utf8(theirs.0.lock().unwrap().clone()).unwrap();
            let mut ours = String::new();
            line.write_human(&mut ours).unwrap();
            // Ours starts with the space that follows the timestamp.
            assert_eq!(ours, format!(" {theirs}"));
        }
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        assert_eq!(up_to_seconds(1_796_099_798), "2026-12-01T04:36:38");
        assert_eq!(&fraction(166_649), b".166649Z");
        assert_eq!(&fraction(7), b".000007Z");
    }

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_waiting() {
        let shared = Shared::new(10);
        shared.push(b"12345\n");
        shared.push(b"67890\n");
        shared.push(b"abc\n");
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(&*shared.buf.lock().unwrap(), b"12345\nabc\n");
    }

    #[test]
    fn stopping_writes_out_everything_buffered() {
        let shared = Arc::new(Shared::new(1024));
        let out = Arc::new(Mutex::new(Vec::new()));
        struct Out(Arc<Mutex<Vec<u8>>>);
        impl Write for Out {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (s, o) = (Arc::clone(&shared), Arc::clone(&out));
        let thread = std::thread::spawn(move || s.run(&mut Out(o)));
        for i in 0..100 {
            LineSink(Arc::clone(&shared))
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        shared.stop();
        thread.join().unwrap();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 100);
        assert!(text.ends_with("line 99\n"));
    }
}
