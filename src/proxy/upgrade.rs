//! Upgraded connections (WebSocket and other `Upgrade` protocols). The
//! upgrade request went through the whole pipeline like any other, so by the
//! time the upstream answers `101 Switching Protocols` the session has been
//! checked and the identity headers injected; from then on the gateway only
//! copies bytes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::server::ConnectionLease;

/// Joins the client's connection to the upstream's once both have switched
/// protocols, and copies bytes both ways until either side closes. Runs in a
/// task of its own: the `101` must reach the client first, which is what
/// completes the client side.
///
/// The tunnel holds the client connection's `lease` until it closes, so it
/// counts against `server.max_connections` and is waited for by a graceful
/// shutdown, which closes it once `server.shutdown_grace` is over.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade, lease: Option<ConnectionLease>) {
    tokio::spawn(async move {
        let tunnel = async move {
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((to_upstream, to_client)) => {
                    tracing::debug!(to_upstream, to_client, "upgraded connection closed");
                }
                Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
            }
        };
        match &lease {
            Some(lease) => tokio::select! {
                () = tunnel => {}
                () = lease.closing() => {
                    tracing::debug!("upgraded connection closed at the end of the shutdown grace");
                }
            },
            None => tunnel.await,
        }
    });
}
