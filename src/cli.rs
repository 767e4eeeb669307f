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
    },
    /// Validate a config file and print a one-line summary.
    Check,
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
