//! Real ingress proxies in front of the forward-auth listener: nginx
//! (`auth_request`) and Caddy (`forward_auth`), each started by the test on
//! 127.0.0.1 with a free port and a config in a temporary directory, never a
//! system service. Their configs are the README's snippets
//! (`tests/data/forward_auth/`), with the two addresses filled in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::system::{free_port, require_tool, temp_dir};

/// The nginx snippet of the README.
pub const NGINX_SNIPPET: &str = include_str!("../data/forward_auth/nginx.conf");
/// The Caddy snippet of the README.
pub const CADDY_SNIPPET: &str = include_str!("../data/forward_auth/Caddyfile");
/// The decision listener's address as the snippets write it.
const SNIPPET_DECISIONS: &str = "127.0.0.1:8081";
/// The app's address as the snippets write it.
const SNIPPET_APP: &str = "127.0.0.1:3000";
/// Bound on an ingress starting to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// nginx with `auth_request`.
    Nginx,
    /// Caddy with `forward_auth`.
    Caddy,
}

/// A running ingress; dropping it kills its process group and removes its directory.
pub struct Ingress {
    /// Where clients connect.
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let pid = self.child.id();
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !killed {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Ingress {
    /// Starts `kind` in front of `decisions`, proxying to `app`; `None` when
    /// the tool is not installed (the test is then skipped, or fails under
    /// `SESSIONGATE_REQUIRE_SYSTEM_TESTS=1`).
    pub async fn start(kind: Kind, decisions: SocketAddr, app: SocketAddr) -> Option<Ingress> {
        let tool = require_tool(match kind {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
        })?;
        // A port that was free a moment ago can be taken before the ingress
        // binds it; then it exits and another port is tried.
        for attempt in 1..=5 {
            let dir = temp_dir(&format!("{kind:?}"));
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let snippet = match kind {
                Kind::Nginx => NGINX_SNIPPET,
                Kind::Caddy => CADDY_SNIPPET,
            }
            .replace(SNIPPET_DECISIONS, &decisions.to_string())
            .replace(SNIPPET_APP, &app.to_string());
            let log = std::fs::File::create(dir.join("output.log")).unwrap();
            let mut cmd = Command::new(&tool);
            match kind {
                Kind::Nginx => {
                    let conf = dir.join("nginx.conf");
                    std::fs::write(&conf, nginx_conf(&dir, port, &snippet)).unwrap();
                    cmd.arg("-p")
                        .arg(&dir)
                        .arg("-c")
                        .arg(&conf)
                        .args(["-g", "daemon off;"]);
                }
                Kind::Caddy => {
                    let conf = dir.join("Caddyfile");
                    std::fs::write(&conf, caddyfile(port, &snippet)).unwrap();
                    cmd.args(["run", "--adapter", "caddyfile", "--config"])
                        .arg(&conf)
                        // Caddy keeps state under HOME/XDG dirs: here, not the user's.
                        .env("HOME", &dir)
                        .env("XDG_DATA_HOME", dir.join("data"))
                        .env("XDG_CONFIG_HOME", dir.join("config"));
                }
            }
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let child = cmd.spawn().expect("ingress starts");
            let mut ingress = Ingress { addr, child, dir };
            if ingress.wait_ready().await {
                return Some(ingress);
            }
            let output =
                std::fs::read_to_string(ingress.dir.join("output.log")).unwrap_or_default();
            eprintln!("{kind:?} attempt {attempt} on port {port} did not come up:\n{output}");
        }
        panic!("{kind:?} did not start");
    }

    /// Polls the port until the ingress accepts, or it exited, or the deadline passed.
    async fn wait_ready(&mut self) -> bool {
        let until = Instant::now() + START_TIMEOUT;
        while Instant::now() < until {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// `http://ingress{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The ingress' own log (errors), for assertion messages.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for name in ["output.log", "error.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(name)) {
                out.push_str(&text);
            }
        }
        out
    }
}

/// nginx around the snippet: one worker, every path inside `dir`.
fn nginx_conf(dir: &Path, port: u16, snippet: &str) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         access_log {d}/access.log;\n\
         client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         server {{\n\
         listen 127.0.0.1:{port};\n\
         {snippet}\n\
         }}\n\
         }}\n"
    )
}

/// Caddy around the snippet: no admin API, no automatic HTTPS, plain HTTP/1.1.
fn caddyfile(port: u16, snippet: &str) -> String {
    format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\n\
         http://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n{snippet}\n}}\n"
    )
}
