//! HTTP surface of the emulator: routing, the IID envelope and faults.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use serde::Serialize;
use serde_json::Value;

use super::sign_in;
use super::state::{Credential, Emulator, Endpoint, Fault, SessionError};
use super::BASE_PATH;
use crate::idp::iid::wire;

/// Request bodies are tiny JSON objects; anything bigger is a client bug.
const MAX_BODY: usize = 64 * 1024;
const JSON: &str = "application/json; charset=utf-8";

/// Response body: a complete buffer, or one that fails at once so hyper
/// aborts the connection (how `Fault::Close` drops a call without answering).
pub(crate) enum EmuBody {
    Full(Full<Bytes>),
    Abort(bool),
}

impl Body for EmuBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|e: Infallible| match e {}))),
            Self::Abort(done) => {
                if *done {
                    return Poll::Ready(None);
                }
                *done = true;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "emulated fault: close",
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(full) => full.is_end_stream(),
            Self::Abort(done) => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(full) => full.size_hint(),
            Self::Abort(_) => SizeHint::default(),
        }
    }
}

pub(crate) type Resp = Response<EmuBody>;

/// The four calls that act on an existing session, all subject to faults.
#[derive(Clone, Copy)]
enum SessionOp {
    Fetch,
    Validate,
    Refresh,
    Logout,
}

enum Route {
    Create,
    Session(SessionOp),
    Stats,
    Fault,
    Sessions,
    SignIn,
}

fn route(path: &str) -> Option<Route> {
    if let Some(rest) = path.strip_prefix(BASE_PATH) {
        return match rest {
            wire::PATH_CREATE => Some(Route::Create),
            wire::PATH_FETCH => Some(Route::Session(SessionOp::Fetch)),
            wire::PATH_VALIDATE => Some(Route::Session(SessionOp::Validate)),
            wire::PATH_REFRESH => Some(Route::Session(SessionOp::Refresh)),
            wire::PATH_LOGOUT => Some(Route::Session(SessionOp::Logout)),
            _ => None,
        };
    }
    match path {
        "/__emulator/stats" => Some(Route::Stats),
        "/__emulator/fault" => Some(Route::Fault),
        "/__emulator/sessions" => Some(Route::Sessions),
        "/login" => Some(Route::SignIn),
        _ => None,
    }
}

/// Answers one request.
pub(crate) async fn handle(emu: Arc<Emulator>, req: Request<Incoming>) -> Resp {
    let Some(route) = route(req.uri().path()) else {
        return envelope(StatusCode::NOT_FOUND, "Not Found", "غير موجود", None);
    };
    let (allowed, method) = match route {
        Route::Create | Route::Session(_) | Route::Sessions => (Method::POST, "POST"),
        Route::Stats => (Method::GET, "GET"),
        Route::Fault => (Method::PUT, "PUT"),
        // Two methods and HTML answers: handled apart from the JSON API.
        Route::SignIn => return sign_in_page(&emu, req).await,
    };
    if req.method() != allowed {
        let mut resp = envelope(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "الطريقة غير مسموح بها",
            None,
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(method));
        return resp;
    }
    match route {
        Route::Create => {
            if let Some(resp) = refused(&emu, &req) {
                return resp;
            }
            emu.count(Endpoint::Create);
            match read_json::<wire::CreateRequest>(req).await {
                Ok(body) => create(&emu, &body),
                Err(resp) => resp,
            }
        }
        Route::Session(op) => {
            if let Some(resp) = refused(&emu, &req) {
                return resp;
            }
            emu.count(match op {
                SessionOp::Fetch => Endpoint::Fetch,
                SessionOp::Validate => Endpoint::Validate,
                SessionOp::Refresh => Endpoint::Refresh,
                SessionOp::Logout => Endpoint::Logout,
            });
            session(&emu, op, req).await
        }
        Route::Stats => json_response(StatusCode::OK, &emu.stats()),
        Route::Fault => set_fault(&emu, req).await,
        Route::Sessions => match read_json::<wire::CreateRequest>(req).await {
            Ok(body) => create(&emu, &body),
            Err(resp) => resp,
        },
        Route::SignIn => sign_in_page(&emu, req).await,
    }
}

/// `/login`: the page (GET) and the choice of a user (POST).
async fn sign_in_page(emu: &Emulator, req: Request<Incoming>) -> Resp {
    let Some(cfg) = emu.sign_in() else {
        let resp = sign_in::text(
            StatusCode::NOT_FOUND,
            "no sign-in page: start the emulator with --app-origin\n",
        );
        return resp.map(EmuBody::Full);
    };
    let resp = match *req.method() {
        Method::GET | Method::HEAD => sign_in::page(emu, cfg, req.uri().query()),
        Method::POST => {
            let host = req.headers().get(HOST).cloned();
            match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(form) => sign_in::submit(emu, cfg, host.as_ref(), &form.to_bytes()),
                Err(_) => sign_in::text(StatusCode::BAD_REQUEST, "cannot read the form\n"),
            }
        }
        _ => {
            let mut resp = sign_in::text(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n");
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST"));
            resp
        }
    };
    resp.map(EmuBody::Full)
}

/// The 401 for wrong integration credentials; calls refused here are not counted
/// under their endpoint, so tests can tell "rejected" from "served".
fn refused(emu: &Emulator, req: &Request<Incoming>) -> Option<Resp> {
    let headers = req.headers();
    let api_key = headers.get(wire::HEADER_API_KEY).map(HeaderValue::as_bytes);
    let client_id = headers
        .get(wire::HEADER_CLIENT_ID)
        .map(HeaderValue::as_bytes);
    emu.check_credentials(api_key, client_id)
        .err()
        .map(|failed| match failed {
            Credential::ApiKey => error(
                StatusCode::UNAUTHORIZED,
                "Invalid API Key",
                "مفتاح API غير صالح",
            ),
            Credential::ClientId => error(
                StatusCode::UNAUTHORIZED,
                "Invalid Client Id",
                "معرف العميل غير صالح",
            ),
        })
}

/// The injected fault, shared by every emulator: a delay, or the answer to
/// send instead of the real one (`None`: answer normally).
pub(super) async fn apply_fault(fault: Fault) -> Option<Resp> {
    match fault {
        Fault::None => None,
        Fault::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        Fault::Status { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(text(
                status,
                "text/plain; charset=utf-8",
                "emulated fault\n",
            ))
        }
        Fault::RetryAfter { status, secs } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut resp = text(status, "text/plain; charset=utf-8", "emulated fault\n");
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            Some(resp)
        }
        Fault::Hang => std::future::pending().await,
        Fault::Garbage => Some(text(StatusCode::OK, "text/html", "<html>not json")),
        Fault::Close => {
            tokio::task::yield_now().await;
            Some(Response::new(EmuBody::Abort(false)))
        }
    }
}

async fn session(emu: &Emulator, op: SessionOp, req: Request<Incoming>) -> Resp {
    // The body is read before the fault so a faulted answer leaves the
    // connection in a clean state for keep-alive, like a real slow server.
    let body = read_json::<wire::SessionRequest>(req).await;
    if let Some(faulted) = apply_fault(emu.fault()).await {
        return faulted;
    }
    let body = match body {
        Ok(body) if body.session_id.is_empty() => {
            return bad_request("sessionId is required".to_owned())
        }
        Ok(body) => body,
        Err(resp) => return resp,
    };
    match op {
        SessionOp::Fetch => match emu.alive(&body) {
            Ok(alive) => success(child_session(&body.session_id, &alive)),
            Err(err) => session_error(err),
        },
        SessionOp::Validate => match emu.alive(&body) {
            Ok(alive) => success(wire::Validation {
                valid: true,
                expires_in: alive.expires_in,
            }),
            Err(err) => session_error(err),
        },
        SessionOp::Refresh => match emu.refresh(&body) {
            Ok(created) => success(created),
            Err(err) => session_error(err),
        },
        SessionOp::Logout => match emu.logout(&body) {
            Ok(()) => success(wire::LogoutResult { success: true }),
            Err(err) => session_error(err),
        },
    }
}

fn create(emu: &Emulator, body: &wire::CreateRequest) -> Resp {
    match emu.create_for(body.profile_id.as_ref(), body.expires_in) {
        Some(created) => success(created),
        None => error(
            StatusCode::NOT_FOUND,
            "User Not Found",
            "المستخدم غير موجود",
        ),
    }
}

async fn set_fault(emu: &Emulator, req: Request<Incoming>) -> Resp {
    let fault = match read_json::<Fault>(req).await {
        Ok(fault) => fault,
        Err(resp) => return resp,
    };
    if let Fault::Status { status } | Fault::RetryAfter { status, .. } = fault {
        // 1xx cannot be a final answer, and hyper would rewrite it to 500.
        if !(200..=599).contains(&status) {
            return bad_request(format!("status {status} must be within 200..=599"));
        }
    }
    tracing::info!(?fault, "emulator fault set");
    emu.set_fault(fault);
    let mut resp = Response::new(EmuBody::Full(Full::default()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// Builds `data` of fetch from the user, in the seed's shape.
fn child_session(session_id: &str, alive: &super::state::Alive) -> Value {
    let user = &alive.user;
    let data = wire::ChildSession {
        session_id: Some(session_id.to_owned()),
        external_system_id: Some(user.external_system_id.clone()),
        authority_type: Some(user.authority_type.clone()),
        self_profile: Some(vec![user.profile.clone()]),
        iid_params: Some(wire::IidParams {
            locale: Some(user.locale.clone()),
        }),
        user_permissions: Some(user.user_permissions.clone()),
        delegations: Some(user.delegations.clone()),
        user_roles: Some(user.user_roles.clone()),
        expires_in: None,
    };
    let mut value = serde_json::to_value(data).unwrap_or(Value::Null);
    // wire::ChildSession holds expires_in as f64, which serde_json writes as
    // `15.0`; the seed (and real IdP) send an integer, so patch it in as one.
    if let Some(obj) = value.as_object_mut() {
        obj.insert("expires_in".to_owned(), Value::from(alive.expires_in));
    }
    value
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Resp> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return Err(bad_request(format!("cannot read body: {err}"))),
    };
    serde_json::from_slice(&bytes).map_err(|err| bad_request(format!("invalid JSON body: {err}")))
}

fn success<T: Serialize>(data: T) -> Resp {
    json_response(
        StatusCode::OK,
        &wire::CommonResponse {
            code: 0,
            desc: Some(desc("Success", "Success")),
            errors: None,
            data: Some(data),
        },
    )
}

fn session_error(err: SessionError) -> Resp {
    match err {
        SessionError::NotFound => error(
            StatusCode::NOT_FOUND,
            "Session Not Found",
            "الجلسة غير موجودة",
        ),
        SessionError::InvalidToken => error(
            StatusCode::UNAUTHORIZED,
            "Invalid Session Token",
            "رمز الجلسة غير صالح",
        ),
        SessionError::LoggedOut => error(
            StatusCode::UNAUTHORIZED,
            "Already Logout",
            "تم تسجيل الخروج مسبقاً",
        ),
        SessionError::Expired => error(
            StatusCode::UNAUTHORIZED,
            "Session Expired",
            "انتهت صلاحية الجلسة",
        ),
    }
}

fn bad_request(detail: String) -> Resp {
    envelope(
        StatusCode::BAD_REQUEST,
        "Bad Request",
        "طلب غير صالح",
        Some(Value::from(vec![detail])),
    )
}

fn error(status: StatusCode, en: &str, ar: &str) -> Resp {
    envelope(status, en, ar, None)
}

/// An error answer: the envelope's `code` repeats the HTTP status, as the seed's 401 does.
fn envelope(status: StatusCode, en: &str, ar: &str, errors: Option<Value>) -> Resp {
    json_response(
        status,
        &wire::CommonResponse::<Value> {
            code: i64::from(status.as_u16()),
            desc: Some(desc(en, ar)),
            errors,
            data: None,
        },
    )
}

fn desc(en: &str, ar: &str) -> wire::Desc {
    wire::Desc {
        en: Some(en.to_owned()),
        ar: Some(ar.to_owned()),
        code: None,
    }
}

pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Resp {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut resp = Response::new(EmuBody::Full(Full::new(Bytes::from(bytes))));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
            resp
        }
        Err(err) => {
            tracing::error!(error = %err, "emulator answer did not serialize");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "serialization failed\n",
            )
        }
    }
}

pub(crate) fn text(status: StatusCode, content_type: &'static str, body: &'static str) -> Resp {
    let mut resp = Response::new(EmuBody::Full(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
