//! Wiring: validated config -> IdP client (or embedded emulator) -> gateway
//! -> accept loop. `run` is what the binary, the demo and the tests call.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin;
use crate::config::Config;
use crate::dev::emulator::{self, Emulator, EmulatorConfig};
use crate::idp::iid::{self, IidClient};
use crate::pipeline::{self, Gateway};
use crate::server::tls::{self, TlsAcceptorHandle, TlsFiles};
use crate::server::{self, ServeOptions};

/// Default lifetime of sessions the embedded emulator creates, in seconds.
pub const EMBEDDED_SESSION_SECS: u64 = 900;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// IdP client setup.
    #[error(transparent)]
    Idp(#[from] iid::BuildError),
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

/// An embedded emulator started for `idp.emulate = true`.
pub struct EmbeddedIdp {
    /// Where it listens (loopback, ephemeral port).
    pub addr: SocketAddr,
    /// Its state, to create sessions from the demo.
    pub emulator: Arc<Emulator>,
}

/// Starts the in-process emulator when the config asks for it and points
/// `cfg.idp.base_url` at it.
pub async fn start_embedded_idp(cfg: &mut Config) -> Result<Option<EmbeddedIdp>, StartError> {
    if !cfg.idp.emulate {
        return Ok(None);
    }
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let emulator = Emulator::new(EmulatorConfig {
        api_key: cfg.idp.api_key.expose().to_owned(),
        client_id: None,
        expires_in: EMBEDDED_SESSION_SECS,
        users: emulator::default_users(),
    });
    let state = Arc::clone(&emulator);
    tokio::spawn(async move {
        if let Err(e) = emulator::run(listener, state, std::future::pending()).await {
            tracing::error!(error = %e, "embedded emulator stopped");
        }
    });
    cfg.idp.base_url = format!("http://{addr}{}", emulator::BASE_PATH);
    tracing::warn!(
        emulator = %addr,
        "idp.emulate = true: sessions are checked by the built-in IID emulator, not a real IdP; never use this in production. \
         Create a session with: curl -s -X POST http://{addr}/__emulator/sessions -d '{{\"profileId\": 518}}'"
    );
    Ok(Some(EmbeddedIdp { addr, emulator }))
}

/// Builds the gateway for `cfg` (whose `idp.base_url` must be final).
pub fn build_gateway(cfg: &Config) -> Result<Arc<Gateway>, StartError> {
    let idp = Arc::new(IidClient::new(&cfg.idp)?);
    Ok(Arc::new(Gateway::new(cfg, idp)?))
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
    serve_with(cfg, gateway, listener, tls, shutdown).await
}

/// [`serve`] with the TLS acceptor already built, so [`run`] can finish
/// everything fallible before it reports ready.
async fn serve_with(
    cfg: &Config,
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<Arc<TlsAcceptorHandle>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    // Lives as long as the listener: dropping it stops polling and SIGHUP handling.
    let _reloader = tls.as_ref().map(TlsAcceptorHandle::spawn_reloader);
    let admin = Arc::clone(gateway.admin());
    let opts = ServeOptions {
        // hyper's own limit only backs ours up: the pipeline answers 431 with JSON below it.
        max_buf_size: cfg.server.max_header_bytes.saturating_mul(2).max(16 * 1024),
        header_read_timeout: cfg.server.header_read_timeout,
        idle_timeout: cfg.server.idle_timeout,
        max_connections: cfg.server.max_connections,
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
    server::serve(
        listener,
        opts,
        move |req, peer| {
            let gateway = Arc::clone(&gateway);
            async move { gateway.handle(req, peer).await }
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
}

/// Starts everything `cfg` describes and serves until `shutdown`. `/readyz`
/// answers 503 until the TLS certificate and key are loaded; if they fail,
/// `run` returns the error without ever having reported ready. On shutdown, readiness turns false at once, the public listener stops
/// accepting, in-flight requests get `server.shutdown_grace`, and only then
/// does the admin listener stop, so probes see the whole drain.
pub async fn run(
    mut cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let _embedded = start_embedded_idp(&mut cfg).await?;
    let gateway = build_gateway(&cfg)?;
    let admin = Arc::clone(gateway.admin());
    let cache = gateway.cache().clone();
    admin.on_scrape(Box::new(move |m| m.set_cache_entries(cache.entry_count())));

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
            admin.set_ready(true, "ok");
            let draining = Arc::clone(&admin);
            serve_with(&cfg, gateway, listeners.public, tls, async move {
                shutdown.await;
                draining.set_ready(false, "shutting down");
                tracing::info!("shutting down: readiness false, draining in-flight requests");
            })
            .await
        }
        Err(e) => Err(e),
    };
    drop(stop_admin);
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    result
}
