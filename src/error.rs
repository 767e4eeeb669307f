//! Every way a request can fail, grouped by who failed, and the one table
//! that maps each to its HTTP status and S360 `CommonResponse` JSON body.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::idp::{Backoff, IdpError};

/// Seconds a client is told to wait when the IdP is unavailable and nobody
/// said for how long.
pub const RETRY_AFTER_SECS: u64 = 5;

/// A request the gateway answers itself instead of forwarding.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    // --- the client ---
    /// Unroutable or ambiguous request target.
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// Request line plus headers above `server.max_header_bytes`.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// Request body above the route's `max_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
    /// Request body malformed (e.g. a bad chunk) or cut short by the client.
    #[error("malformed or incomplete request body")]
    ClientBody,
    /// No route matches the path.
    #[error("no route for this path")]
    NoRoute,
    /// The route serves forward-auth decisions only: nothing to proxy to.
    #[error("route has no upstream (forward-auth decisions only)")]
    NoUpstream,
    /// A decision request describes another request (`X-Forwarded-Uri`, ...)
    /// but its peer is not trusted to (GHSA-7x63-xv5r-3p2x).
    #[error("forward-auth request from an untrusted peer")]
    UntrustedForwardAuthClient,
    /// A required route and no session cookie.
    #[error("no session cookie")]
    NoSession,
    /// The IdP (or a logout here) says the session is not valid.
    #[error("invalid session")]
    InvalidSession,
    /// Valid session, missing permission or role; the reason is a log field.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    // --- the identity provider ---
    /// No trustworthy answer from the IdP: fail closed.
    #[error(transparent)]
    Idp(#[from] IdpError),
    // --- the upstream ---
    /// Connect failed or the connection broke before a response head.
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// No response head within `upstream.timeout`.
    #[error("upstream timed out")]
    UpstreamTimeout,
}

/// One row of the response table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// HTTP status.
    pub status: StatusCode,
    /// Non-zero `code` of the CommonResponse body.
    pub code: i64,
    /// Stable machine reason, in the body and in logs.
    pub reason: &'static str,
    /// English text.
    pub en: &'static str,
    /// Arabic text.
    pub ar: &'static str,
}

const fn spec(
    status: StatusCode,
    code: i64,
    reason: &'static str,
    en: &'static str,
    ar: &'static str,
) -> Spec {
    Spec {
        status,
        code,
        reason,
        en,
        ar,
    }
}

impl GatewayError {
    /// The response table. README "Errors" mirrors it; a test pins it.
    pub fn spec(&self) -> Spec {
        use GatewayError::*;
        match self {
            BadRequest(_) => spec(
                StatusCode::BAD_REQUEST,
                40000,
                "bad_request",
                "Malformed request",
                "طلب غير صالح",
            ),
            HeadersTooLarge => spec(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                43100,
                "headers_too_large",
                "Request headers too large",
                "ترويسات الطلب كبيرة جداً",
            ),
            BodyTooLarge => spec(
                StatusCode::PAYLOAD_TOO_LARGE,
                41300,
                "body_too_large",
                "Request body too large",
                "محتوى الطلب كبير جداً",
            ),
            ClientBody => spec(
                StatusCode::BAD_REQUEST,
                40001,
                "bad_request_body",
                "Malformed or incomplete request body",
                "محتوى الطلب غير صالح أو غير مكتمل",
            ),
            NoRoute => spec(
                StatusCode::NOT_FOUND,
                40400,
                "no_route",
                "Not found",
                "غير موجود",
            ),
            NoUpstream => spec(
                StatusCode::NOT_FOUND,
                40401,
                "no_upstream",
                "Not found",
                "غير موجود",
            ),
            UntrustedForwardAuthClient => spec(
                StatusCode::FORBIDDEN,
                40301,
                "untrusted_forward_auth_client",
                "Forward-auth request from an untrusted client",
                "طلب تحقق من عميل غير موثوق",
            ),
            NoSession => spec(
                StatusCode::UNAUTHORIZED,
                40100,
                "no_session",
                "Authentication required",
                "يلزم تسجيل الدخول",
            ),
            InvalidSession => spec(
                StatusCode::UNAUTHORIZED,
                40101,
                "invalid_session",
                "Session is invalid or has expired",
                "الجلسة غير صالحة أو منتهية الصلاحية",
            ),
            Forbidden(_) => spec(
                StatusCode::FORBIDDEN,
                40300,
                "forbidden",
                "You do not have permission to access this resource",
                "ليس لديك صلاحية للوصول إلى هذا المورد",
            ),
            Idp(IdpError::Unavailable(_)) => spec(
                StatusCode::SERVICE_UNAVAILABLE,
                50300,
                "idp_unavailable",
                "Identity service is unavailable, please retry",
                "خدمة الهوية غير متاحة، يرجى المحاولة لاحقاً",
            ),
            Idp(IdpError::Timeout) => spec(
                StatusCode::SERVICE_UNAVAILABLE,
                50301,
                "idp_timeout",
                "Identity service did not answer in time, please retry",
                "لم تستجب خدمة الهوية في الوقت المحدد، يرجى المحاولة لاحقاً",
            ),
            Idp(IdpError::Backoff {
                cause: Backoff::Throttled,
                ..
            }) => spec(
                StatusCode::SERVICE_UNAVAILABLE,
                50302,
                "idp_throttled",
                "Identity service is busy, please retry later",
                "خدمة الهوية مشغولة، يرجى المحاولة لاحقاً",
            ),
            Idp(IdpError::Backoff {
                cause: Backoff::CircuitOpen,
                ..
            }) => spec(
                StatusCode::SERVICE_UNAVAILABLE,
                50303,
                "idp_circuit_open",
                "Identity service is unavailable, please retry later",
                "خدمة الهوية غير متاحة مؤقتاً، يرجى المحاولة لاحقاً",
            ),
            Idp(IdpError::Backoff {
                cause: Backoff::Saturated,
                ..
            }) => spec(
                StatusCode::SERVICE_UNAVAILABLE,
                50304,
                "idp_saturated",
                "Too many session checks in progress, please retry",
                "عدد كبير من عمليات التحقق من الجلسة قيد التنفيذ، يرجى المحاولة مجدداً",
            ),
            Idp(IdpError::BadAnswer(_)) => spec(
                StatusCode::BAD_GATEWAY,
                50200,
                "idp_bad_answer",
                "Identity service returned an invalid answer",
                "أعادت خدمة الهوية استجابة غير صالحة",
            ),
            UpstreamUnreachable(_) => spec(
                StatusCode::BAD_GATEWAY,
                50201,
                "upstream_unreachable",
                "Application is unreachable",
                "التطبيق غير متاح",
            ),
            UpstreamTimeout => spec(
                StatusCode::GATEWAY_TIMEOUT,
                50400,
                "upstream_timeout",
                "Application did not answer in time",
                "لم يستجب التطبيق في الوقت المحدد",
            ),
        }
    }

    /// The finer reason behind a 400 or 403, a log field (never in the body:
    /// it would tell a prober which check failed).
    pub fn detail(&self) -> Option<&'static str> {
        match self {
            GatewayError::BadRequest(d) | GatewayError::Forbidden(d) => Some(d),
            _ => None,
        }
    }

    /// The synthetic response for this error.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let s = self.spec();
        let body = json!({
            "code": s.code,
            "desc": {"en": s.en, "ar": s.ar},
            "errors": [{"reason": s.reason}],
        });
        let mut resp = json_response(s.status, &body);
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// `Retry-After` of a 503: the pause the IdP or the breaker named, in
    /// whole seconds rounded up (at least 1), else [`RETRY_AFTER_SECS`].
    pub fn retry_after_secs(&self) -> Option<u64> {
        if self.spec().status != StatusCode::SERVICE_UNAVAILABLE {
            return None;
        }
        Some(match self {
            GatewayError::Idp(e) => match e.retry_after() {
                Some(d) => d.as_secs() + u64::from(d.subsec_nanos() > 0 || d.is_zero()),
                None => RETRY_AFTER_SECS,
            },
            _ => RETRY_AFTER_SECS,
        })
    }
}

/// A JSON response the gateway makes itself; never cached by browsers or proxies.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    json_bytes(status, body.to_string())
}

/// A JSON response from already-encoded text, with the same headers.
pub fn json_bytes(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Duration;

    /// Pins the table the README documents.
    #[test]
    fn response_table() {
        let rows = [
            (GatewayError::BadRequest("x"), 400, 40000, "bad_request"),
            (
                GatewayError::HeadersTooLarge,
                431,
                43100,
                "headers_too_large",
            ),
            (GatewayError::BodyTooLarge, 413, 41300, "body_too_large"),
            (GatewayError::ClientBody, 400, 40001, "bad_request_body"),
            (GatewayError::NoRoute, 404, 40400, "no_route"),
            (GatewayError::NoUpstream, 404, 40401, "no_upstream"),
            (
                GatewayError::UntrustedForwardAuthClient,
                403,
                40301,
                "untrusted_forward_auth_client",
            ),
            (GatewayError::NoSession, 401, 40100, "no_session"),
            (GatewayError::InvalidSession, 401, 40101, "invalid_session"),
            (
                GatewayError::Forbidden("missing_role"),
                403,
                40300,
                "forbidden",
            ),
            (
                GatewayError::Idp(IdpError::Unavailable("x".into())),
                503,
                50300,
                "idp_unavailable",
            ),
            (
                GatewayError::Idp(IdpError::Timeout),
                503,
                50301,
                "idp_timeout",
            ),
            (
                GatewayError::Idp(IdpError::Backoff {
                    cause: Backoff::Throttled,
                    retry_after: Duration::from_secs(2),
                }),
                503,
                50302,
                "idp_throttled",
            ),
            (
                GatewayError::Idp(IdpError::Backoff {
                    cause: Backoff::CircuitOpen,
                    retry_after: Duration::from_secs(2),
                }),
                503,
                50303,
                "idp_circuit_open",
            ),
            (
                GatewayError::Idp(IdpError::Backoff {
                    cause: Backoff::Saturated,
                    retry_after: Duration::from_secs(2),
                }),
                503,
                50304,
                "idp_saturated",
            ),
            (
                GatewayError::Idp(IdpError::BadAnswer("x".into())),
                502,
                50200,
                "idp_bad_answer",
            ),
            (
                GatewayError::UpstreamUnreachable("x".into()),
                502,
                50201,
                "upstream_unreachable",
            ),
            (
                GatewayError::UpstreamTimeout,
                504,
                50400,
                "upstream_timeout",
            ),
        ];
        for (err, status, code, reason) in rows {
            let s = err.spec();
            assert_eq!(
                (s.status.as_u16(), s.code, s.reason),
                (status, code, reason)
            );
            assert!(!s.en.is_empty() && !s.ar.is_empty());
        }
    }

    #[tokio::test]
    async fn body_is_a_common_response_and_503_says_when_to_retry() {
        let resp = GatewayError::Idp(IdpError::Timeout).to_response();
        assert_eq!(resp.headers()[RETRY_AFTER], "5");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 50301);
        assert_eq!(v["errors"][0]["reason"], "idp_timeout");
        assert!(v["desc"]["ar"].as_str().unwrap().contains("خدمة الهوية"));
    }

    #[test]
    fn retry_after_is_the_named_pause_rounded_up() {
        let backoff = |ms| {
            GatewayError::Idp(IdpError::Backoff {
                cause: Backoff::CircuitOpen,
                retry_after: Duration::from_millis(ms),
            })
        };
        assert_eq!(backoff(2000).retry_after_secs(), Some(2));
        assert_eq!(backoff(1200).retry_after_secs(), Some(2));
        assert_eq!(backoff(0).retry_after_secs(), Some(1));
        let resp = backoff(3000).to_response();
        assert_eq!(resp.headers()[RETRY_AFTER], "3");
        assert_eq!(
            GatewayError::Idp(IdpError::Unavailable("x".into())).retry_after_secs(),
            Some(RETRY_AFTER_SECS)
        );
        assert_eq!(GatewayError::NoSession.retry_after_secs(), None);
    }
}
