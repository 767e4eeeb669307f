//! EnOS IAM-compatible session server (seed 002): the IdP peer for
//! `idp.provider = "enos"` in `sessiongate emulator --provider enos`,
//! `idp.emulate = true`, and the integration tests.
//!
//! # EnOS surface
//! `POST /enos-iam-service/v2.0/session/info` with `Authorization: Bearer <token>`:
//! 200 with the seed's shape for a live session; 401 `status: 30401` for an
//! unknown token; 200 `fail: true, status: 30404` for an expired one.
//! Users come from the users file (config/users.json): user id `u<profileId>`,
//! name, e-mail and phone from the profile; organization ids and names are
//! invented (`o<profileId>`, `"Example Organization <profileId>"`).
//!
//! # Control surface (never counted, never faulted)
//! - `GET /__emulator/stats`: [`EnosStats`]: fetch count and the last
//!   session-info request exactly as received (method, path, headers, body;
//!   nothing redacted, it is a test tool).
//! - `POST` (or `PUT`) `/__emulator/fault` with a [`Fault`] body: 204.
//! - `POST /__emulator/sessions` with `{"profileId": "518", "expiresIn": 60}`:
//!   `{"token": "...", "expiresIn": 60}`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

use super::control::{
    create_session, lock, method_not_allowed, not_found, read_body, record, set_fault, Ids,
};
pub use super::control::{CreateRequest, Created, RecordedRequest};
use super::handlers::{apply_fault, json_response, Resp};
use super::users::{profile_key, User};
use super::Fault;
use crate::idp::enos::wire;
use crate::server::{serve, ServeOptions};

/// Longest lifetime accepted, so epoch arithmetic cannot overflow.
const MAX_LIFETIME_SECS: u64 = 366 * 24 * 60 * 60;

/// What the emulator has served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnosStats {
    /// Session-info calls received.
    pub fetch: u64,
    /// The last of them.
    pub last_request: Option<RecordedRequest>,
}

struct Session {
    user: Arc<User>,
    /// Epoch seconds, as `refreshTime` reports it.
    refresh_time: u64,
    expires: u64,
}

/// Shared state of one emulated EnOS IAM.
pub struct EnosEmulator {
    expires_in: u64,
    users: HashMap<String, Arc<User>>,
    sessions: Mutex<HashMap<String, Session>>,
    fault: Mutex<Fault>,
    fetch: AtomicU64,
    last: Mutex<Option<RecordedRequest>>,
    ids: Ids,
}

impl std::fmt::Debug for EnosEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnosEmulator")
            .field("expires_in", &self.expires_in)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl EnosEmulator {
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
            last: Mutex::new(None),
            ids: Ids::default(),
        })
    }

    /// Logs `profile_id` in; returns the bearer token, or `None` for an unknown user.
    pub fn create_session(&self, profile_id: &str, expires_in: Option<u64>) -> Option<Created> {
        let user = self.users.get(profile_id.trim())?.clone();
        let expires = expires_in.unwrap_or(self.expires_in).min(MAX_LIFETIME_SECS);
        let (a, b) = self.ids.next();
        let token = format!("IAM_S_{a:016x}{b:016x}");
        lock(&self.sessions).insert(
            token.clone(),
            Session {
                user,
                refresh_time: epoch_secs() as u64,
                expires,
            },
        );
        Some(Created {
            token,
            expires_in: expires,
        })
    }

    /// Calls served so far and the last request.
    pub fn stats(&self) -> EnosStats {
        EnosStats {
            fetch: self.fetch.load(Ordering::Relaxed),
            last_request: lock(&self.last).clone(),
        }
    }

    /// Replaces the injected fault; `Fault::None` restores normal answers.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.fault) = fault;
    }

    /// The answer for `token`: status and body.
    fn answer(&self, token: Option<&str>) -> (StatusCode, wire::SessionInfoResponse) {
        let sessions = lock(&self.sessions);
        let Some(s) = token.and_then(|t| sessions.get(t).map(|s| (t, s))) else {
            return (
                StatusCode::UNAUTHORIZED,
                failure(
                    wire::STATUS_INVALID_TOKEN,
                    "The provided bearer token is not valid.",
                ),
            );
        };
        let (token, s) = s;
        if epoch_secs() >= (s.refresh_time + s.expires) as f64 {
            return (
                StatusCode::OK,
                failure(
                    wire::STATUS_NOT_FOUND,
                    "The session information is not found.",
                ),
            );
        }
        (StatusCode::OK, session_answer(token, s))
    }
}

fn failure(status: i64, message: &str) -> wire::SessionInfoResponse {
    wire::SessionInfoResponse {
        fail: Some(true),
        session: None,
        success: Some(false),
        request_id: None,
        failed: Some(true),
        message: Some(message.to_owned()),
        status: Some(status),
        successful: Some(false),
    }
}

/// The seed's answer for a live session, filled from the user.
fn session_answer(token: &str, s: &Session) -> wire::SessionInfoResponse {
    let profile = &s.user.profile;
    let id = s.user.key().unwrap_or_default();
    let org = wire::Organization {
        domain: Some(format!("example_{id}")),
        name: Some(format!("Example Organization {id}")),
        id: Some(format!("o{id}")),
    };
    wire::SessionInfoResponse {
        fail: Some(false),
        session: Some(wire::Session {
            working_organization: Some(org.clone()),
            expires: Some(s.expires as f64),
            create_time: i64::try_from(s.refresh_time).ok(),
            resident_organization: Some(wire::Organization {
                domain: None,
                ..org.clone()
            }),
            refresh_time: Some(s.refresh_time as f64),
            id: Some(token.to_owned()),
            user: Some(wire::User {
                id: Some(format!("u{id}")),
                name: profile.name_en.clone(),
                kind: Some(Value::from(
                    if profile.kind.as_deref() == Some("INDIVIDUAL") {
                        2
                    } else {
                        1
                    },
                )),
                organization_id: org.id,
                email: profile.email.clone(),
                phone: profile.mobile_no.clone(),
            }),
        }),
        success: Some(true),
        request_id: None,
        failed: Some(false),
        message: Some(String::new()),
        status: Some(0),
        successful: Some(true),
    }
}

/// Serves the EnOS emulator on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    emulator: Arc<EnosEmulator>,
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

fn session_info_path() -> String {
    format!("{}{}", wire::SERVICE_PATH, wire::PATH_SESSION_INFO)
}

async fn handle(emu: Arc<EnosEmulator>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (path.as_str(), &method) {
        (p, &Method::POST) if p == session_info_path() => session_info(&emu, req).await,
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
        (p, _)
            if p == session_info_path()
                || matches!(
                    p,
                    "/__emulator/stats" | "/__emulator/fault" | "/__emulator/sessions"
                ) =>
        {
            method_not_allowed(if p == "/__emulator/stats" {
                "GET"
            } else {
                "POST"
            })
        }
        _ => not_found(),
    }
}

async fn session_info(emu: &EnosEmulator, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    emu.fetch.fetch_add(1, Ordering::Relaxed);
    *lock(&emu.last) = Some(record(&parts, &body));
    let fault = lock(&emu.fault).clone();
    if let Some(faulted) = apply_fault(fault).await {
        return faulted;
    }
    let token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let (status, answer) = emu.answer(token);
    json_response(status, &answer)
}
