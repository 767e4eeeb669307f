//! Command line: `run` (default), `check`, `emulator`, `loadtest`, `upstream`, `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    Emulator(EmulatorArgs),
    /// Validate a config file and print a one-line summary.
    Check,
    /// Drive load at a URL and report throughput and latency percentiles.
    Loadtest(LoadtestArgs),
    /// Run the built-in echo upstream (for benchmarks and trying routes out).
    Upstream(UpstreamArgs),
    /// Start gateway + emulator + echo upstream on loopback and print curl commands.
    Demo(DemoArgs),
}

/// `sessiongate emulator`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Which session API to emulate.
    #[arg(long, value_enum, default_value_t = EmulatedProvider::Iid)]
    pub provider: EmulatedProvider,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,
    /// Users JSON file [default: the built-in config/users.json].
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Required X-IID-API-KEY (iid) or bearer access token (ciam); empty accepts any.
    #[arg(long, default_value = "")]
    pub api_key: String,
    /// Lifetime of new sessions in seconds.
    #[arg(long, default_value_t = 900)]
    pub expires_in: u64,
    /// Serve the sign-in page at /login, returning browsers to this app
    /// origin (http(s)://host[:port], the gateway's public address).
    #[arg(long)]
    pub app_origin: Option<String>,
    /// Cookie the sign-in page sets to the session id (the gateway's session.id_cookie).
    #[arg(long, default_value = "iid_session_id")]
    pub id_cookie: String,
    /// Cookie the sign-in page sets to the session token; "" sets none.
    #[arg(long, default_value = "iid_session_token")]
    pub token_cookie: String,
}

/// `sessiongate emulator --provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmulatedProvider {
    /// IID child sessions (`/middleware/api/external/sso/session/*`).
    Iid,
    /// EnOS IAM (`/enos-iam-service/v2.0/session/info`); `--api-key` is ignored.
    Enos,
    /// SSO identity sessions (`/sso/sessions/identities/{token}.json`); `--api-key` is ignored.
    #[value(name = "sso_identity")]
    SsoIdentity,
    /// CIAM ticket exchange (`/api/v2/tenant/sso/session-token/sso-ticket`)
    /// and userinfo; `--api-key` is the access token it requires.
    Ciam,
}

impl EmulatedProvider {
    /// The `idp.provider` value this emulator stands in for.
    pub fn config_name(self) -> &'static str {
        match self {
            EmulatedProvider::Iid => "iid",
            EmulatedProvider::Enos => "enos",
            EmulatedProvider::SsoIdentity => "sso_identity",
            EmulatedProvider::Ciam => "ciam",
        }
    }
}

/// `sessiongate loadtest`.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// Target, e.g. http://127.0.0.1:8080/api/x.
    #[arg(long)]
    pub url: String,
    /// Cookie sent on every request, NAME=VALUE (repeatable).
    #[arg(long = "cookie")]
    pub cookies: Vec<String>,
    /// File with one Cookie header value per line (one session each), used in turn.
    #[arg(long)]
    pub sessions: Option<PathBuf>,
    /// Use each line of --sessions at most once, then stop.
    #[arg(long)]
    pub once: bool,
    /// Concurrent connections (HTTP/1.1) or streams (--http2).
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// How long to send, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Open loop at this many requests/s (latency from when each request was due).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// HTTP/2 with prior knowledge (h2c).
    #[arg(long)]
    pub http2: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Runtime worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// `sessiongate upstream`.
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Runtime worker threads (0 = one per core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Answer `ok` to every path instead of echoing (fastest; for benchmarks).
    #[arg(long)]
    pub plain: bool,
}

/// `sessiongate demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Gateway address; falls back to a free port if this one is taken.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Send the printed requests once, print the answers and exit (0 if all behaved).
    #[arg(long)]
    pub self_test: bool,
    /// Which session API the demo's emulated IdP speaks.
    #[arg(long, value_enum, default_value_t = EmulatedProvider::Iid)]
    pub provider: EmulatedProvider,
}

impl Cli {
    /// The config path to use.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }
}
