//! The real binary: `check` (valid, invalid, missing configs and environment
//! overrides), `demo --self-test`, and `run` serving a config end to end.
// Helpers outside #[test] fns unwrap too; `from_upstream` in the shared harness
// trips wrong_self_convention.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

/// Upper bound for any one process run; only reached if something hangs.
const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

/// The binary with a clean slate: no inherited `SESSIONGATE_*` settings,
/// run from the package root.
fn sessiongate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessiongate"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SESSIONGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    cmd
}

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sessiongate.toml")
}

/// A file in the temp dir, unique per test process and call, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(stem: &str, ext: &str, contents: &str) -> TempFile {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "sessiongate-cli-{}-{}-{stem}.{ext}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Kills the child (by its own handle) if the test ends while it runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion, failing the test if it takes longer than the deadline.
fn finish(mut cmd: Command) -> Finished {
    let mut child = Running(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Drain both pipes while waiting, so a chatty child cannot block on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.0.stdout.take().unwrap()));
    let err = drain(Box::new(child.0.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < PROCESS_DEADLINE,
            "{cmd:?} still running after {PROCESS_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

#[test]
fn check_accepts_the_shipped_config_with_a_one_line_summary() {
    let mut cmd = sessiongate();
    cmd.arg("check").arg("--config").arg(shipped_config());
    let out = finish(cmd);
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(lines[0].starts_with("ok:"), "{}", lines[0]);
    assert!(lines[0].contains("2 routes"), "{}", lines[0]);
    assert!(lines[0].contains("embedded emulator"), "{}", lines[0]);
}

#[test]
fn check_names_an_unknown_key() {
    let cfg = TempFile::new(
        "typo",
        "toml",
        "[cache]\nmax_tll = \"1m\"\n\n[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n",
    );
    let mut cmd = sessiongate();
    cmd.arg("check").arg("--config").arg(&cfg.0);
    let out = finish(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("cache.max_tll"), "{}", out.stderr);
}

#[test]
fn check_names_every_invalid_value_at_once() {
    let cfg = TempFile::new(
        "invalid",
        "toml",
        "[cache]\nmax_ttl = \"forever\"\n\n[[routes]]\nprefix = \"/\"\nupstream = \"ftp://127.0.0.1/x\"\n",
    );
    let mut cmd = sessiongate();
    cmd.arg("check").arg("--config").arg(&cfg.0);
    let out = finish(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    for key in ["cache.max_ttl", "routes[0].upstream"] {
        assert!(
            out.stderr.contains(key),
            "{key} missing in:\n{}",
            out.stderr
        );
    }
}

#[test]
fn check_fails_on_a_missing_file() {
    let missing = std::env::temp_dir().join(format!(
        "sessiongate-cli-{}-does-not-exist.toml",
        std::process::id()
    ));
    let mut cmd = sessiongate();
    cmd.arg("check").arg("--config").arg(&missing);
    let out = finish(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn environment_overrides_apply_to_the_child_process() {
    // A typed value that must still be read as a string, and a visible change.
    let mut cmd = sessiongate();
    cmd.arg("check")
        .arg("--config")
        .arg(shipped_config())
        .env("SESSIONGATE_IDP__API_KEY", "12345")
        .env("SESSIONGATE_CACHE__MAX_TTL", "7m");
    let out = finish(cmd);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("max_ttl 7m"), "{}", out.stdout);

    // A bad override is named by its key.
    let mut cmd = sessiongate();
    cmd.arg("check")
        .arg("--config")
        .arg(shipped_config())
        .env("SESSIONGATE_CACHE__MAX_TTL", "forever");
    let out = finish(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("cache.max_ttl"), "{}", out.stderr);

    // SESSIONGATE_CONFIG names the file when --config is absent.
    let mut cmd = sessiongate();
    cmd.current_dir(std::env::temp_dir())
        .arg("check")
        .env("SESSIONGATE_CONFIG", shipped_config());
    let out = finish(cmd);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.starts_with("ok:"), "{}", out.stdout);
}

/// Each provider's example config in `config/`, and a key under `[idp]`
/// that this provider does not read.
const PROVIDER_EXAMPLES: &[(&str, &str)] = &[
    ("sessiongate.toml", "access_token = \"x\""),
    ("enos.toml", "api_key = \"x\""),
    ("sso_identity.toml", "client_id = \"x\""),
    ("ciam.toml", "client_id = \"x\""),
];

fn example_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

#[test]
fn check_accepts_every_providers_example_config() {
    for (file, _) in PROVIDER_EXAMPLES {
        let mut cmd = sessiongate();
        cmd.arg("check").arg("--config").arg(example_config(file));
        let out = finish(cmd);
        assert!(out.status.success(), "{file}: {}", out.stderr);
        assert!(out.stdout.starts_with("ok:"), "{file}: {}", out.stdout);
    }
}

#[test]
fn check_rejects_a_key_the_examples_provider_does_not_read() {
    for (file, foreign) in PROVIDER_EXAMPLES {
        let text = std::fs::read_to_string(example_config(file)).unwrap();
        assert!(text.contains("\n[idp]\n"), "{file} has no [idp] table");
        let wrong = text.replacen("\n[idp]\n", &format!("\n[idp]\n{foreign}\n"), 1);
        let cfg = TempFile::new("foreign-key", "toml", &wrong);
        let mut cmd = sessiongate();
        cmd.arg("check").arg("--config").arg(&cfg.0);
        let out = finish(cmd);
        assert_eq!(out.status.code(), Some(1), "{file}: {}", out.stdout);
        let key = foreign.split(' ').next().unwrap();
        assert!(
            out.stderr.contains(&format!("idp.{key}")),
            "{file}: {}",
            out.stderr
        );
    }
}

/// Every provider but IID, whose demo (with the browser journey) has its own tests.
const OTHER_PROVIDERS: &[&str] = &["enos", "sso_identity", "ciam"];

#[test]
fn demo_self_test_passes_for_every_other_provider() {
    for provider in OTHER_PROVIDERS {
        let mut cmd = sessiongate();
        cmd.args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--self-test",
            "--provider",
            provider,
        ]);
        let out = finish(cmd);
        assert!(
            out.status.success(),
            "{provider}: stdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        assert!(
            out.stdout.contains("demo self-test passed"),
            "{provider}: {}",
            out.stdout
        );
        assert!(!out.stdout.contains("[FAIL]"), "{provider}: {}", out.stdout);
    }
}

#[test]
fn demo_self_test_passes() {
    let mut cmd = sessiongate();
    cmd.args(["demo", "--listen", "127.0.0.1:0", "--self-test"]);
    let out = finish(cmd);
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("demo self-test passed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("curl ")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("[FAIL]"), "{}", out.stdout);
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_the_config_it_is_given() {
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo: SocketAddr = up.local_addr().unwrap();
    tokio::spawn(sessiongate::dev::echo::run(up, std::future::pending()));

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get = |gw: SocketAddr, path: &str| {
        let req = Request::get(format!("http://{gw}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.ok()?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.ok()?.to_bytes();
            Some((parts, body))
        }
    };

    // The free port may be taken by someone else before the child binds it:
    // then the child exits at once and another port is tried.
    let mut attempt = 0;
    let (gw, admin, mut child, log, _cfg, (parts, body)) = 'start: loop {
        attempt += 1;
        let gw = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = TempFile::new(
            "run",
            "toml",
            &format!(
                r#"
[server]
listen = "{gw}"
shutdown_grace = "5s"

[idp]
emulate = true

[admin]
listen = "{admin}"

[log]
level = "info"

[[routes]]
prefix = "/public/"
upstream = "http://{echo}"
auth = "public"

[[routes]]
prefix = "/"
upstream = "http://{echo}"
"#
            ),
        );
        let log = TempFile::new("run", "log", "");
        let log_file = File::create(&log.0).unwrap();
        let mut cmd = sessiongate();
        cmd.arg("--config")
            .arg(&cfg.0)
            .arg("run")
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let mut child = Running(cmd.spawn().unwrap());

        // Wait for the listener: the child needs a moment to start.
        let started = Instant::now();
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                let text = std::fs::read_to_string(&log.0).unwrap_or_default();
                if attempt < 3 && text.contains("in use") {
                    continue 'start;
                }
                panic!("sessiongate exited early ({status}):\n{text}");
            }
            if let Some(answer) = get(gw, "/public/x").await {
                break 'start (gw, admin, child, log, cfg, answer);
            }
            assert!(
                started.elapsed() < PROCESS_DEADLINE,
                "sessiongate never answered on {gw}:\n{}",
                std::fs::read_to_string(&log.0).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let log_text = || std::fs::read_to_string(&log.0).unwrap_or_default();
    assert_eq!(parts.status, 200, "{body:?}");
    assert!(
        parts.headers.contains_key("x-echo"),
        "not from the upstream"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["uri"], "/public/x");

    let (parts, body) = get(gw, "/private").await.expect("gateway answers");
    assert_eq!(parts.status, 401, "{body:?}");
    assert!(!parts.headers.contains_key("x-echo"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errors"][0]["reason"], "no_session");

    // The admin listener of the real binary: probes and metrics that moved.
    let (parts, _) = get(admin, "/healthz").await.expect("admin answers");
    assert_eq!(parts.status, 200);
    let (parts, body) = get(admin, "/readyz").await.expect("admin answers");
    assert_eq!(parts.status, 200, "{body:?}");
    let (_, body) = get(admin, "/metrics").await.expect("admin answers");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(r#"sessiongate_requests_total{route="/public",status="200",mode="proxy"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"sessiongate_auth_outcomes_total{outcome="no_session"} 1"#),
        "{text}"
    );
    // Metrics are never on the public listener.
    let (parts, _) = get(gw, "/metrics").await.expect("gateway answers");
    assert_eq!(parts.status, 401);

    // SIGTERM (sent to this child's pid only) drains and exits cleanly.
    #[cfg(unix)]
    {
        let killed = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < PROCESS_DEADLINE,
                "no exit after SIGTERM:\n{}",
                log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(status.success(), "{status}:\n{}", log_text());

        // The binary writes access lines itself (not through tracing) when
        // the log is not a terminal: the same text, flushed at exit.
        let text = log_text();
        let access: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" sessiongate::access: "))
            .collect();
        assert_eq!(access.len(), 3, "{text}");
        for line in &access {
            let (time, rest) = line
                .split_once("  INFO sessiongate::access: request request_id=\"")
                .unwrap();
            assert!(time.len() == 27 && time.ends_with('Z'), "{line}");
            assert!(
                rest.contains("\" mode=\"proxy\" method=GET path=\""),
                "{line}"
            );
        }
        assert!(
            access[0].contains(r#"path="/public/x" route="/public" status=200 latency_us="#),
            "{}",
            access[0]
        );
        assert!(
            access[1].contains(r#"path="/private" route="/" status=401 latency_us="#),
            "{}",
            access[1]
        );
        assert!(
            access[1].contains(r#" reason="no_session""#),
            "{}",
            access[1]
        );
    }
}

/// `run` with `listen_key` set to an address another socket holds: the binary
/// exits non-zero and says which key and which address.
fn run_fails_to_bind(listen_key: &str) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    // The other listener gets port 0, so only the taken address can fail.
    let (public, admin) = match listen_key {
        "server.listen" => (addr.to_string(), "127.0.0.1:0".to_string()),
        _ => ("127.0.0.1:0".to_string(), addr.to_string()),
    };
    let cfg = TempFile::new(
        "bind",
        "toml",
        &format!(
            "[server]\nlisten = \"{public}\"\n\n[idp]\nemulate = true\n\n[admin]\nlisten = \"{admin}\"\n\n\
             [log]\nlevel = \"warn\"\n\n[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n"
        ),
    );
    let mut cmd = sessiongate();
    cmd.arg("--config").arg(&cfg.0).arg("run");
    let out = finish(cmd);
    drop(taken);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let want = format!("error: {listen_key} {addr}: ");
    assert!(
        out.stderr.contains(&want),
        "{want:?} missing in:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.to_lowercase().contains("address already in use"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_names_the_admin_listen_key_and_address_it_cannot_bind() {
    run_fails_to_bind("admin.listen");
}

#[test]
fn run_names_the_server_listen_key_and_address_it_cannot_bind() {
    run_fails_to_bind("server.listen");
}

#[test]
fn check_rejects_roles_under_a_provider_that_reports_none() {
    let cfg = TempFile::new(
        "enos-roles",
        "toml",
        "[idp]\nprovider = \"enos\"\n\n[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n\n\
         [[routes]]\nprefix = \"/admin/\"\nupstream = \"http://127.0.0.1:3000\"\npermissions = [\"P1\"]\n",
    );
    let mut cmd = sessiongate();
    cmd.arg("check").arg("--config").arg(&cfg.0);
    let out = finish(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(
        out.stderr
            .contains(r#"routes[1].permissions: provider "enos" reports no permissions"#),
        "{}",
        out.stderr
    );
}

/// One HTTP/1.1 exchange over a fresh connection; `None` while nothing listens.
fn post(addr: SocketAddr, path: &str, headers: &str, body: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Starts `sessiongate emulator` with `args` on a free port, waits until it
/// listens and creates a session for profile 518 over HTTP. The emulator
/// runs as long as the returned guard lives.
fn standalone_emulator_with_a_session(args: &[&str]) -> (Running, SocketAddr, String) {
    // The free port may be taken before the child binds it: the child then
    // exits at once and another port is tried.
    let (child, addr, created) = 'start: {
        for _attempt in 1..=5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut cmd = sessiongate();
            cmd.arg("emulator")
                .args(args)
                .arg("--listen")
                .arg(addr.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = Running(cmd.spawn().unwrap());
            let started = Instant::now();
            loop {
                if child.0.try_wait().unwrap().is_some() {
                    break;
                }
                let answer = post(addr, "/__emulator/sessions", "", r#"{"profileId": "518"}"#);
                if let Some(answer) = answer {
                    break 'start (child, addr, answer);
                }
                assert!(
                    started.elapsed() < PROCESS_DEADLINE,
                    "emulator never listened"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("the emulator exited on five free ports in a row");
    };
    let json: serde_json::Value =
        serde_json::from_str(created.split_once("\r\n\r\n").unwrap().1).unwrap();
    let token = json["token"].as_str().unwrap().to_owned();
    (child, addr, token)
}

#[test]
fn the_standalone_emulator_speaks_enos_with_provider_enos() {
    let (_emulator, addr, token) = standalone_emulator_with_a_session(&["--provider", "enos"]);
    let info = post(
        addr,
        "/enos-iam-service/v2.0/session/info",
        &format!("authorization: Bearer {token}\r\ncontent-type: application/json\r\n"),
        "{}",
    )
    .unwrap();
    assert!(info.starts_with("HTTP/1.1 200"), "{info}");
    assert!(info.contains(r#""id":"u518""#), "{info}");
    let unknown = post(
        addr,
        "/enos-iam-service/v2.0/session/info",
        "authorization: Bearer nope\r\n",
        "{}",
    )
    .unwrap();
    assert!(unknown.starts_with("HTTP/1.1 401"), "{unknown}");
    assert!(unknown.contains("30401"), "{unknown}");
}

#[test]
fn the_standalone_emulator_speaks_sso_identity_with_provider_sso_identity() {
    let (_emulator, addr, token) =
        standalone_emulator_with_a_session(&["--provider", "sso_identity"]);
    let get = |token: &str| {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /sso/sessions/identities/{token}.json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let read = get(&token);
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(read.contains(r#""user_token":"u518""#), "{read}");
    assert!(read.contains(r#""flag":"success""#), "{read}");
    let unknown = get("nope");
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert!(unknown.contains(r#""flag":"error""#), "{unknown}");
}

#[test]
fn the_standalone_emulator_speaks_ciam_with_provider_ciam() {
    let (_emulator, addr, token) =
        standalone_emulator_with_a_session(&["--provider", "ciam", "--api-key", "at-1"]);
    let body = format!(
        r#"{{"session_token":"{token}","operating_sys_version":"unknown","device_ip":"127.0.0.1","device_fingerprint":"f"}}"#
    );
    let path = "/api/v2/tenant/sso/session-token/sso-ticket";
    let wrong = post(addr, path, "authorization: Bearer nope\r\n", &body).unwrap();
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let issued = post(addr, path, "authorization: Bearer at-1\r\n", &body).unwrap();
    assert!(issued.starts_with("HTTP/1.1 200"), "{issued}");
    let json: serde_json::Value =
        serde_json::from_str(issued.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert!(json["sso_ticket"]
        .as_str()
        .unwrap()
        .starts_with("ssoTicket-"));
    assert!(json["expire"].as_f64().unwrap() > 0.0);
}
