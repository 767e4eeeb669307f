//! Command line: `run` (default), `emulator`, `check`, `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

/// sessiongate: a session-validating reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "sessiongate", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file [default: $SESSIONGATE_CONFIG, else config/sessiongate.toml].
    #[arg(long, global = true, env = "SESSIONGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run,
    /// Run an IID-compatible child-session server (for development and tests).
    Emulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: SocketAddr,
        /// Users JSON file [default: the built-in config/users.json].
        #[arg(long)]
        users: Option<PathBuf>,
        /// Required X-IID-API-KEY; empty accepts any.
        #[arg(long, default_value = "")]
        api_key: String,
        /// Lifetime of new sessions in seconds.
        #[arg(long, default_value_t = 900)]
        expires_in: u64,
        /// Serve the sign-in page at /login, returning browsers to this app
        /// origin (http(s)://host[:port], the gateway's public address).
        #[arg(long)]
        app_origin: Option<String>,
        /// Cookie the sign-in page sets to the session id (the gateway's session.id_cookie).
        #[arg(long, default_value = "iid_session_id")]
        id_cookie: String,
        /// Cookie the sign-in page sets to the session token; "" sets none.
        #[arg(long, default_value = "iid_session_token")]
        token_cookie: String,
    },
    /// Validate a config file and print a one-line summary.
    Check,
    /// Drive load at a URL and report throughput and latency percentiles.
    Loadtest {
        /// Target, e.g. http://127.0.0.1:8080/api/x.
        #[arg(long)]
        url: String,
        /// Cookie sent on every request, NAME=VALUE (repeatable).
        #[arg(long = "cookie")]
        cookies: Vec<String>,
        /// File with one Cookie header value per line (one session each), used in turn.
        #[arg(long)]
        sessions: Option<PathBuf>,
        /// Use each line of --sessions at most once, then stop.
        #[arg(long)]
        once: bool,
        /// Concurrent connections (HTTP/1.1) or streams (--http2).
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// How long to send, e.g. 10s.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Open loop at this many requests/s (latency from when each request was due).
        #[arg(long)]
        rate: Option<f64>,
        /// Stop after this many requests.
        #[arg(long)]
        requests: Option<u64>,
        /// HTTP/2 with prior knowledge (h2c).
        #[arg(long)]
        http2: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
        /// Runtime worker threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Run the built-in echo upstream (for benchmarks and trying routes out).
    Upstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Runtime worker threads (0 = one per core).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Answer `ok` to every path instead of echoing (fastest; for benchmarks).
        #[arg(long)]
        plain: bool,
    },
    /// Start gateway + emulator + echo upstream on loopback and print curl commands.
    Demo {
        /// Gateway address; falls back to a free port if this one is taken.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Send the printed requests once, print the answers and exit (0 if all behaved).
        #[arg(long)]
        self_test: bool,
    },
}

impl Cli {
    /// The config path to use.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }
}
