//! Production wiring: validated config -> IdP client -> gateway -> accept
//! loop. `run` is what the binary, the demo and the tests call. The embedded
//! emulator (`idp.emulate`) is a developer tool: the binary starts it
//! (`dev::emulator::embedded`) and points `idp.base_url` at it before `run`.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin;
use crate::auth::jwt::Signer;
use crate::config::Config;
use crate::forward_auth::ForwardAuth;
use crate::idp;
use crate::pipeline::{self, Gateway};
use crate::server::tls::{self, TlsAcceptorHandle, TlsFiles};
use crate::server::{self, ServeOptions};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// IdP client setup.
    #[error(transparent)]
    Idp(#[from] idp::BuildError),
    /// Gateway setup.
    #[error(transparent)]
    Gateway(#[from] pipeline::BuildError),
    /// TLS certificate or key (they may have changed since the config was checked).
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Binding or serving.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds the gateway for `cfg` (whose `idp.base_url` must be final).
pub fn build_gateway(cfg: &Config) -> Result<Arc<Gateway>, StartError> {
    Ok(Gateway::new(cfg, idp::build(&cfg.idp)?)?)
}

/// The TLS acceptor `server.tls` asks for, with the certificate and key read
/// now (they may have changed since the config was checked); `None` in cleartext.
async fn tls_acceptor(cfg: &Config) -> Result<Option<Arc<TlsAcceptorHandle>>, StartError> {
    let Some(t) = &cfg.server.tls else {
        return Ok(None);
    };
    let files = TlsFiles {
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        reload_interval: t.reload_interval,
    };
    let http2 = cfg.server.http2;
    // File reads block: off the runtime's workers, so the admin listener
    // keeps answering probes while a slow volume is read.
    let built = tokio::task::spawn_blocking(move || TlsAcceptorHandle::new(&files, http2))
        .await
        .map_err(|e| std::io::Error::other(format!("loading the TLS certificate: {e}")))?;
    Ok(Some(Arc::new(built?)))
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then drains.
/// With `server.tls`, terminates TLS and keeps the certificate fresh.
pub async fn serve(
    cfg: &Config,
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let tls = tls_acceptor(cfg).await?;
    serve_with(cfg, gateway, listener, tls, 1, shutdown).await
}

/// [`serve`] with the TLS acceptor already built, so [`run`] can finish
/// everything fallible before it reports ready.
async fn serve_with(
    cfg: &Config,
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<Arc<TlsAcceptorHandle>>,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    // Lives as long as the listener: dropping it stops polling and SIGHUP handling.
    let _reloader = tls.as_ref().map(TlsAcceptorHandle::spawn_reloader);
    // The JWT signing key rotates the same way (polled, and on SIGHUP).
    let _jwt_reloader = gateway.signer().map(Signer::spawn_reloader);
    serve_public(cfg, gateway, listener, tls, workers, shutdown).await
}

/// The public listener's accept loop: one per worker (see [`run_workers`]),
/// each with its share of `server.max_connections`.
async fn serve_public(
    cfg: &Config,
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<Arc<TlsAcceptorHandle>>,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let admin = Arc::clone(gateway.admin());
    let opts = ServeOptions {
        // hyper's own limit only backs ours up: the pipeline answers 431 with JSON below it.
        max_buf_size: cfg.server.max_header_bytes.saturating_mul(2).max(16 * 1024),
        header_read_timeout: cfg.server.header_read_timeout,
        idle_timeout: cfg.server.idle_timeout,
        max_connections: cfg.server.max_connections.div_ceil(workers.max(1)),
        shutdown_grace: cfg.server.shutdown_grace,
        observer: Some(Arc::new(move |delta| {
            if delta > 0 {
                admin.metrics().connection_opened();
            } else {
                admin.metrics().connection_closed();
            }
        })),
        http2: cfg.server.http2,
        tls,
    };
    server::serve_scoped(
        listener,
        opts,
        move |req, peer, scope| {
            let gateway = Arc::clone(&gateway);
            // The pipeline's future is kilobytes (every step's state); hyper
            // moves what the handler returns into its connection, so it
            // gets a pointer: a copy of the whole future per request was
            // the largest single user-space cost in a profile.
            Box::pin(gateway.handle(req, peer, scope.cloned()))
        },
        shutdown,
    )
    .await?;
    Ok(())
}

/// One more worker (see [`run_workers`]): its own runtime on this thread,
/// serving `listener` until `stop` turns true or its sender is gone.
fn worker(
    cfg: &Config,
    gateway: Arc<Gateway>,
    listener: std::net::TcpListener,
    tls: Option<Arc<TlsAcceptorHandle>>,
    workers: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StartError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        serve_public(cfg, gateway, listener, tls, workers, async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
    })
}

/// Serves forward-auth decisions ([`ForwardAuth`]) for `gateway` on
/// `listener` until `shutdown` resolves, then drains. Cleartext only: the
/// decision listener is for an ingress next to the gateway, never the public.
pub async fn serve_forward_auth(
    cfg: &Config,
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let decisions = Arc::new(ForwardAuth::new(cfg, gateway));
    let opts = ServeOptions {
        max_buf_size: cfg.server.max_header_bytes.saturating_mul(2).max(16 * 1024),
        header_read_timeout: cfg.server.header_read_timeout,
        idle_timeout: cfg.server.idle_timeout,
        max_connections: cfg.server.max_connections,
        shutdown_grace: cfg.server.shutdown_grace,
        observer: None,
        http2: cfg.server.http2,
        tls: None,
    };
    server::serve(
        listener,
        opts,
        move |req, peer| {
            let decisions = Arc::clone(&decisions);
            async move { decisions.handle(req, peer).await }
        },
        shutdown,
    )
    .await?;
    Ok(())
}

/// The sockets a gateway serves on, bound by the caller (the binary binds the
/// configured addresses; tests bind 127.0.0.1:0).
pub struct Listeners {
    /// Public traffic.
    pub public: TcpListener,
    /// Health, readiness and metrics; `None` disables them.
    pub admin: Option<TcpListener>,
    /// Forward-auth decisions (`forward_auth.listen`); `None` disables them.
    pub forward_auth: Option<TcpListener>,
}

/// Starts everything `cfg` describes and serves until `shutdown`. `/readyz`
/// answers 503 until the TLS certificate and key are loaded; if they fail,
/// `run` returns the error without ever having reported ready. On shutdown, readiness turns false at once, the public listener stops
/// accepting, in-flight requests get `server.shutdown_grace`, and only then
/// does the admin listener stop, so probes see the whole drain.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    run_workers(cfg, listeners, Vec::new(), shutdown).await
}

/// [`run`], with one more worker per listener in `more_public`: each is a
/// thread with a single-threaded runtime of its own accepting on its own
/// listener, bound to the public address with `SO_REUSEPORT`, so the kernel
/// spreads connections over the workers and a connection stays on one
/// thread from accept to close (nginx's model: no work stealing, no
/// cross-thread wakeups). The workers share the gateway (routes, session
/// cache, IdP client) and drain with the caller's listener.
pub async fn run_workers(
    cfg: Config,
    listeners: Listeners,
    more_public: Vec<std::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let gateway = build_gateway(&cfg)?;
    let admin = Arc::clone(gateway.admin());
    let cache = gateway.cache().clone();
    admin.on_scrape(Box::new(move |m| {
        m.set_cache_entries(cache.entry_count());
        m.set_log_lines_dropped(crate::telemetry::dropped_lines());
    }));

    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = match listeners.admin {
        Some(listener) => {
            tracing::info!(admin = %listener.local_addr()?, "admin listener (healthz, readyz, metrics)");
            Some(tokio::spawn(admin::run(
                listener,
                Arc::clone(&admin),
                async move {
                    let _ = admin_stopped.await;
                },
            )))
        }
        None => None,
    };

    // The admin listener is up first so probes get an honest 503 "starting"
    // meanwhile; readiness turns true only once the certificate and every
    // other fallible step succeeded, so a probe that saw 200 never then
    // sees the process exit on a bad certificate.
    let started = tls_acceptor(&cfg)
        .await
        .and_then(|tls| Ok((tls, listeners.public.local_addr()?)));
    let result = match started {
        Ok((tls, listen)) => {
            tracing::info!(
                listen = %listen,
                routes = cfg.routes.len(),
                tls = tls.is_some(),
                http2 = cfg.server.http2,
                "sessiongate ready"
            );
            // The decision listener stops with the public one: on shutdown,
            // or when the public one fails (the sender is dropped then).
            let (stop_decisions, decisions_stop) = tokio::sync::watch::channel(false);
            let decisions = match listeners.forward_auth {
                Some(listener) => {
                    tracing::info!(forward_auth = %listener.local_addr()?, "forward-auth decision listener");
                    let (cfg, gateway) = (cfg.clone(), Arc::clone(&gateway));
                    let mut stop = decisions_stop;
                    Some(tokio::spawn(async move {
                        serve_forward_auth(&cfg, gateway, listener, async move {
                            let _ = stop.wait_for(|stop| *stop).await;
                        })
                        .await
                    }))
                }
                None => None,
            };
            let workers = 1 + more_public.len();
            let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
            let spawned = more_public
                .into_iter()
                .enumerate()
                .map(|(i, listener)| {
                    let (cfg, gateway, tls) = (cfg.clone(), Arc::clone(&gateway), tls.clone());
                    let stop = workers_stop.clone();
                    std::thread::Builder::new()
                        .name(format!("sessiongate-worker-{}", i + 1))
                        .spawn(move || worker(&cfg, gateway, listener, tls, workers, stop))
                })
                .collect::<Result<Vec<_>, _>>();
            // Workers that did start stop on their own once `stop_workers` is gone.
            let served = match spawned {
                Err(e) => {
                    drop(stop_decisions);
                    Err(e.into())
                }
                Ok(more) => {
                    admin.set_ready(true, "ok");
                    let draining = Arc::clone(&admin);
                    let served =
                        serve_with(&cfg, gateway, listeners.public, tls, workers, async move {
                            shutdown.await;
                            draining.set_ready(false, "shutting down");
                            tracing::info!(
                                "shutting down: readiness false, draining in-flight requests"
                            );
                            let _ = stop_decisions.send(true);
                            let _ = stop_workers.send(true);
                        })
                        .await;
                    // The other workers drain alongside (told above, or by
                    // the sender going away when this one failed).
                    let joined = tokio::task::spawn_blocking(move || {
                        more.into_iter().try_for_each(|t| {
                            t.join().unwrap_or_else(|_| {
                                Err(std::io::Error::other("a worker thread panicked").into())
                            })
                        })
                    })
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(format!("workers: {e}")).into()));
                    served.and(joined)
                }
            };
            match decisions {
                Some(task) => {
                    let decided = task
                        .await
                        .map_err(|e| std::io::Error::other(format!("forward-auth listener: {e}")));
                    served.and(decided?)
                }
                None => served,
            }
        }
        Err(e) => Err(e),
    };
    drop(stop_admin);
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    result
}
