//! `idp.emulate = true`: the emulator started in-process, with the gateway's
//! own API key, and `idp.base_url` pointed at it. Development only.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::enos::{self, EnosEmulator};
use super::{default_users, run, Emulator, EmulatorConfig, BASE_PATH};
use crate::config::{Config, ProviderConfig};

/// Default lifetime of sessions the embedded emulator creates, in seconds.
pub const EMBEDDED_SESSION_SECS: u64 = 900;

/// An embedded emulator started for `idp.emulate = true`.
pub struct EmbeddedIdp {
    /// Where it listens (loopback, ephemeral port).
    pub addr: SocketAddr,
    /// Its state, to create sessions from the demo.
    pub emulator: Emulated,
}

/// Which emulator runs, by `idp.provider`.
#[derive(Debug)]
pub enum Emulated {
    /// The IID child-session emulator.
    Iid(Arc<Emulator>),
    /// The EnOS IAM emulator.
    Enos(Arc<EnosEmulator>),
}

/// Starts the in-process emulator when the config asks for it and points
/// `cfg.idp.base_url` at it.
pub async fn start(cfg: &mut Config) -> std::io::Result<Option<EmbeddedIdp>> {
    if !cfg.idp.emulate {
        return Ok(None);
    }
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let iid = match &cfg.idp.provider {
        ProviderConfig::Iid(iid) => iid,
        ProviderConfig::Enos(_) => {
            let enos = EnosEmulator::new(default_users(), EMBEDDED_SESSION_SECS);
            let state = Arc::clone(&enos);
            tokio::spawn(async move {
                if let Err(e) = enos::run(listener, state, std::future::pending()).await {
                    tracing::error!(error = %e, "embedded EnOS emulator stopped");
                }
            });
            cfg.idp.base_url = format!("http://{addr}{}", crate::idp::enos::wire::SERVICE_PATH);
            tracing::warn!(
                emulator = %addr,
                "idp.emulate = true: sessions are checked by the built-in EnOS emulator, not a real IdP; never use this in production. \
                 Create a session with: curl -s -X POST http://{addr}/__emulator/sessions -d '{{\"profileId\": \"518\"}}'"
            );
            return Ok(Some(EmbeddedIdp {
                addr,
                emulator: Emulated::Enos(enos),
            }));
        }
    };
    // The emulator speaks IID; it checks the key the client will send.
    let emulator = Emulator::new(EmulatorConfig {
        api_key: iid.api_key.expose().to_owned(),
        client_id: None,
        expires_in: EMBEDDED_SESSION_SECS,
        users: default_users(),
    });
    let state = Arc::clone(&emulator);
    tokio::spawn(async move {
        if let Err(e) = run(listener, state, std::future::pending()).await {
            tracing::error!(error = %e, "embedded emulator stopped");
        }
    });
    cfg.idp.base_url = format!("http://{addr}{BASE_PATH}");
    tracing::warn!(
        emulator = %addr,
        "idp.emulate = true: sessions are checked by the built-in IID emulator, not a real IdP; never use this in production. \
         Create a session with: curl -s -X POST http://{addr}/__emulator/sessions -d '{{\"profileId\": 518}}'"
    );
    Ok(Some(EmbeddedIdp {
        addr,
        emulator: Emulated::Iid(emulator),
    }))
}
