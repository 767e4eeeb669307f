//! Two `sessiongate run` processes, as two sidecars would run, on one real
//! Redis: a session one process resolved is served by the other from Redis,
//! a logout through one is refused by the other within a second, and an
//! admin `POST /revoke` on one ends a session only the other has seen.
//! (The other `cluster_*` tests run the same code as in-process gateways.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sessiongate::dev::emulator;
use support::cluster::{POLL_STEP, REVOCATION_DEADLINE, SECRET};
use support::redis::RedisServer;
use support::system::{free_port, temp_dir};
use support::{raw_exchange, raw_status, users, Harness, API_KEY};

/// How long a process may take to start listening on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A gateway process, killed when dropped.
struct Replica {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    dir: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `/readyz` answers 200 (a refused connection is "not yet").
async fn ready(admin: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(admin).await else {
        return false;
    };
    let probe = b"GET /readyz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";
    let mut out = Vec::new();
    s.write_all(probe).await.is_ok()
        && s.read_to_end(&mut out).await.is_ok()
        && out.starts_with(b"HTTP/1.1 200")
}

impl Replica {
    /// Starts `sessiongate run` against the harness's emulator and echo
    /// upstream, sharing `redis`; returns once `/readyz` says ready.
    async fn start(name: &str, h: &Harness, redis: &RedisServer) -> Replica {
        // A port that was free a moment ago can be taken before the child
        // binds it: the child then exits and other ports are tried.
        for _attempt in 1..=5 {
            let dir = temp_dir(&format!("replica-{name}"));
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config = format!(
                r#"
[server]
listen = "{addr}"
[idp]
base_url = "http://{idp}{base}"
api_key = "{API_KEY}"
timeout = "5s"
[admin]
listen = "{admin}"
[log]
level = "warn"
access = false
[cluster]
redis_url = "{redis}"
command_timeout = "2s"
[[routes]]
prefix = "/"
upstream = "http://{echo}"
"#,
                idp = h.idp,
                base = emulator::BASE_PATH,
                echo = h.echo,
                redis = redis.url(),
            );
            let path = dir.join("sessiongate.toml");
            std::fs::write(&path, config).unwrap();
            let log = std::fs::File::create(dir.join("output.log")).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_sessiongate"))
                .arg("--config")
                .arg(&path)
                .arg("run")
                // The secret comes from the environment, as from a Kubernetes Secret.
                .env("SESSIONGATE_CLUSTER__SECRET", SECRET)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let mut replica = Replica {
                child,
                addr,
                admin,
                dir,
            };
            let started = Instant::now();
            loop {
                if replica.child.try_wait().unwrap().is_some() {
                    break;
                }
                if ready(admin).await {
                    return replica;
                }
                assert!(
                    started.elapsed() < START_DEADLINE,
                    "replica {name} never became ready:\n{}",
                    replica.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            eprintln!(
                "replica {name} exited at start, retrying:\n{}",
                replica.log()
            );
        }
        panic!("replica {name} could not start on five port pairs");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }

    async fn status(&self, path: &str, cookie: &str) -> u16 {
        let req = format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n",
            self.addr
        );
        raw_status(&raw_exchange(self.addr, req.as_bytes()).await)
    }

    async fn metrics(&self) -> String {
        raw_exchange(
            self.admin,
            b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await
    }

    /// Waits until this replica reads the revocation stream (it connects in the background).
    async fn wait_connected(&self) {
        let connected = support::eventually(Duration::from_secs(20), || async {
            self.metrics()
                .await
                .contains("sessiongate_cluster_degraded 0")
        })
        .await;
        assert!(connected, "never connected to Redis:\n{}", self.log());
    }

    async fn refused_within(&self, cookie: &str, deadline: Duration) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < deadline {
            if self.status("/app", cookie).await == 401 {
                return Some(t.elapsed());
            }
            tokio::time::sleep(POLL_STEP).await;
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_share_answers_and_revocations_through_redis() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let h = Harness::start().await;
    let (a, b) = (
        Replica::start("a", &h, &redis).await,
        Replica::start("b", &h, &redis).await,
    );
    a.wait_connected().await;
    b.wait_connected().await;

    // One IdP call for the session, whichever process asks first.
    let cookie = h.login(users::INVESTOR);
    let before = h.idp_fetches();
    assert_eq!(a.status("/app", &cookie).await, 200, "{}", a.log());
    assert_eq!(b.status("/app", &cookie).await, 200, "{}", b.log());
    assert_eq!(h.idp_fetches() - before, 1, "b took a's answer from Redis");

    // Logout through a: b, which has the session cached, refuses it within a second.
    assert_eq!(a.status("/logout", &cookie).await, 200);
    let took = b.refused_within(&cookie, REVOCATION_DEADLINE).await;
    assert!(took.is_some(), "b still admits a logged-out session");

    // POST /revoke on b for a session only a has seen; the IdP still says
    // valid, so only the revocation can make a refuse it.
    let other = h.login(users::INVESTOR);
    assert_eq!(a.status("/app", &other).await, 200);
    let id = other
        .split("; ")
        .find_map(|c| c.strip_prefix("iid_session_id="))
        .unwrap();
    let token = other
        .split("; ")
        .find_map(|c| c.strip_prefix("iid_session_token="))
        .unwrap();
    let body = format!(r#"{{"credential":"{id}","token":"{token}"}}"#);
    let revoke = format!(
        "POST /revoke HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(b.admin, revoke.as_bytes()).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(
        answer.ends_with(r#"{"dropped":0}"#),
        "b had nothing to drop: {answer}"
    );
    let took = a.refused_within(&other, REVOCATION_DEADLINE).await;
    assert!(took.is_some(), "a still admits a revoked session");
    assert_eq!(
        h.emulator.stats().logout,
        1,
        "only the real logout reached the IdP"
    );
}
