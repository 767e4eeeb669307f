//! Thin binary: cli -> config -> telemetry -> runtime -> run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use sessiongate::cli::{Cli, Command};
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
        Some(Command::Check) => match Config::load(&cli.config_path()) {
            Ok(cfg) => {
                println!("{}", cfg.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", cli.config_path().display());
                ExitCode::FAILURE
            }
        },
        Some(Command::Emulator {
            listen,
            ref users,
            ref api_key,
            expires_in,
            ref app_origin,
            ref id_cookie,
            ref token_cookie,
        }) => {
            telemetry::init(LogFormat::Pretty, "info");
            let users = match users {
                Some(path) => match emulator::load_users(path) {
                    Ok(u) => u,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => emulator::default_users(),
            };
            let cfg = emulator::EmulatorConfig {
                api_key: api_key.clone(),
                client_id: None,
                expires_in,
                users,
            };
            let sign_in = match app_origin.as_deref().map(emulator::AppOrigin::parse) {
                None => None,
                Some(Ok(app_origin)) => Some(emulator::SignIn {
                    app_origin,
                    id_cookie: id_cookie.clone(),
                    token_cookie: token_cookie.clone(),
                }),
                Some(Err(e)) => {
                    eprintln!("--app-origin: {e}");
                    return ExitCode::FAILURE;
                }
            };
            block_on(1, async move {
                let listener = TcpListener::bind(listen).await?;
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
        Some(Command::Loadtest {
            ref url,
            ref cookies,
            ref sessions,
            once,
            connections,
            duration,
            rate,
            requests,
            http2,
            json,
            quiet,
            threads,
        }) => {
            let url = match url.parse() {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("--url: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let sessions = match sessions {
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
                cookies: cookies.clone(),
                sessions,
                once,
                connections,
                duration,
                rate,
                requests,
                http2,
                progress: !quiet,
            };
            block_on(threads, async move {
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
        Some(Command::Upstream {
            listen,
            threads,
            plain,
        }) => block_on(threads, async move {
            let listener = TcpListener::bind(listen).await?;
            eprintln!("echo upstream on http://{}", listener.local_addr()?);
            if plain {
                echo::run_plain(listener, shutdown_signal()).await
            } else {
                echo::run(listener, shutdown_signal()).await
            }
        }),
        Some(Command::Demo { listen, self_test }) => {
            telemetry::init(LogFormat::Pretty, "warn");
            block_on(0, demo::run(listen, self_test))
        }
    }
}

fn run_gateway(cli: &Cli) -> ExitCode {
    let path = cli.config_path();
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(cfg.log.format, &cfg.log.level);
    let workers = cfg.server.workers;
    block_on(workers, async move {
        let public = TcpListener::bind(cfg.server.listen).await?;
        let admin = match cfg.admin.listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        app::run(cfg, app::Listeners { public, admin }, shutdown_signal())
            .await
            .map_err(std::io::Error::other)
    })
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
