//! SSO identity session server (seed 003): the IdP peer for
//! `idp.provider = "sso_identity"` in `sessiongate emulator --provider
//! sso_identity`, `idp.emulate = true`, and the integration tests.
//!
//! # SSO surface
//! - `GET /sso/sessions/identities/{identity_token}.json` ("Read SSO
//!   session"): 200 with the seed's shape for a live session; 404
//!   (`flag: "error"`, `code: 404`) for an unknown or destroyed token; 410
//!   (`code: 410`) for an expired one.
//! - `DELETE` on the same path ("Destroy SSO session"): 200 (`flag:
//!   "success"`), or 404 for an unknown token.
//!
//! Dates are written as the seed writes them, at +01:00 with the `+` as a
//! space (`Sat, 04 Feb 2017 12:13:58  0100`). Users come from the users file
//! (config/users.json): `user_token` is `u<profileId>`, `top_realm` is
//! `"portal"`, `sub_realm` the profile type in lower case, `data` the user's
//! locale; identity and SSO session tokens are random, UUID-shaped.
//!
//! # Control surface (never counted, never faulted)
//! - `GET /__emulator/stats`: [`SsoIdentityStats`]: read and destroy counts,
//!   requests to any other path, and the last read or destroy request exactly
//!   as received (method, path, headers, body; nothing redacted, it is a test tool).
//! - `POST` (or `PUT`) `/__emulator/fault` with a [`Fault`] body: 204. Faults
//!   hit read and destroy.
//! - `POST /__emulator/sessions` with `{"profileId": "518", "expiresIn": 60}`:
//!   `{"token": "<identity_token>", "expiresIn": 60}`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::macros::offset;
use time::OffsetDateTime;
use tokio::net::TcpListener;

use super::control::{
    create_session, lock, method_not_allowed, not_found, read_body, record, set_fault,
    CreateRequest, Created, Ids, RecordedRequest,
};
use super::handlers::{apply_fault, json_response, Resp};
use super::users::{profile_key, User};
use super::Fault;
use crate::idp::sso_identity::{date, wire};
use crate::server::{serve, ServeOptions};

/// Longest lifetime accepted, so date arithmetic cannot overflow.
const MAX_LIFETIME_SECS: u64 = 366 * 24 * 60 * 60;

/// What the emulator has served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SsoIdentityStats {
    /// "Read SSO session" calls received.
    pub fetch: u64,
    /// "Destroy SSO session" calls received.
    pub logout: u64,
    /// Requests to any other path or method (a credential that escaped the
    /// identity path would show up here).
    pub other: u64,
    /// The last read or destroy request.
    pub last_request: Option<RecordedRequest>,
}

struct Session {
    user: Arc<User>,
    sso_session_token: String,
    created: OffsetDateTime,
    expires: OffsetDateTime,
}

/// Shared state of one emulated SSO API.
pub struct SsoIdentityEmulator {
    expires_in: u64,
    users: HashMap<String, Arc<User>>,
    /// By identity token.
    sessions: Mutex<HashMap<String, Session>>,
    fault: Mutex<Fault>,
    fetch: AtomicU64,
    logout: AtomicU64,
    other: AtomicU64,
    last: Mutex<Option<RecordedRequest>>,
    ids: Ids,
}

impl std::fmt::Debug for SsoIdentityEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoIdentityEmulator")
            .field("expires_in", &self.expires_in)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// Now, at the seed's +01:00.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().to_offset(offset!(+1))
}

fn seed_date(at: OffsetDateTime) -> String {
    date::format_seed_style(at).unwrap_or_default()
}

impl SsoIdentityEmulator {
    /// Builds the state; `expires_in` is the default session lifetime (seconds).
    pub fn new(users: Vec<User>, expires_in: u64) -> Arc<Self> {
        let users = users
            .into_iter()
            .filter_map(|u| Some((u.key()?, Arc::new(u))))
            .collect();
        Arc::new(Self {
            expires_in: expires_in.min(MAX_LIFETIME_SECS),
            users,
            sessions: Mutex::new(HashMap::new()),
            fault: Mutex::new(Fault::None),
            fetch: AtomicU64::new(0),
            logout: AtomicU64::new(0),
            other: AtomicU64::new(0),
            last: Mutex::new(None),
            ids: Ids::default(),
        })
    }

    /// A fresh random UUID-shaped token.
    fn new_token(&self) -> String {
        let (a, b) = self.ids.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// Starts an SSO session for `profile_id`; returns its identity token, or
    /// `None` for an unknown user.
    pub fn create_session(&self, profile_id: &str, expires_in: Option<u64>) -> Option<Created> {
        let user = self.users.get(profile_id.trim())?.clone();
        let secs = expires_in.unwrap_or(self.expires_in).min(MAX_LIFETIME_SECS);
        let token = self.new_token();
        let created = now();
        let session = Session {
            user,
            sso_session_token: self.new_token(),
            created,
            expires: created + time::Duration::seconds(i64::try_from(secs).unwrap_or_default()),
        };
        lock(&self.sessions).insert(token.clone(), session);
        Some(Created {
            token,
            expires_in: secs,
        })
    }

    /// Calls served so far and the last request.
    pub fn stats(&self) -> SsoIdentityStats {
        SsoIdentityStats {
            fetch: self.fetch.load(Ordering::Relaxed),
            logout: self.logout.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
            last_request: lock(&self.last).clone(),
        }
    }

    /// Replaces the injected fault; `Fault::None` restores normal answers.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.fault) = fault;
    }

    /// "Read SSO session" for `token`: status and answer.
    fn read(&self, token: &str, resource: &str) -> (StatusCode, wire::Answer) {
        let sessions = lock(&self.sessions);
        let Some(s) = sessions.get(token) else {
            return failure(StatusCode::NOT_FOUND, resource, "SSO session not found");
        };
        if now() >= s.expires {
            return failure(StatusCode::GONE, resource, "SSO session expired");
        }
        (StatusCode::OK, session_answer(token, resource, s))
    }

    /// "Destroy SSO session" for `token`.
    fn destroy(&self, token: &str, resource: &str) -> (StatusCode, wire::Answer) {
        if lock(&self.sessions).remove(token).is_none() {
            return failure(StatusCode::NOT_FOUND, resource, "SSO session not found");
        }
        let mut answer = envelope(
            resource,
            wire::FLAG_SUCCESS,
            200,
            "Your request has been processed successfully",
        );
        if let Some(r) = answer.response.as_mut() {
            r.result = None;
        }
        (StatusCode::OK, answer)
    }
}

fn envelope(resource: &str, flag: &str, code: u16, info: &str) -> wire::Answer {
    wire::Answer {
        response: Some(wire::Response {
            request: Some(wire::RequestInfo {
                date: Some(seed_date(now())),
                resource: Some(resource.to_owned()),
                status: Some(wire::Status {
                    flag: Some(flag.to_owned()),
                    code: Some(Value::from(code)),
                    info: Some(info.to_owned()),
                }),
            }),
            result: None,
        }),
    }
}

fn failure(status: StatusCode, resource: &str, info: &str) -> (StatusCode, wire::Answer) {
    (
        status,
        envelope(resource, wire::FLAG_ERROR, status.as_u16(), info),
    )
}

/// The seed's answer for a live session, filled from the user.
fn session_answer(token: &str, resource: &str, s: &Session) -> wire::Answer {
    let id = s.user.key().unwrap_or_default();
    let sub_realm = s
        .user
        .profile
        .kind
        .as_deref()
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "default".to_owned());
    let mut answer = envelope(
        resource,
        wire::FLAG_SUCCESS,
        200,
        "Your request has been processed successfully",
    );
    if let Some(r) = answer.response.as_mut() {
        r.result = Some(wire::ResultBody {
            data: Some(wire::Data {
                sso_session: Some(wire::SsoSession {
                    sso_session_token: Some(s.sso_session_token.clone()),
                    user_token: Some(format!("u{id}")),
                    identity_token: Some(token.to_owned()),
                    top_realm: Some("portal".to_owned()),
                    sub_realm: Some(sub_realm),
                    data: Some(Value::from(s.user.locale.clone())),
                    num_cookies_set: Some(0),
                    date_creation: Some(seed_date(s.created)),
                    date_expiration: Some(seed_date(s.expires)),
                }),
            }),
        });
    }
    answer
}

/// Serves the SSO identity emulator on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    emulator: Arc<SsoIdentityEmulator>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(
        listener,
        ServeOptions::default(),
        move |req, _peer| handle(emulator.clone(), req),
        shutdown,
    )
    .await
}

/// The identity token in `/sso/sessions/identities/{token}.json`, if `path`
/// is that resource (any token text: the emulator judges it, not the path).
fn identity_of(path: &str) -> Option<&str> {
    path.strip_prefix(wire::PATH_IDENTITIES)?
        .strip_suffix(wire::PATH_SUFFIX)
}

async fn handle(emu: Arc<SsoIdentityEmulator>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (path.as_str(), &method) {
        ("/__emulator/stats", &Method::GET) => json_response(StatusCode::OK, &emu.stats()),
        ("/__emulator/fault", &Method::POST | &Method::PUT) => {
            set_fault(req, |fault| emu.set_fault(fault)).await
        }
        ("/__emulator/sessions", &Method::POST) => {
            create_session(req, |body: CreateRequest| {
                body.profile_id
                    .as_ref()
                    .and_then(profile_key)
                    .and_then(|p| emu.create_session(&p, body.expires_in))
            })
            .await
        }
        ("/__emulator/stats" | "/__emulator/fault" | "/__emulator/sessions", _) => {
            method_not_allowed(if path == "/__emulator/stats" {
                "GET"
            } else {
                "POST"
            })
        }
        (p, &Method::GET | &Method::DELETE) if identity_of(p).is_some() => {
            identity_session(&emu, req).await
        }
        (p, _) if identity_of(p).is_some() => {
            emu.other.fetch_add(1, Ordering::Relaxed);
            method_not_allowed("GET, DELETE")
        }
        _ => {
            emu.other.fetch_add(1, Ordering::Relaxed);
            not_found()
        }
    }
}

/// Read or destroy: recorded, counted and faulted like the other emulators' session calls.
async fn identity_session(emu: &SsoIdentityEmulator, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    let counter = if parts.method == Method::DELETE {
        &emu.logout
    } else {
        &emu.fetch
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let resource = parts.uri.path();
    *lock(&emu.last) = Some(record(&parts, &body));
    let fault = lock(&emu.fault).clone();
    if let Some(faulted) = apply_fault(fault).await {
        return faulted;
    }
    let token = identity_of(resource).unwrap_or_default();
    if !wire::is_valid_token(token) {
        let (status, answer) = failure(StatusCode::NOT_FOUND, resource, "SSO session not found");
        return json_response(status, &answer);
    }
    let (status, answer) = if parts.method == Method::DELETE {
        emu.destroy(token, resource)
    } else {
        emu.read(token, resource)
    };
    json_response(status, &answer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    use crate::dev::emulator::default_users;
    use crate::idp::sso_identity::classify;
    use crate::idp::Verdict;

    fn body(answer: &wire::Answer) -> Vec<u8> {
        serde_json::to_vec(answer).unwrap()
    }

    /// The emulator's answers are exactly what the client accepts, refuses
    /// and reads, so the tests built on it test the client.
    #[test]
    fn its_answers_classify_as_the_client_expects() {
        let emu = SsoIdentityEmulator::new(default_users(), 600);
        let token = emu.create_session("518", None).unwrap().token;
        assert!(wire::is_valid_token(&token), "{token}");
        let path = wire::identity_path(&token);
        let (status, answer) = emu.read(&token, &path);
        let text = String::from_utf8(body(&answer)).unwrap();
        assert!(text.contains(r#""date_expiration":""#), "{text}");
        assert!(text.contains("  0100\""), "seed-style dates: {text}");
        let Ok(Verdict::Valid {
            identity,
            expires_in,
        }) = classify(status, &body(&answer), &token, SystemTime::now())
        else {
            panic!("not valid: {text}")
        };
        assert_eq!(identity.subject, "u518");
        assert!(
            expires_in > Duration::from_secs(590) && expires_in <= Duration::from_secs(600),
            "{expires_in:?}"
        );
        assert_eq!(identity.context["topRealm"], "portal");
        assert_eq!(identity.context["subRealm"], "individual");
        assert_eq!(identity.context["data"], "en");

        let (status, answer) = emu.read("unknown", &wire::identity_path("unknown"));
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(matches!(
            classify(status, &body(&answer), "unknown", SystemTime::now()),
            Ok(Verdict::Invalid { .. })
        ));

        let expired = emu.create_session("518", Some(0)).unwrap().token;
        let (status, _) = emu.read(&expired, &wire::identity_path(&expired));
        assert_eq!(status, StatusCode::GONE);

        assert_eq!(emu.destroy(&token, &path).0, StatusCode::OK);
        assert_eq!(emu.read(&token, &path).0, StatusCode::NOT_FOUND);
        assert_eq!(emu.destroy(&token, &path).0, StatusCode::NOT_FOUND);
        assert!(emu.create_session("no-such-user", None).is_none());
    }

    #[test]
    fn tokens_are_unique_and_url_safe() {
        let emu = SsoIdentityEmulator::new(default_users(), 60);
        let a = emu.new_token();
        let b = emu.new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36, "{a}");
        assert!(wire::is_valid_token(&a), "{a}");
    }
}
