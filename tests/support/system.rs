//! System tools some tests drive (chromedriver, redis-server, nginx and
//! caddy). Without the tool a test is skipped, and says so on the
//! console; with `SESSIONGATE_REQUIRE_SYSTEM_TESTS=1` (CI, `.ci/run`) the skip
//! is a failure instead, so a missing package cannot pass silently.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Set to `1` to fail, not skip, a test whose system tool is missing.
pub const REQUIRE_ENV: &str = "SESSIONGATE_REQUIRE_SYSTEM_TESTS";

/// The Debian packages that provide `tool`, for the hint in the skip line.
fn debian_packages(tool: &str) -> &'static str {
    match tool {
        "chromedriver" | "chromium" => "chromium chromium-driver",
        "redis-server" => "redis-server",
        "nginx" => "nginx",
        "caddy" => "caddy",
        _ => "the package that provides it",
    }
}

/// Whether a missing tool fails the test (read, never set, by tests).
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// The executable `tool` on `PATH`. When it is missing: `None` after printing
/// `SKIPPED <test>: <tool> not installed (apt-get install ...)`, or a panic
/// with the same line when [`REQUIRE_ENV`] is `1`.
pub fn require_tool(tool: &str) -> Option<PathBuf> {
    if let Some(path) = find_executable(tool) {
        return Some(path);
    }
    // libtest names each test's thread after the test.
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    let line = format!(
        "SKIPPED {test}: {tool} not installed (apt-get install {})",
        debian_packages(tool)
    );
    if required() {
        panic!("{line}; {REQUIRE_ENV}=1 makes this a failure");
    }
    // Straight to the process' stderr: libtest captures print!/eprint! of
    // passing tests, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "{line}");
    None
}

/// The first executable file named `tool` in `PATH`.
fn find_executable(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A loopback port that was free a moment ago, for a child process to bind;
/// it may be taken meanwhile, so callers retry on another when the child exits.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh, empty directory `sessiongate-{name}-{pid}-{n}` under the system's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sessiongate-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
