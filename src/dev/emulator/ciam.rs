//! CIAM-compatible session-token exchange (seed 004) with a userinfo
//! endpoint: the IdP peer for `idp.provider = "ciam"` in `sessiongate
//! emulator --provider ciam`, `idp.emulate = true`, and the integration tests.
//!
//! # CIAM surface
//! Both calls need `Authorization: Bearer <access token>` when the emulator
//! has one (else any bearer passes); a wrong one is 401 `invalid_token`.
//! - `POST /api/v2/tenant/sso/session-token/sso-ticket` with the seed's body:
//!   200 `{"expire": <seconds the session has left>, "sso_ticket": "ssoTicket-..."}`
//!   for a live session; 401 `invalid_session_token` for an unknown or
//!   expired one; 400 `invalid_request` when a required field is missing or empty.
//! - `GET /api/v2/tenant/sso/userinfo?sso_ticket=...`: redeems the ticket
//!   once (a second use is 401 `invalid_ticket`) for
//!   [`wire::UserInfo`]: `sub` (the profile id), `name`, `locale`, `email`,
//!   `phone`, `roles` (role codes) and `permissions`, from the users file.
//!
//! # Control surface (never counted, never faulted)
//! - `GET /__emulator/stats`: [`CiamStats`]: call counts and the last request
//!   of each kind exactly as received (nothing redacted, it is a test tool).
//! - `POST` (or `PUT`) `/__emulator/fault` with a [`Fault`] body: faults the
//!   exchange; `/__emulator/userinfo-fault`: faults userinfo. 204.
//! - `POST /__emulator/sessions` with `{"profileId": "518", "expiresIn": 60}`:
//!   `{"token": "...", "expiresIn": 60}`; `"ticket": "..."` makes every
//!   exchange for that session answer this fixed (unredeemable) ticket, so
//!   tests can send an empty one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

use super::control::{
    create_session, lock, method_not_allowed, not_found, read_body, set_fault, Created, Ids,
    RecordedRequest,
};
use super::handlers::{apply_fault, json_response, Resp};
use super::users::{profile_key, User};
use super::Fault;
use crate::idp::ciam::wire;
use crate::server::{serve, ServeOptions};

/// Longest lifetime accepted, so `Instant` arithmetic cannot overflow.
const MAX_LIFETIME_SECS: u64 = 366 * 24 * 60 * 60;
/// Control paths, answered 405 for other methods.
const FAULT_PATH: &str = "/__emulator/fault";
const USERINFO_FAULT_PATH: &str = "/__emulator/userinfo-fault";
const STATS_PATH: &str = "/__emulator/stats";
const SESSIONS_PATH: &str = "/__emulator/sessions";

/// What the emulator has served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiamStats {
    /// Exchange calls received (faulted or not).
    pub exchange: u64,
    /// Userinfo calls received (faulted or not).
    pub userinfo: u64,
    /// Calls refused for a wrong access token.
    pub rejected_access_token: u64,
    /// The last exchange request.
    pub last_request: Option<RecordedRequest>,
    /// The last userinfo request.
    pub last_userinfo: Option<RecordedRequest>,
}

/// Body of `POST /__emulator/sessions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    /// Profile id of a user in the users file (number or string).
    #[serde(default)]
    pub profile_id: Option<Value>,
    /// Lifetime in seconds (default: the emulator's).
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// A fixed ticket every exchange answers for this session (tests).
    #[serde(default)]
    pub ticket: Option<String>,
}

struct Session {
    user: Arc<User>,
    ends: Instant,
    fixed_ticket: Option<String>,
}

struct Ticket {
    user: Arc<User>,
    ends: Instant,
}

/// Shared state of one emulated CIAM tenant.
pub struct CiamEmulator {
    expires_in: u64,
    access_token: String,
    users: HashMap<String, Arc<User>>,
    sessions: Mutex<HashMap<String, Session>>,
    tickets: Mutex<HashMap<String, Ticket>>,
    fault: Mutex<Fault>,
    userinfo_fault: Mutex<Fault>,
    exchange: AtomicU64,
    userinfo: AtomicU64,
    rejected: AtomicU64,
    last: Mutex<Option<RecordedRequest>>,
    last_userinfo: Mutex<Option<RecordedRequest>>,
    ids: Ids,
}

impl std::fmt::Debug for CiamEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CiamEmulator")
            .field("expires_in", &self.expires_in)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl CiamEmulator {
    /// Builds the state; `expires_in` is the default session lifetime
    /// (seconds); `access_token` is the bearer the gateway must send (empty:
    /// any).
    pub fn new(users: Vec<User>, expires_in: u64, access_token: &str) -> Arc<Self> {
        let users = users
            .into_iter()
            .filter_map(|u| Some((u.key()?, Arc::new(u))))
            .collect();
        Arc::new(Self {
            expires_in: expires_in.min(MAX_LIFETIME_SECS),
            access_token: access_token.to_owned(),
            users,
            sessions: Mutex::new(HashMap::new()),
            tickets: Mutex::new(HashMap::new()),
            fault: Mutex::new(Fault::None),
            userinfo_fault: Mutex::new(Fault::None),
            exchange: AtomicU64::new(0),
            userinfo: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            last: Mutex::new(None),
            last_userinfo: Mutex::new(None),
            ids: Ids::default(),
        })
    }

    fn random_hex(&self) -> String {
        let (a, b) = self.ids.next();
        format!("{a:016x}{b:016x}")
    }

    /// Logs `profile_id` in; returns the session token, or `None` for an unknown user.
    pub fn create_session(&self, profile_id: &str, expires_in: Option<u64>) -> Option<Created> {
        self.create_session_with(profile_id, expires_in, None)
    }

    /// [`Self::create_session`] whose exchanges all answer `ticket`.
    pub fn create_session_with(
        &self,
        profile_id: &str,
        expires_in: Option<u64>,
        fixed_ticket: Option<String>,
    ) -> Option<Created> {
        let user = self.users.get(profile_id.trim())?.clone();
        let expires = expires_in.unwrap_or(self.expires_in).min(MAX_LIFETIME_SECS);
        let token = self.random_hex();
        lock(&self.sessions).insert(
            token.clone(),
            Session {
                user,
                ends: Instant::now() + Duration::from_secs(expires),
                fixed_ticket,
            },
        );
        Some(Created {
            token,
            expires_in: expires,
        })
    }

    /// Calls served so far and the last requests.
    pub fn stats(&self) -> CiamStats {
        CiamStats {
            exchange: self.exchange.load(Ordering::Relaxed),
            userinfo: self.userinfo.load(Ordering::Relaxed),
            rejected_access_token: self.rejected.load(Ordering::Relaxed),
            last_request: lock(&self.last).clone(),
            last_userinfo: lock(&self.last_userinfo).clone(),
        }
    }

    /// Replaces the fault injected into the exchange.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.fault) = fault;
    }

    /// Replaces the fault injected into userinfo.
    pub fn set_userinfo_fault(&self, fault: Fault) {
        *lock(&self.userinfo_fault) = fault;
    }

    /// True when `parts` carries the access token (or none is required).
    fn authorized(&self, parts: &Parts) -> bool {
        if self.access_token.is_empty() {
            return true;
        }
        let ok = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            == Some(self.access_token.as_str());
        if !ok {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The exchange's answer for a parsed request.
    fn exchange_answer(&self, req: &wire::TicketRequest) -> Resp {
        for (field, value) in [
            ("session_token", &req.session_token),
            ("operating_sys_version", &req.operating_sys_version),
            ("device_ip", &req.device_ip),
            ("device_fingerprint", &req.device_fingerprint),
        ] {
            if value.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("{field} is required"),
                );
            }
        }
        let now = Instant::now();
        let (user, left, fixed) = {
            let sessions = lock(&self.sessions);
            match sessions.get(&req.session_token) {
                Some(s) if s.ends > now => (s.user.clone(), s.ends - now, s.fixed_ticket.clone()),
                _ => {
                    return error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_session_token",
                        "The session token is invalid or expired.",
                    )
                }
            }
        };
        let ticket = match fixed {
            Some(t) => t,
            None => {
                let t = format!("ssoTicket-{}", self.random_hex());
                let mut tickets = lock(&self.tickets);
                // Redeemed or dead tickets go as new ones come; the map stays small.
                tickets.retain(|_, t| t.ends > now);
                tickets.insert(
                    t.clone(),
                    Ticket {
                        user,
                        ends: now + left,
                    },
                );
                t
            }
        };
        json_response(
            StatusCode::OK,
            &wire::TicketResponse {
                expire: Some(left.as_secs() as f64),
                sso_ticket: Some(ticket),
            },
        )
    }

    /// Redeems `ticket` (once) for the user's info.
    fn userinfo_answer(&self, ticket: Option<&str>) -> Resp {
        let found = ticket.and_then(|t| lock(&self.tickets).remove(t));
        match found {
            Some(t) if t.ends > Instant::now() => {
                json_response(StatusCode::OK, &user_info(&t.user))
            }
            _ => error(
                StatusCode::UNAUTHORIZED,
                "invalid_ticket",
                "The sso_ticket is invalid, expired or already used.",
            ),
        }
    }
}

/// The users file mapped onto userinfo.
fn user_info(user: &User) -> wire::UserInfo {
    let profile = &user.profile;
    wire::UserInfo {
        sub: user.key().unwrap_or_default(),
        name: profile.name_en.clone(),
        locale: Some(user.locale.clone()),
        email: profile.email.clone(),
        phone: profile.mobile_no.clone(),
        roles: user
            .user_roles
            .iter()
            .filter_map(|r| r.code.clone())
            .collect(),
        permissions: user.user_permissions.clone(),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json_response(
        status,
        &serde_json::json!({"error": code, "message": message}),
    )
}

/// Serves the CIAM emulator on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    emulator: Arc<CiamEmulator>,
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

async fn handle(emu: Arc<CiamEmulator>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (path.as_str(), &method) {
        (wire::PATH_SSO_TICKET, &Method::POST) => exchange(&emu, req).await,
        (wire::PATH_USERINFO, &Method::GET) => userinfo(&emu, req).await,
        (STATS_PATH, &Method::GET) => json_response(StatusCode::OK, &emu.stats()),
        (p @ (FAULT_PATH | USERINFO_FAULT_PATH), &Method::POST | &Method::PUT) => {
            set_fault(req, |fault| {
                if p == FAULT_PATH {
                    emu.set_fault(fault);
                } else {
                    emu.set_userinfo_fault(fault);
                }
            })
            .await
        }
        (SESSIONS_PATH, &Method::POST) => {
            create_session(req, |body: CreateRequest| {
                body.profile_id
                    .as_ref()
                    .and_then(profile_key)
                    .and_then(|p| emu.create_session_with(&p, body.expires_in, body.ticket))
            })
            .await
        }
        (
            p @ (wire::PATH_SSO_TICKET
            | wire::PATH_USERINFO
            | STATS_PATH
            | FAULT_PATH
            | USERINFO_FAULT_PATH
            | SESSIONS_PATH),
            _,
        ) => method_not_allowed(if matches!(p, STATS_PATH | wire::PATH_USERINFO) {
            "GET"
        } else {
            "POST"
        }),
        _ => not_found(),
    }
}

/// The request as received, query included (userinfo's ticket is there), for the stats.
fn record(parts: &Parts, body: &[u8]) -> RecordedRequest {
    RecordedRequest {
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
        ..super::control::record(parts, body)
    }
}

async fn exchange(emu: &CiamEmulator, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    // The body is read before the fault so a faulted answer leaves the
    // connection in a clean state for keep-alive, like a real slow server.
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    emu.exchange.fetch_add(1, Ordering::Relaxed);
    *lock(&emu.last) = Some(record(&parts, &body));
    let fault = lock(&emu.fault).clone();
    if let Some(faulted) = apply_fault(fault).await {
        return faulted;
    }
    if !emu.authorized(&parts) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Invalid access token.",
        );
    }
    match serde_json::from_slice::<wire::TicketRequest>(&body) {
        Ok(req) => emu.exchange_answer(&req),
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must hold session_token, operating_sys_version, device_ip and device_fingerprint.",
        ),
    }
}

async fn userinfo(emu: &CiamEmulator, req: Request<Incoming>) -> Resp {
    let (parts, _body) = req.into_parts();
    emu.userinfo.fetch_add(1, Ordering::Relaxed);
    *lock(&emu.last_userinfo) = Some(record(&parts, b""));
    let fault = lock(&emu.userinfo_fault).clone();
    if let Some(faulted) = apply_fault(fault).await {
        return faulted;
    }
    if !emu.authorized(&parts) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Invalid access token.",
        );
    }
    let ticket = parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix(wire::QUERY_TICKET)?.strip_prefix('='))
            .and_then(|v| percent_decode_str(v).decode_utf8().ok())
    });
    emu.userinfo_answer(ticket.as_deref())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dev::emulator::default_users;

    #[test]
    fn tickets_are_one_time_and_userinfo_maps_the_users_file() {
        let emu = CiamEmulator::new(default_users(), 60, "at");
        let token = emu.create_session("518", None).unwrap().token;
        let req = wire::TicketRequest {
            session_token: token,
            operating_sys_version: "unknown".into(),
            device_ip: "127.0.0.1".into(),
            device_fingerprint: "f".into(),
            agent: None,
        };
        assert_eq!(emu.exchange_answer(&req).status(), StatusCode::OK);
        let ticket = lock(&emu.tickets).keys().next().cloned().unwrap();
        assert!(ticket.starts_with("ssoTicket-"));
        assert_eq!(emu.userinfo_answer(Some(&ticket)).status(), StatusCode::OK);
        assert_eq!(
            emu.userinfo_answer(Some(&ticket)).status(),
            StatusCode::UNAUTHORIZED,
            "second use"
        );
        let info = user_info(emu.users.get("518").unwrap());
        assert_eq!(info.sub, "518");
        assert_eq!(info.roles, ["IID-INVESTOR"]);
        assert_eq!(info.permissions.len(), 36);

        let unknown = wire::TicketRequest {
            session_token: "nope".into(),
            ..req.clone()
        };
        assert_eq!(
            emu.exchange_answer(&unknown).status(),
            StatusCode::UNAUTHORIZED
        );
        let missing = wire::TicketRequest {
            device_ip: String::new(),
            ..req
        };
        assert_eq!(
            emu.exchange_answer(&missing).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
