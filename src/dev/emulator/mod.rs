//! IID-compatible child-session server: the IdP peer for `sessiongate emulator`,
//! for `idp.emulate = true`, and for the integration tests and benches.
//!
//! # IID surface
//! Under [`BASE_PATH`], all `POST` with JSON bodies and answers in the S360
//! `CommonResponse` envelope ([`crate::idp::iid::wire::CommonResponse`]):
//! `/sso/session/create` (`{"profileId", "expires_in"?}`), and
//! `/sso/session/{fetch,validate,refresh,logout}` (`{"sessionToken", "sessionId"}`).
//! When configured, `X-IID-API-KEY` and `X-IID-CLIENT-ID` must match, else
//! 401 `Invalid API Key` / `Invalid Client Id`.
//!
//! # Control surface
//! For tests, operators and chaos drills; no API key, and never counted in
//! [`Stats`]. Do not expose it beyond the test network.
//! - `GET /__emulator/stats`: [`Stats`] as JSON.
//! - `PUT /__emulator/fault` with a [`Fault`] body, e.g. `{"kind":"delay","ms":500}`,
//!   `{"kind":"status","status":503}`, `{"kind":"retry_after","status":429,"secs":2}`
//!   (that status with `Retry-After`), `{"kind":"hang"}` (never answers),
//!   `{"kind":"garbage"}`, `{"kind":"close"}`, `{"kind":"none"}`: 204. Faults
//!   hit fetch, validate, refresh and logout only. [`Stats`] also counts the
//!   client connections open now and at most, so tests can see a caller's
//!   concurrency limit on the wire.
//! - `POST /__emulator/sessions` with `{"profileId": 518, "expires_in": 60}`:
//!   the same answer as create, handy for curl and the demo.
//!
//! # Sign-in page
//! With [`Emulator::with_sign_in`], `GET /login?return_to=…` is the IdP's
//! sign-in page for browsers, and choosing a user there creates a session,
//! sets the gateway's cookies and returns to the app (see `sign_in.rs`).
//!
//! # Layout
//! `users.rs` the users file; `state.rs` sessions, counters, fault;
//! `handlers.rs` routing and answers; `sign_in.rs` the sign-in page; `enos.rs`
//! the EnOS IAM emulator (same users, same [`Fault`] and body helpers);
//! `sso_identity.rs` the SSO identity sessions emulator (likewise);
//! `ciam.rs` the CIAM ticket exchange and userinfo (likewise);
//! `control.rs` what those three share (recorded requests, `/__emulator/sessions`,
//! small answers);
//! `embedded.rs` `idp.emulate`.

pub mod ciam;
mod control;
pub mod embedded;
pub mod enos;
mod handlers;
mod sign_in;
pub mod sso_identity;
mod state;
mod users;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::server::{serve, ServeOptions};

pub use sign_in::{AppOrigin, InvalidAppOrigin, SignIn};
pub use state::{Emulator, Fault, Stats};
pub use users::{default_users, load_users, EmulatorError, User};

/// Prefix of the IID external API, as in the seeds' URLs.
pub const BASE_PATH: &str = "/middleware/api/external";

/// Session lifetime when neither the config nor the create call names one.
pub const DEFAULT_EXPIRES_IN_SECS: u64 = 900;

/// How an emulator instance behaves.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Required `X-IID-API-KEY`; empty accepts any key, for quick local runs.
    pub api_key: String,
    /// Required `X-IID-CLIENT-ID`; `None` accepts any client.
    pub client_id: Option<String>,
    /// Default session lifetime in seconds.
    pub expires_in: u64,
    /// Who can be logged in.
    pub users: Vec<User>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            api_key: String::new(),
            client_id: None,
            expires_in: DEFAULT_EXPIRES_IN_SECS,
            users: default_users(),
        }
    }
}

/// Serves the emulator on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    emulator: Arc<Emulator>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let counted = Arc::clone(&emulator);
    let opts = ServeOptions {
        observer: Some(Arc::new(move |delta| counted.connection(delta))),
        ..ServeOptions::default()
    };
    serve(
        listener,
        opts,
        move |req, _peer| handlers::handle(emulator.clone(), req),
        shutdown,
    )
    .await
}
