//! Identity providers: the [`SessionProvider`] trait the gateway depends on,
//! [`build`] to pick one from `[idp]`, and one folder per provider, each with
//! the wire types it shares with its emulator. IID child sessions are the
//! first; the other session APIs in the seeds slot in beside it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::credential::Credential;
use crate::auth::headers::Carries;
use crate::auth::identity::Identity;
use crate::config::{IdpConfig, ProviderConfig};

pub mod iid;

/// Why a provider client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The IID client.
    #[error(transparent)]
    Iid(#[from] iid::BuildError),
}

/// The provider `[idp] provider` names, ready to be called.
pub fn build(cfg: &IdpConfig) -> Result<Arc<dyn SessionProvider>, BuildError> {
    Ok(match &cfg.provider {
        ProviderConfig::Iid(own) => Arc::new(iid::IidClient::new(cfg, own)?),
    })
}

/// A boxed future: providers are called only on cache misses, so the box is off the hot path.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the IdP said about a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A live session; cache it for at most `expires_in`.
    Valid {
        /// Who the user is (boxed: it dwarfs the other variant).
        identity: Box<Identity>,
        /// Time left on the session as the IdP reported it.
        expires_in: Duration,
    },
    /// The IdP says the session is not (or no longer) valid.
    Invalid {
        /// Stable log field value, e.g. `idp_rejected`.
        reason: &'static str,
    },
}

/// The IdP could not give a trustworthy answer: never cached, never forwarded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IdpError {
    /// Connection refused, reset, DNS, 5xx, 429.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// No complete answer within `idp.timeout`.
    #[error("identity provider timed out")]
    Timeout,
    /// An answer that cannot be trusted: not JSON, wrong shape, unsafe values.
    #[error("identity provider answered something unusable: {0}")]
    BadAnswer(String),
}

impl IdpError {
    /// Stable log field value.
    pub fn failure(&self) -> &'static str {
        match self {
            IdpError::Unavailable(_) => "idp_unavailable",
            IdpError::Timeout => "idp_timeout",
            IdpError::BadAnswer(_) => "idp_bad_answer",
        }
    }
}

/// How a remote logout went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// The IdP ended the session.
    LoggedOut,
    /// The IdP did not know it or had already ended it.
    AlreadyGone,
}

/// A session API: validates and ends sessions.
pub trait SessionProvider: Send + Sync + 'static {
    /// Asks the IdP whether `key` is a live session and who it belongs to.
    fn fetch<'a>(&'a self, key: &'a Credential) -> BoxFuture<'a, Result<Verdict, IdpError>>;
    /// Ends the session at the IdP.
    fn logout<'a>(&'a self, key: &'a Credential) -> BoxFuture<'a, Result<LogoutOutcome, IdpError>>;
    /// Which lists (roles, permissions) this provider reports, so headers and
    /// route checks only rely on what it can deliver.
    fn carries(&self) -> Carries;
}
