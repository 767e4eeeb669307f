//! Thin binary: cli -> config -> telemetry -> runtime -> run.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use sessiongate::cli::{
    Cli, Command, DemoArgs, EmulatedProvider, EmulatorArgs, LoadtestArgs, UpstreamArgs,
};
use sessiongate::config::{Config, LogFormat};
use sessiongate::dev::{demo, echo, emulator, loadtest};
use sessiongate::{app, telemetry};
use tokio::net::TcpListener;

/// mimalloc: fewer cycles per request than glibc malloc under many small
/// allocations, and less RSS for a full session cache (see README Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Run) => run_gateway(&cli),
        Some(Command::Check) => check(&cli),
        Some(Command::Emulator(args)) => run_emulator(args),
        Some(Command::Loadtest(args)) => run_loadtest(args),
        Some(Command::Upstream(args)) => run_upstream(args),
        Some(Command::Demo(args)) => run_demo(args),
    }
}

/// `run`: the gateway on the configured listeners until SIGINT/SIGTERM.
fn run_gateway(cli: &Cli) -> ExitCode {
    let path = cli.config_path();
    let mut cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let _logs = telemetry::init(cfg.log.format, &cfg.log.level);
    let workers = match cfg.server.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };
    // This thread is the first worker; the others start in `app::run_workers`.
    block_on(1, async move {
        let (public, more_public) = bind_public(cfg.server.listen, workers).await?;
        let admin = match cfg.admin.listen {
            Some(addr) => Some(bind("admin.listen", addr).await?),
            None => None,
        };
        let forward_auth = match cfg.forward_auth.listen {
            Some(addr) => Some(bind("forward_auth.listen", addr).await?),
            None => None,
        };
        // Kept alive for the whole run: the emulator task serves until the process ends.
        let _embedded = emulator::embedded::start(&mut cfg)
            .await
            .map_err(GatewayError::Emulator)?;
        let listeners = app::Listeners {
            public,
            admin,
            forward_auth,
        };
        app::run_workers(cfg, listeners, more_public, shutdown_signal()).await?;
        Ok::<_, GatewayError>(())
    })
}

/// The public listener, and one more per extra worker: with several
/// workers every one is bound with `SO_REUSEPORT`, so each worker accepts on
/// its own socket and the kernel spreads new connections over them (only
/// sockets of the same user can join the port).
async fn bind_public(
    addr: SocketAddr,
    workers: usize,
) -> Result<(TcpListener, Vec<std::net::TcpListener>), GatewayError> {
    if workers <= 1 {
        return Ok((bind("server.listen", addr).await?, Vec::new()));
    }
    let err = |source| GatewayError::Bind {
        key: "server.listen",
        addr,
        source,
    };
    let first = reuseport_listener(addr).map_err(err)?;
    // Port 0 picks a port for the first; the others join that one.
    let port = first.local_addr().map_err(err)?;
    let more = (1..workers)
        .map(|_| reuseport_listener(port)?.into_std())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(err)?;
    Ok((first, more))
}

/// A listener on `addr` that other `SO_REUSEPORT` listeners may share.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
enum GatewayError {
    /// A configured listener could not be bound; names the key so the operator knows which to fix.
    #[error("{key} {addr}: {source}")]
    Bind {
        /// The config key holding the address.
        key: &'static str,
        /// The address as configured.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The embedded emulator (`idp.emulate = true`) could not start.
    #[error("idp.emulate: {0}")]
    Emulator(std::io::Error),
    /// Startup or serving failed after the listeners were bound.
    #[error(transparent)]
    Start(#[from] app::StartError),
}

/// Binds the listener configured under `key`.
async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { key, addr, source })
}

/// `check`: validates the config and prints its one-line summary.
fn check(cli: &Cli) -> ExitCode {
    match Config::load(&cli.config_path()) {
        Ok(cfg) => {
            println!("{}", cfg.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", cli.config_path().display());
            ExitCode::FAILURE
        }
    }
}

/// `emulator`: a standalone IID- (default), EnOS-, SSO-identity- or CIAM-compatible session server.
fn run_emulator(args: EmulatorArgs) -> ExitCode {
    let _logs = telemetry::init(LogFormat::Pretty, "info");
    let users = match &args.users {
        Some(path) => match emulator::load_users(path) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => emulator::default_users(),
    };
    if args.provider == EmulatedProvider::Enos {
        let enos = emulator::enos::EnosEmulator::new(users, args.expires_in);
        return block_on(1, async move {
            let listener = TcpListener::bind(args.listen).await?;
            eprintln!(
                "EnOS emulator on http://{}{} (control: /__emulator/stats, /__emulator/sessions, /__emulator/fault)",
                listener.local_addr()?,
                sessiongate::idp::enos::wire::SERVICE_PATH
            );
            emulator::enos::run(listener, enos, shutdown_signal()).await
        });
    }
    if args.provider == EmulatedProvider::SsoIdentity {
        let sso = emulator::sso_identity::SsoIdentityEmulator::new(users, args.expires_in);
        return block_on(1, async move {
            let listener = TcpListener::bind(args.listen).await?;
            eprintln!(
                "SSO identity emulator on http://{} (GET/DELETE {}<token>{}; control: /__emulator/stats, /__emulator/sessions, /__emulator/fault)",
                listener.local_addr()?,
                sessiongate::idp::sso_identity::wire::PATH_IDENTITIES,
                sessiongate::idp::sso_identity::wire::PATH_SUFFIX
            );
            emulator::sso_identity::run(listener, sso, shutdown_signal()).await
        });
    }
    if args.provider == EmulatedProvider::Ciam {
        let ciam = emulator::ciam::CiamEmulator::new(users, args.expires_in, &args.api_key);
        return block_on(1, async move {
            let listener = TcpListener::bind(args.listen).await?;
            let addr = listener.local_addr()?;
            eprintln!(
                "CIAM emulator on http://{addr} (exchange: {}, userinfo: {}; control: /__emulator/stats, /__emulator/sessions, /__emulator/fault, /__emulator/userinfo-fault)",
                sessiongate::idp::ciam::wire::PATH_SSO_TICKET,
                sessiongate::idp::ciam::wire::PATH_USERINFO
            );
            emulator::ciam::run(listener, ciam, shutdown_signal()).await
        });
    }
    let cfg = emulator::EmulatorConfig {
        api_key: args.api_key,
        client_id: None,
        expires_in: args.expires_in,
        users,
    };
    let sign_in = match args.app_origin.as_deref().map(emulator::AppOrigin::parse) {
        None => None,
        Some(Ok(app_origin)) => Some(emulator::SignIn {
            app_origin,
            id_cookie: args.id_cookie,
            token_cookie: args.token_cookie,
        }),
        Some(Err(e)) => {
            eprintln!("--app-origin: {e}");
            return ExitCode::FAILURE;
        }
    };
    block_on(1, async move {
        let listener = TcpListener::bind(args.listen).await?;
        let addr = listener.local_addr()?;
        eprintln!(
            "IID emulator on http://{addr}{} (control: /__emulator/stats, /__emulator/sessions, /__emulator/fault)",
            emulator::BASE_PATH
        );
        let emu = match sign_in {
            Some(s) => {
                eprintln!(
                    "sign-in page on http://{addr}/login (returns to {})",
                    s.app_origin.as_str()
                );
                emulator::Emulator::with_sign_in(cfg, s)
            }
            None => emulator::Emulator::new(cfg),
        };
        emulator::run(listener, emu, shutdown_signal()).await
    })
}

/// `loadtest`: drives load at a URL and prints the report.
fn run_loadtest(args: LoadtestArgs) -> ExitCode {
    let url = match args.url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("--url: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sessions = match &args.sessions {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            Err(e) => {
                eprintln!("--sessions {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => Vec::new(),
    };
    let spec = loadtest::LoadSpec {
        url,
        cookies: args.cookies,
        sessions,
        once: args.once,
        connections: args.connections,
        duration: args.duration,
        rate: args.rate,
        requests: args.requests,
        http2: args.http2,
        progress: !args.quiet,
    };
    let json = args.json;
    block_on(args.threads, async move {
        let report = loadtest::run(spec).await?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else {
            print!("{}", loadtest::render_table(&report));
        }
        Ok::<_, loadtest::LoadError>(())
    })
}

/// `upstream`: the echo upstream, for benchmarks and trying routes out.
fn run_upstream(args: UpstreamArgs) -> ExitCode {
    block_on(args.threads, async move {
        let listener = TcpListener::bind(args.listen).await?;
        eprintln!("echo upstream on http://{}", listener.local_addr()?);
        if args.plain {
            echo::run_plain(listener, shutdown_signal()).await
        } else {
            echo::run(listener, shutdown_signal()).await
        }
    })
}

/// `demo`: gateway, emulator and echo upstream on loopback.
fn run_demo(args: DemoArgs) -> ExitCode {
    let _logs = telemetry::init(LogFormat::Pretty, "warn");
    block_on(
        0,
        demo::run(args.listen, args.provider.config_name(), args.self_test),
    )
}

/// Builds the runtime (`workers` = 0: one per core) and runs `fut` to completion.
fn block_on<F, E>(workers: usize, fut: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    // One worker: a current-thread runtime skips the work-stealing machinery
    // (cross-thread wakeups, atomics) that buys nothing on a single thread.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if workers > 1 {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received, draining");
}
