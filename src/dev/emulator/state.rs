//! Session store, counters and the injected fault, shared by every connection.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::sign_in::SignIn;
use super::users::{profile_key, User};
use super::EmulatorConfig;
use crate::idp::iid::wire;

/// Dead sessions are kept this long so callers still get the precise 401.
const KEEP_DEAD: Duration = Duration::from_secs(10 * 60);
/// Purging scans the whole map, so it runs at most this often.
const PURGE_EVERY: Duration = Duration::from_secs(10);
/// Longest lifetime accepted, so `Instant + lifetime` cannot overflow.
const MAX_LIFETIME_SECS: u64 = 366 * 24 * 60 * 60;

/// Snapshot of how many calls each endpoint handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Calls to fetch that passed the credential check.
    pub fetch: u64,
    /// Calls to validate that passed the credential check.
    pub validate: u64,
    /// Calls to create that passed the credential check.
    pub create: u64,
    /// Calls to refresh that passed the credential check.
    pub refresh: u64,
    /// Calls to logout that passed the credential check.
    pub logout: u64,
    /// Calls refused for a wrong API key or client id.
    pub rejected_api_key: u64,
    /// Client connections open now (a pooled idle connection counts).
    pub connections: u64,
    /// Most client connections ever open at once.
    pub peak_connections: u64,
}

/// A failure injected into fetch, validate, refresh and logout for chaos tests.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Sleep this long, then answer normally.
    Delay {
        /// Milliseconds to sleep.
        ms: u64,
    },
    /// Answer this HTTP status with a short text body.
    Status {
        /// The HTTP status code.
        status: u16,
    },
    /// Answer 200 with an HTML body that is not JSON.
    Garbage,
    /// Drop the connection without a complete answer.
    Close,
    /// Answer this status (429 or 503, say) with `Retry-After: secs`.
    RetryAfter {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` value, in seconds.
        secs: u64,
    },
    /// Never answer; the call ends only when the caller gives up.
    Hang,
}

/// Which IID endpoint a call reached, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Fetch,
    Validate,
    Create,
    Refresh,
    Logout,
}

/// Why a session call is refused; each maps to one IID error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionError {
    NotFound,
    InvalidToken,
    LoggedOut,
    Expired,
}

/// A live session's view for fetch: who, and how long is left.
pub(crate) struct Alive {
    pub(crate) user: Arc<User>,
    pub(crate) expires_in: u64,
}

struct Session {
    token: String,
    user: Arc<User>,
    lifetime: Duration,
    expires_at: Instant,
    logged_out: bool,
    purge_at: Instant,
}

struct Sessions {
    map: HashMap<String, Session>,
    next_purge: Instant,
}

#[derive(Default)]
struct Counters {
    fetch: AtomicU64,
    validate: AtomicU64,
    create: AtomicU64,
    refresh: AtomicU64,
    logout: AtomicU64,
    rejected_api_key: AtomicU64,
    connections: AtomicU64,
    peak_connections: AtomicU64,
}

/// Shared state of one emulated IdP: users, sessions, counters and fault.
pub struct Emulator {
    api_key: String,
    client_id: Option<String>,
    expires_in: u64,
    users: HashMap<String, Arc<User>>,
    /// The users in file order, as the sign-in page lists them.
    roster: Vec<Arc<User>>,
    /// The sign-in page, when the emulator plays the IdP for browsers too.
    sign_in: Option<SignIn>,
    sessions: Mutex<Sessions>,
    fault: Mutex<Fault>,
    counters: Counters,
    // Keyed SipHash over a counter and the clock: unguessable enough for a
    // test peer without adding an RNG crate. Not for production secrets.
    id_seed: std::collections::hash_map::RandomState,
    id_counter: AtomicU64,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field(
                "api_key",
                &if self.api_key.is_empty() {
                    "<any>"
                } else {
                    "<redacted>"
                },
            )
            .field("client_id", &self.client_id)
            .field("expires_in", &self.expires_in)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-written session that
    // matters to a test peer, so keep serving rather than cascade panics.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Emulator {
    /// Builds the shared state from `cfg`; users without a profile id are skipped.
    pub fn new(cfg: EmulatorConfig) -> Arc<Emulator> {
        Self::build(cfg, None)
    }

    /// Like [`Emulator::new`], and also serves the sign-in page for browsers.
    /// Separate from [`EmulatorConfig`] so the IdP-only setups stay as they are.
    pub fn with_sign_in(cfg: EmulatorConfig, sign_in: SignIn) -> Arc<Emulator> {
        Self::build(cfg, Some(sign_in))
    }

    fn build(cfg: EmulatorConfig, sign_in: Option<SignIn>) -> Arc<Emulator> {
        let mut users = HashMap::new();
        let mut roster = Vec::new();
        for user in cfg.users {
            match user.key() {
                Some(key) => {
                    let user = Arc::new(user);
                    if users.insert(key.clone(), Arc::clone(&user)).is_some() {
                        tracing::warn!(profile_id = %key, "duplicate emulator user, last one wins");
                        roster.retain(|u: &Arc<User>| u.key().as_deref() != Some(key.as_str()));
                    }
                    roster.push(user);
                }
                None => tracing::warn!("emulator user without profile.profileId skipped"),
            }
        }
        Arc::new(Emulator {
            api_key: cfg.api_key,
            client_id: cfg.client_id,
            expires_in: cfg.expires_in.min(MAX_LIFETIME_SECS),
            users,
            roster,
            sign_in,
            sessions: Mutex::new(Sessions {
                map: HashMap::new(),
                next_purge: Instant::now() + PURGE_EVERY,
            }),
            fault: Mutex::new(Fault::None),
            counters: Counters::default(),
            id_seed: std::collections::hash_map::RandomState::new(),
            id_counter: AtomicU64::new(0),
        })
    }

    /// Logs `profile_id` in for `expires_in` seconds (default: the configured lifetime).
    pub fn create_session(
        &self,
        profile_id: &str,
        expires_in: Option<u64>,
    ) -> Option<wire::CreatedSession> {
        let user = self.users.get(profile_id.trim())?.clone();
        let secs = expires_in.unwrap_or(self.expires_in).min(MAX_LIFETIME_SECS);
        let lifetime = Duration::from_secs(secs);
        let session_id = self.new_uuid();
        let session_token = self.new_token();
        let now = Instant::now();
        let expires_at = now + lifetime;
        let mut sessions = lock(&self.sessions);
        sessions.purge(now);
        sessions.map.insert(
            session_id.clone(),
            Session {
                token: session_token.clone(),
                user,
                lifetime,
                expires_at,
                logged_out: false,
                purge_at: expires_at + KEEP_DEAD,
            },
        );
        Some(wire::CreatedSession {
            session_id,
            session_token,
            expires_in: secs,
        })
    }

    /// The users, in the order of the users file.
    pub(crate) fn roster(&self) -> &[Arc<User>] {
        &self.roster
    }

    /// The sign-in page's settings, if it is served.
    pub(crate) fn sign_in(&self) -> Option<&SignIn> {
        self.sign_in.as_ref()
    }

    /// Current counter values.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            fetch: c.fetch.load(Ordering::Relaxed),
            validate: c.validate.load(Ordering::Relaxed),
            create: c.create.load(Ordering::Relaxed),
            refresh: c.refresh.load(Ordering::Relaxed),
            logout: c.logout.load(Ordering::Relaxed),
            rejected_api_key: c.rejected_api_key.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            peak_connections: c.peak_connections.load(Ordering::Relaxed),
        }
    }

    /// A client connection opened (`delta` 1) or closed (-1), for [`Stats::connections`].
    pub fn connection(&self, delta: i64) {
        let c = &self.counters;
        if delta > 0 {
            let now = c.connections.fetch_add(1, Ordering::Relaxed) + 1;
            c.peak_connections.fetch_max(now, Ordering::Relaxed);
        } else {
            c.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Replaces the injected fault; `Fault::None` restores normal answers.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.fault) = fault;
    }

    pub(crate) fn fault(&self) -> Fault {
        lock(&self.fault).clone()
    }

    /// Whether the caller's credential headers match the configuration.
    pub(crate) fn check_credentials(
        &self,
        api_key: Option<&[u8]>,
        client_id: Option<&[u8]>,
    ) -> Result<(), Credential> {
        if !self.api_key.is_empty() && api_key != Some(self.api_key.as_bytes()) {
            self.counters
                .rejected_api_key
                .fetch_add(1, Ordering::Relaxed);
            return Err(Credential::ApiKey);
        }
        if let Some(expected) = &self.client_id {
            if client_id != Some(expected.as_bytes()) {
                self.counters
                    .rejected_api_key
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Credential::ClientId);
            }
        }
        Ok(())
    }

    pub(crate) fn count(&self, endpoint: Endpoint) {
        let c = &self.counters;
        let counter = match endpoint {
            Endpoint::Fetch => &c.fetch,
            Endpoint::Validate => &c.validate,
            Endpoint::Create => &c.create,
            Endpoint::Refresh => &c.refresh,
            Endpoint::Logout => &c.logout,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Creates a session for a profile id given as a JSON number or string.
    pub(crate) fn create_for(
        &self,
        profile_id: Option<&serde_json::Value>,
        expires_in: Option<u64>,
    ) -> Option<wire::CreatedSession> {
        let key = profile_id.and_then(profile_key)?;
        self.create_session(&key, expires_in)
    }

    /// The live session named by `req`, with the seconds it has left.
    pub(crate) fn alive(&self, req: &wire::SessionRequest) -> Result<Alive, SessionError> {
        let now = Instant::now();
        let sessions = lock(&self.sessions);
        let s = live(&sessions.map, req, now)?;
        Ok(Alive {
            user: s.user.clone(),
            expires_in: s.expires_at.saturating_duration_since(now).as_secs(),
        })
    }

    /// Extends a live session by its lifetime from now.
    pub(crate) fn refresh(
        &self,
        req: &wire::SessionRequest,
    ) -> Result<wire::CreatedSession, SessionError> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        live(&sessions.map, req, now)?;
        let s = sessions
            .map
            .get_mut(&req.session_id)
            .ok_or(SessionError::NotFound)?;
        s.expires_at = now + s.lifetime;
        s.purge_at = s.expires_at + KEEP_DEAD;
        Ok(wire::CreatedSession {
            session_id: req.session_id.clone(),
            session_token: s.token.clone(),
            expires_in: s.lifetime.as_secs(),
        })
    }

    /// Ends a live session; it is remembered so later calls say "Already Logout".
    pub(crate) fn logout(&self, req: &wire::SessionRequest) -> Result<(), SessionError> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        live(&sessions.map, req, now)?;
        let s = sessions
            .map
            .get_mut(&req.session_id)
            .ok_or(SessionError::NotFound)?;
        s.logged_out = true;
        s.purge_at = s.purge_at.min(now + KEEP_DEAD);
        Ok(())
    }

    fn new_uuid(&self) -> String {
        let hi = self.random_u64();
        let lo = self.random_u64();
        // Version 4 / RFC 4122 variant bits, so the id passes UUID validators.
        let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }

    fn new_token(&self) -> String {
        let mut bytes = [0u8; 24];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.random_u64().to_le_bytes());
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn random_u64(&self) -> u64 {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        self.id_seed.hash_one((n, nanos))
    }
}

/// How a credential check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    ApiKey,
    ClientId,
}

impl Sessions {
    fn purge(&mut self, now: Instant) {
        if now < self.next_purge {
            return;
        }
        self.next_purge = now + PURGE_EVERY;
        self.map.retain(|_, s| s.purge_at > now);
    }
}

fn live<'a>(
    map: &'a HashMap<String, Session>,
    req: &wire::SessionRequest,
    now: Instant,
) -> Result<&'a Session, SessionError> {
    let s = map.get(&req.session_id).ok_or(SessionError::NotFound)?;
    // The token is checked before the session state so a caller without the
    // token learns nothing about whether the session is still alive.
    if !req.session_token.is_empty() && req.session_token != s.token {
        return Err(SessionError::InvalidToken);
    }
    if s.logged_out {
        return Err(SessionError::LoggedOut);
    }
    if now >= s.expires_at {
        return Err(SessionError::Expired);
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn emulator() -> Arc<Emulator> {
        Emulator::new(EmulatorConfig {
            api_key: String::new(),
            client_id: None,
            expires_in: 60,
            users: super::super::default_users(),
        })
    }

    #[test]
    fn ids_look_like_uuids_and_tokens_are_url_safe() {
        let emu = emulator();
        let a = emu.create_session("518", None).unwrap();
        let b = emu.create_session(" 518 ", Some(5)).unwrap();
        assert_ne!(a.session_id, b.session_id);
        assert_ne!(a.session_token, b.session_token);
        assert_eq!(a.expires_in, 60);
        assert_eq!(b.expires_in, 5);
        let parts: Vec<usize> = a.session_id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(a.session_id.as_bytes()[14], b'4');
        assert!(a.session_token.len() >= 32);
        assert!(a
            .session_token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(emu.create_session("404404", None).is_none());
    }

    #[test]
    fn dead_sessions_are_purged_after_the_grace() {
        let emu = emulator();
        let s = emu.create_session("518", Some(0)).unwrap();
        let later = Instant::now() + KEEP_DEAD + PURGE_EVERY + Duration::from_secs(1);
        let mut sessions = lock(&emu.sessions);
        sessions.purge(Instant::now());
        assert!(sessions.map.contains_key(&s.session_id));
        sessions.next_purge = Instant::now();
        sessions.purge(later);
        assert!(sessions.map.is_empty());
    }

    #[test]
    fn huge_lifetimes_are_clamped_instead_of_overflowing() {
        let emu = emulator();
        let s = emu.create_session("518", Some(u64::MAX)).unwrap();
        assert_eq!(s.expires_in, MAX_LIFETIME_SECS);
    }
}
