//! What the EnOS, SSO identity and CIAM emulators share: the recorded
//! request their stats report, the `POST /__emulator/sessions` body and
//! answer, and the small JSON and plain-text answers of their routers.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::header::ALLOW;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::handlers::{json_response, text, EmuBody, Resp};
use super::Fault;

/// Request bodies are tiny JSON objects; anything bigger is a client bug.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// One IdP call as the emulator received it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Every header (lowercase names), values in arrival order.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The body, as text.
    pub body: String,
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
}

/// Answer of `POST /__emulator/sessions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// The session credential (the `[session] id_cookie` value).
    pub token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Session ids: keyed SipHash over a counter, unguessable enough for a test peer.
#[derive(Default)]
pub(crate) struct Ids {
    seed: std::hash::RandomState,
    counter: AtomicU64,
}

impl Ids {
    /// 128 fresh bits, as two halves each emulator formats its own way.
    pub(crate) fn next(&self) -> (u64, u64) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        (self.seed.hash_one((n, 1u8)), self.seed.hash_one((n, 2u8)))
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test peer keeps serving after a panic elsewhere rather than cascade.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The request as received (path without query), for the stats.
pub(crate) fn record(parts: &Parts, body: &[u8]) -> RecordedRequest {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

/// `POST /__emulator/sessions`: `create` makes the session from the body,
/// `None` (no such user) is a 404.
pub(crate) async fn create_session<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    create: impl FnOnce(T) -> Option<Created>,
) -> Resp {
    match read_json::<T>(req).await {
        Ok(body) => match create(body) {
            Some(c) => json_response(StatusCode::OK, &c),
            None => json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"message": "user not found"}),
            ),
        },
        Err(resp) => resp,
    }
}

/// The whole body, up to [`MAX_BODY`], or a 400.
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, Resp> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(bad_request("cannot read body")),
    }
}

/// `POST|PUT /__emulator/fault`: the [`Fault`] in the body, handed to
/// `set`; 204. A status outside 200..=599 is refused: 1xx cannot be a final
/// answer, and hyper would rewrite it to 500.
pub(crate) async fn set_fault(req: Request<Incoming>, set: impl FnOnce(Fault)) -> Resp {
    match read_json::<Fault>(req).await {
        Ok(Fault::Status { status } | Fault::RetryAfter { status, .. })
            if !(200..=599).contains(&status) =>
        {
            bad_request("status must be within 200..=599")
        }
        Ok(fault) => {
            tracing::info!(?fault, "emulator fault set");
            set(fault);
            let mut resp = Response::new(EmuBody::Full(http_body_util::Full::default()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        Err(resp) => resp,
    }
}

/// The JSON body of `req`, or a 400 to answer with.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Resp> {
    let body = read_body(req.into_body()).await?;
    serde_json::from_slice(&body).map_err(|_| bad_request("invalid JSON body"))
}

pub(crate) fn bad_request(message: &'static str) -> Resp {
    json_response(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "message": message }),
    )
}

/// 405 with the methods the path does accept.
pub(crate) fn method_not_allowed(allow: &'static str) -> Resp {
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        "method not allowed\n",
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

pub(crate) fn not_found() -> Resp {
    text(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "not found\n",
    )
}
