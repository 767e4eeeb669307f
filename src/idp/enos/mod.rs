//! EnOS IAM client: "Get Session Information" (`POST /v2.0/session/info`
//! under `base_url`, which ends in `/enos-iam-service`) to validate; EnOS has
//! no logout call in the seed, so logout is local only.
//!
//! Classification (the whole contract with the IdP in one place):
//! body `status` 30401/30404 (any HTTP status), or HTTP 401/404 -> invalid;
//! transport error, timeout, 5xx, 429 -> unavailable; HTTP 200 with
//! `session.user.id`, no `fail: true`, no `success: false` and `status` 0 or
//! absent -> valid; anything else -> bad answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode, Uri};
use http_body_util::Full;
use serde::Serialize;
use serde_json::Value;

pub mod wire;

use self::wire::{Organization, SessionInfoResponse};
use super::{
    describe_json, json_object, BoxFuture, BuildError, ClientInfo, HttpClient, IdpError,
    LogoutOutcome, SessionProvider, Verdict,
};
use crate::auth::credential::Credential;
use crate::auth::headers::Carries;
use crate::auth::identity::Identity;
use crate::config::{IdpConfig, StaticHeaders};

/// Value of `provider` in the user context.
pub const PROVIDER: &str = "enos";

/// Client for EnOS IAM sessions.
pub struct EnosClient {
    client: HttpClient,
    info_uri: Uri,
    /// `[idp] headers`, sent on every call; values are marked sensitive.
    static_headers: StaticHeaders,
    timeout: Duration,
}

impl EnosClient {
    /// Builds a client for `cfg` (`base_url` must already point at the IdP or emulator).
    pub fn new(cfg: &IdpConfig) -> Result<Self, BuildError> {
        let info_uri = super::endpoint_uri(cfg, wire::PATH_SESSION_INFO)?;
        let client = super::http_client(cfg)?;
        Ok(Self {
            client,
            info_uri,
            static_headers: cfg.headers.clone(),
            timeout: cfg.timeout,
        })
    }

    async fn call(&self, key: &Credential) -> Result<(StatusCode, Bytes), IdpError> {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", key.id()))
            // Credentials are checked for header-safe bytes when read, so this
            // is unreachable in practice; still never forward on doubt.
            .map_err(|_| IdpError::BadAnswer("credential is not a header value".into()))?;
        bearer.set_sensitive(true);
        let req = super::request(Method::POST, self.info_uri.clone(), &self.static_headers)
            .header(AUTHORIZATION, bearer)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .map_err(|e| IdpError::BadAnswer(format!("request building: {e}")))?;
        super::exchange(&self.client, req, self.timeout).await
    }
}

impl SessionProvider for EnosClient {
    fn fetch<'a>(
        &'a self,
        key: &'a Credential,
        _client: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<Verdict, IdpError>> {
        Box::pin(async move {
            let (status, body) = self.call(key).await?;
            classify(status, &body, SystemTime::now())
        })
    }

    /// The seed has no logout call: the gateway revokes its cache entry and
    /// expires the cookie; the EnOS session itself lives on until it expires.
    fn logout<'a>(
        &'a self,
        _key: &'a Credential,
    ) -> BoxFuture<'a, Result<LogoutOutcome, IdpError>> {
        Box::pin(async { Ok(LogoutOutcome::AlreadyGone) })
    }

    fn carries(&self) -> Carries {
        Carries {
            roles: false,
            permissions: false,
        }
    }
}

/// Turns a "Get Session Information" exchange into a verdict, as of `now`.
pub fn classify(status: StatusCode, body: &[u8], now: SystemTime) -> Result<Verdict, IdpError> {
    let answer = serde_json::from_slice::<SessionInfoResponse>(body);
    if let Ok(a) = &answer {
        if matches!(
            a.status,
            Some(wire::STATUS_INVALID_TOKEN | wire::STATUS_NOT_FOUND)
        ) {
            return Ok(Verdict::Invalid {
                reason: "idp_rejected",
            });
        }
    }
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND => {
            return Ok(Verdict::Invalid {
                reason: "idp_rejected",
            })
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            return Err(IdpError::Unavailable(format!("HTTP {}", s.as_u16())))
        }
        s => {
            return Err(IdpError::BadAnswer(format!(
                "unexpected HTTP {}",
                s.as_u16()
            )))
        }
    }
    let answer = answer
        .map_err(|e| IdpError::BadAnswer(format!("not a session answer: {}", describe_json(&e))))?;
    if answer.fail == Some(true) || answer.success == Some(false) {
        return Err(IdpError::BadAnswer("answer says it failed".into()));
    }
    if let Some(code) = answer.status.filter(|c| *c != 0) {
        return Err(IdpError::BadAnswer(format!("status {code}")));
    }
    let (identity, expires_in) = to_identity(answer, now)?;
    Ok(Verdict::Valid {
        identity: Box::new(identity),
        expires_in,
    })
}

/// Maps `session` onto the provider-neutral identity.
fn to_identity(
    answer: SessionInfoResponse,
    now: SystemTime,
) -> Result<(Identity, Duration), IdpError> {
    let session = answer
        .session
        .ok_or_else(|| IdpError::BadAnswer("no session".into()))?;
    let user = session.user.unwrap_or_default();
    let user_id = user
        .id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| IdpError::BadAnswer("session.user.id missing".into()))?;
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let (expires_in, expires_at) = match session.expires {
        Some(expires) if expires.is_finite() => {
            let start = session
                .refresh_time
                .filter(|t| t.is_finite())
                .unwrap_or(now_secs);
            // Clamped so a nonsense answer cannot overflow the arithmetic.
            let left = (start + expires - now_secs).clamp(0.0, 1.0e9);
            let expires_in = Duration::from_secs_f64(left);
            (expires_in, now.checked_add(expires_in))
        }
        _ => (Duration::ZERO, Some(now)),
    };
    let working = session.working_organization.unwrap_or_default();
    let organization = working.id.clone().filter(|id| !id.is_empty());
    let context = UserContext {
        provider: PROVIDER,
        user_id: &user_id,
        name: user.name.as_deref(),
        kind: user.kind.as_ref(),
        organization_id: user.organization_id.as_deref(),
        working_organization: &working,
        resident_organization: session.resident_organization.as_ref(),
    };
    let pii = Pii {
        email: user.email,
        phone: user.phone,
    };
    let identity = Identity {
        context: json_object(&context)?,
        pii: Some(json_object(&pii)?),
        subject: user_id,
        session_id: None,
        roles: Vec::new(),
        permissions: Vec::new(),
        organization,
        locale: None,
        extra: Vec::new(),
        expires_at,
    };
    Ok((identity, expires_in))
}

/// `{prefix}user-context` for EnOS sessions, in this key order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserContext<'a> {
    provider: &'static str,
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization_id: Option<&'a str>,
    working_organization: &'a Organization,
    #[serde(skip_serializing_if = "Option::is_none")]
    resident_organization: Option<&'a Organization>,
}

/// Personal data: in the user context only with `headers.include_pii`.
#[derive(Serialize)]
struct Pii {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's shape with fake values.
    fn answer(refresh: u64, expires: u64) -> String {
        format!(
            r#"{{"fail":false,"session":{{"workingOrganization":{{"domain":"dom","name":"Org One","id":"o100"}},
            "expires":{expires},"createTime":{refresh},"residentOrganization":{{"domain":null,"name":"Org Two","id":"o200"}},
            "refreshTime":{refresh},"id":"IAM_S_fake","user":{{"type":2,"organizationId":"o200","phone":"+971-500000001",
            "name":"Fake User","id":"u42","email":"fake@example.com","state":0}}}},
            "success":true,"requestId":null,"failed":false,"message":"","status":0,"successful":true}}"#
        )
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn seed_shape_is_valid_with_its_identity() {
        let body = answer(1_000, 7_200);
        let Ok(Verdict::Valid {
            identity,
            expires_in,
        }) = classify(StatusCode::OK, body.as_bytes(), at(1_200))
        else {
            panic!("not valid")
        };
        assert_eq!(expires_in, Duration::from_secs(7_000));
        assert_eq!(identity.subject, "u42");
        assert_eq!(identity.organization.as_deref(), Some("o100"));
        assert_eq!(
            identity.session_id, None,
            "the EnOS session id is never forwarded"
        );
        assert!(identity.roles.is_empty() && identity.permissions.is_empty());
        let keys: Vec<&str> = identity.context.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "provider",
                "userId",
                "name",
                "type",
                "organizationId",
                "workingOrganization",
                "residentOrganization"
            ]
        );
        assert_eq!(identity.context["provider"], "enos");
        assert_eq!(identity.context["workingOrganization"]["name"], "Org One");
        let pii = identity.pii.unwrap();
        assert_eq!(pii["email"], "fake@example.com");
        assert!(!identity.context.contains_key("email"));
    }

    #[test]
    fn ttl_counts_from_refresh_time_or_from_now() {
        let expired = answer(1_000, 100);
        let Ok(Verdict::Valid { expires_in, .. }) =
            classify(StatusCode::OK, expired.as_bytes(), at(1_500))
        else {
            panic!()
        };
        assert_eq!(expires_in, Duration::ZERO, "not kept by the cache");
        let no_refresh = r#"{"session":{"expires":60,"user":{"id":"u1"}}}"#;
        let Ok(Verdict::Valid { expires_in, .. }) =
            classify(StatusCode::OK, no_refresh.as_bytes(), at(1_500))
        else {
            panic!()
        };
        assert_eq!(expires_in, Duration::from_secs(60));
    }

    #[test]
    fn classification_table() {
        let now = at(1_000);
        let invalid = Ok(Verdict::Invalid {
            reason: "idp_rejected",
        });
        let c = |status: u16, body: &str| {
            classify(StatusCode::from_u16(status).unwrap(), body.as_bytes(), now)
        };
        assert_eq!(c(401, ""), invalid);
        assert_eq!(c(404, "<html>"), invalid);
        assert_eq!(c(200, r#"{"fail":true,"status":30401}"#), invalid);
        assert_eq!(c(200, r#"{"fail":true,"status":30404}"#), invalid);
        assert_eq!(c(500, r#"{"status":30404}"#), invalid, "any HTTP status");
        for s in [500, 502, 503, 429] {
            assert!(matches!(c(s, ""), Err(IdpError::Unavailable(_))), "{s}");
        }
        for (s, body) in [
            (403, ""),
            (302, ""),
            (200, "<html>"),
            (200, r#"{"status":0}"#),
            (200, r#"{"session":{"user":{"id":""}}}"#),
            (200, r#"{"session":{"user":{"name":"x"}}}"#),
            (200, r#"{"fail":true,"session":{"user":{"id":"u1"}}}"#),
            (200, r#"{"success":false,"session":{"user":{"id":"u1"}}}"#),
            (200, r#"{"status":500,"session":{"user":{"id":"u1"}}}"#),
        ] {
            assert!(
                matches!(c(s, body), Err(IdpError::BadAnswer(_))),
                "{s} {body}"
            );
        }
    }

    #[tokio::test]
    async fn logout_does_no_io() {
        let cfg = crate::config::Config::from_toml_str(
            "[idp]\nprovider = \"enos\"\nbase_url = \"http://127.0.0.1:1/enos-iam-service\"\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n",
        )
        .unwrap();
        let client = EnosClient::new(&cfg.idp).unwrap();
        let key = Credential::new("t", "");
        assert_eq!(client.logout(&key).await, Ok(LogoutOutcome::AlreadyGone));
        assert_eq!(
            client.carries(),
            Carries {
                roles: false,
                permissions: false
            }
        );
    }
}
