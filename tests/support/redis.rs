//! A real `redis-server` for the cluster tests: started by the test on
//! 127.0.0.1 with a free port and a temporary data directory of its own, never
//! a system service. Every write is fsynced to the append-only file, so a
//! restart with the same directory keeps the data and a restart with a fresh
//! one loses it, as a Redis that was reset does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::system::{free_port, require_tool, temp_dir};

/// Bound on redis-server answering PING after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on getting the same port back on a restart (a port is rebound at once
/// unless a parallel test's socket took it meanwhile, which is rare and short).
const RESTART_TIMEOUT: Duration = Duration::from_secs(20);

/// A running redis-server; dropping it kills the process and removes its directory.
pub struct RedisServer {
    tool: PathBuf,
    port: u16,
    /// Holds the log and the data directories.
    root: PathBuf,
    /// The current data directory (`--dir`), under `root`.
    data: PathBuf,
    child: Option<Child>,
    generation: u64,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl RedisServer {
    /// Starts redis-server on a free port; `None` when it is not installed
    /// (the test is then skipped, or fails under `SESSIONGATE_REQUIRE_SYSTEM_TESTS=1`).
    pub async fn start() -> Option<RedisServer> {
        let tool = require_tool("redis-server")?;
        // A port that was free a moment ago can be taken before redis-server
        // binds it; then it exits and another port is tried.
        for attempt in 1..=5 {
            let mut server = RedisServer {
                tool: tool.clone(),
                port: free_port(),
                root: temp_dir("redis"),
                data: PathBuf::new(),
                child: None,
                generation: 0,
            };
            server.data = server.new_data_dir();
            server.spawn();
            if server.wait_ready(START_TIMEOUT).await {
                return Some(server);
            }
            eprintln!(
                "redis-server attempt {attempt} on port {} did not come up:\n{}",
                server.port,
                server.log()
            );
        }
        panic!("redis-server did not start");
    }

    /// `redis://127.0.0.1:PORT/0`, for `cluster.redis_url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Where it listens (also while it is killed: the port is kept for a restart).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGKILL, as a crashed or evicted Redis pod; waits until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it if it runs, then starts it again on the same port with the same
    /// data directory: everything written before comes back.
    pub async fn restart(&mut self) {
        self.kill();
        self.respawn().await;
    }

    /// Kills it if it runs, then starts it again on the same port with a new,
    /// empty data directory: everything written before is lost.
    pub async fn restart_fresh(&mut self) {
        self.kill();
        let fresh = self.new_data_dir();
        let old = std::mem::replace(&mut self.data, fresh);
        let _ = std::fs::remove_dir_all(old);
        self.respawn().await;
    }

    /// A client for inspecting and altering what the gateways stored.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid redis url")
    }

    /// A fresh connection (see [`RedisServer::client`]).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("connects to the test redis")
    }

    /// Every key, by `SCAN` (as `redis-cli --scan` lists them).
    pub async fn keys(&self) -> Vec<Vec<u8>> {
        let mut con = self.connection().await;
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Every key with every byte string stored under it, whatever its type
    /// (GET, XRANGE, HGETALL, SMEMBERS, LRANGE, ZRANGE).
    pub async fn dump(&self) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        let mut con = self.connection().await;
        let mut out = Vec::new();
        for key in self.keys().await {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut con)
                .await
                .expect("TYPE");
            let mut cmd = match kind.as_str() {
                "string" => redis::cmd("GET"),
                "stream" => redis::cmd("XRANGE"),
                "hash" => redis::cmd("HGETALL"),
                "set" => redis::cmd("SMEMBERS"),
                "list" => redis::cmd("LRANGE"),
                "zset" => redis::cmd("ZRANGE"),
                // Expired between SCAN and TYPE.
                "none" => continue,
                other => panic!("key {:?} has unexpected type {other}", lossy(&key)),
            };
            cmd.arg(&key);
            match kind.as_str() {
                "stream" => {
                    cmd.arg("-").arg("+");
                }
                "list" => {
                    cmd.arg(0).arg(-1);
                }
                "zset" => {
                    cmd.arg(0).arg(-1).arg("WITHSCORES");
                }
                _ => {}
            }
            let value: redis::Value = cmd.query_async(&mut con).await.expect("read a value");
            let mut strings = Vec::new();
            flatten(&value, &mut strings);
            out.push((key, strings));
        }
        out
    }

    /// redis-server's own log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("redis.log")).unwrap_or_default()
    }

    fn new_data_dir(&mut self) -> PathBuf {
        self.generation += 1;
        let dir = self.root.join(format!("data-{}", self.generation));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("redis.log"))
            .unwrap();
        let child = Command::new(&self.tool)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.data)
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", ""])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .args(["--logfile", ""])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
    }

    /// Spawns on the same port until it answers; a parallel test may hold the
    /// port for a moment, so an early exit is retried until the deadline.
    async fn respawn(&mut self) {
        let until = Instant::now() + RESTART_TIMEOUT;
        loop {
            self.spawn();
            let left = until.saturating_duration_since(Instant::now());
            if self.wait_ready(left).await {
                return;
            }
            self.kill();
            if Instant::now() >= until {
                panic!(
                    "redis-server did not come back on port {}:\n{}",
                    self.port,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls PING until it answers PONG, or the process exited, or `deadline` passed.
    async fn wait_ready(&mut self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                return false;
            }
            if ping(self.addr()).await {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// True when `addr` answers an inline PING with PONG (a Redis still loading
/// its append-only file answers `-LOADING` instead).
async fn ping(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG"))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

fn flatten(value: &redis::Value, out: &mut Vec<Vec<u8>>) {
    use redis::Value;
    match value {
        Value::BulkString(b) => out.push(b.clone()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => {
            out.push(s.clone().into_bytes())
        }
        Value::Int(i) => out.push(i.to_string().into_bytes()),
        Value::Double(d) => out.push(d.to_string().into_bytes()),
        Value::Array(items) | Value::Set(items) => {
            for item in items {
                flatten(item, out);
            }
        }
        Value::Map(pairs) => {
            for (k, v) in pairs {
                flatten(k, out);
                flatten(v, out);
            }
        }
        _ => {}
    }
}

/// Bytes as text for messages.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
