//! Single Sign-On identity sessions (seed 003): "Read SSO session"
//! (`GET {base_url}/sso/sessions/identities/{token}.json`) to validate,
//! "Destroy SSO session" (`DELETE` on the same path) to log out.
//!
//! The credential is the identity token, and it goes into the URL path: it
//! must be 1 to 256 of `A-Z a-z 0-9 _ -` ([`wire::is_valid_token`]), or the
//! session is invalid without any call, so no credential can steer the
//! request to another resource (`..%2F..%2Fadmin`, `a/b`, `a.json`).
//!
//! Classification (the whole contract with the IdP in one place):
//! HTTP 401/403/404/410, or `status.flag` not `"success"` with `status.code`
//! 401/403/404 -> invalid; transport error, timeout, 5xx, 429 -> unavailable;
//! HTTP 200, flag `"success"`, an `sso_session` whose `identity_token` is the
//! one asked about, a `user_token` and a readable `date_expiration` -> valid;
//! anything else (an answer about another identity included) -> bad answer.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use http_body_util::Full;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

pub mod date;
pub mod wire;

use self::wire::Answer;
use super::{
    describe_json, json_object, BoxFuture, BuildError, ClientInfo, HttpClient, IdpError,
    LogoutOutcome, SessionProvider, Verdict,
};
use crate::auth::credential::Credential;
use crate::auth::headers::Carries;
use crate::auth::identity::Identity;
use crate::config::{IdpConfig, StaticHeaders};

/// Value of `provider` in the user context.
pub const PROVIDER: &str = "sso_identity";

/// Client for SSO identity sessions.
pub struct SsoIdentityClient {
    client: HttpClient,
    /// `base_url` + `/sso/sessions/identities/`; the token and `.json` follow.
    prefix: String,
    /// `[idp] headers`, sent on every call; values are marked sensitive.
    static_headers: StaticHeaders,
    timeout: Duration,
}

impl SsoIdentityClient {
    /// Builds a client for `cfg` (`base_url` must already point at the IdP or emulator).
    pub fn new(cfg: &IdpConfig) -> Result<Self, BuildError> {
        let prefix = super::endpoint(cfg, wire::PATH_IDENTITIES);
        // Checked once here with a sample token, so a per-call failure can only
        // come from the token, which is checked before every call.
        format!("{prefix}t{}", wire::PATH_SUFFIX)
            .parse::<Uri>()
            .map_err(|e| BuildError::Url(format!("{e}")))?;
        let client = super::http_client(cfg)?;
        Ok(Self {
            client,
            prefix,
            static_headers: cfg.headers.clone(),
            timeout: cfg.timeout,
        })
    }

    /// `method` on the identity session of `token` (already checked valid).
    async fn call(&self, method: Method, token: &str) -> Result<(StatusCode, Bytes), IdpError> {
        let uri: Uri = format!("{}{token}{}", self.prefix, wire::PATH_SUFFIX)
            .parse()
            .map_err(|_| IdpError::BadAnswer("identity session URI".into()))?;
        let req = super::request(method, uri, &self.static_headers)
            .body(Full::new(Bytes::new()))
            .map_err(|e| IdpError::BadAnswer(format!("request building: {e}")))?;
        super::exchange(&self.client, req, self.timeout).await
    }
}

/// The identity token, when it is safe to put into the URL path.
fn token_of(key: &Credential) -> Option<&str> {
    let token = key.id();
    wire::is_valid_token(token).then_some(token)
}

impl SessionProvider for SsoIdentityClient {
    fn fetch<'a>(
        &'a self,
        key: &'a Credential,
        _client: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<Verdict, IdpError>> {
        Box::pin(async move {
            let Some(token) = token_of(key) else {
                // Cannot be an identity token: never sent anywhere.
                return Ok(Verdict::Invalid {
                    reason: "malformed_token",
                });
            };
            let (status, body) = self.call(Method::GET, token).await?;
            classify(status, &body, token, SystemTime::now())
        })
    }

    /// "Destroy SSO session": 200, 204, 404 (and 410) all mean the session is gone.
    fn logout<'a>(&'a self, key: &'a Credential) -> BoxFuture<'a, Result<LogoutOutcome, IdpError>> {
        Box::pin(async move {
            let Some(token) = token_of(key) else {
                return Ok(LogoutOutcome::AlreadyGone);
            };
            let (status, _) = self.call(Method::DELETE, token).await?;
            match status {
                StatusCode::OK | StatusCode::NO_CONTENT => Ok(LogoutOutcome::LoggedOut),
                StatusCode::NOT_FOUND | StatusCode::GONE => Ok(LogoutOutcome::AlreadyGone),
                s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                    Err(IdpError::Unavailable(format!("HTTP {}", s.as_u16())))
                }
                s => Err(IdpError::BadAnswer(format!(
                    "unexpected HTTP {} to logout",
                    s.as_u16()
                ))),
            }
        })
    }

    fn carries(&self) -> Carries {
        Carries {
            roles: false,
            permissions: false,
        }
    }
}

const INVALID: Verdict = Verdict::Invalid {
    reason: "idp_rejected",
};

/// Turns a "Read SSO session" exchange about `token` into a verdict, as of `now`.
pub fn classify(
    status: StatusCode,
    body: &[u8],
    token: &str,
    now: SystemTime,
) -> Result<Verdict, IdpError> {
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED
        | StatusCode::FORBIDDEN
        | StatusCode::NOT_FOUND
        | StatusCode::GONE => return Ok(INVALID),
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
    let answer = serde_json::from_slice::<Answer>(body)
        .map_err(|e| IdpError::BadAnswer(format!("not a session answer: {}", describe_json(&e))))?;
    let response = answer
        .response
        .ok_or_else(|| IdpError::BadAnswer("no response".into()))?;
    let flag_status = response.request.and_then(|r| r.status).unwrap_or_default();
    if flag_status.flag.as_deref() != Some(wire::FLAG_SUCCESS) {
        return match flag_status.code() {
            Some(401 | 403 | 404) => Ok(INVALID),
            Some(code) => Err(IdpError::BadAnswer(format!("not a success, code {code}"))),
            None => Err(IdpError::BadAnswer("not a success, no code".into())),
        };
    }
    let session = response
        .result
        .and_then(|r| r.data)
        .and_then(|d| d.sso_session)
        .ok_or_else(|| IdpError::BadAnswer("no sso_session".into()))?;
    if session.identity_token.as_deref() != Some(token) {
        // Never a session: a mixed-up or replayed answer could log the user in
        // as someone else. Neither token goes into the message.
        return Err(IdpError::BadAnswer("answer about another identity".into()));
    }
    let (identity, expires_in) = to_identity(session, now)?;
    Ok(Verdict::Valid {
        identity: Box::new(identity),
        expires_in,
    })
}

/// Maps `sso_session` onto the provider-neutral identity.
fn to_identity(
    session: wire::SsoSession,
    now: SystemTime,
) -> Result<(Identity, Duration), IdpError> {
    let user_token = session
        .user_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| IdpError::BadAnswer("sso_session.user_token missing".into()))?;
    let expiration = session
        .date_expiration
        .as_deref()
        .and_then(date::parse)
        .ok_or_else(|| IdpError::BadAnswer("date_expiration missing or unreadable".into()))?;
    let date_expiration = date::to_rfc3339(expiration)
        .ok_or_else(|| IdpError::BadAnswer("date_expiration out of range".into()))?;
    // A negative time left (already expired) fails the conversion: zero, not cached.
    let expires_in = Duration::try_from(expiration - OffsetDateTime::from(now)).unwrap_or_default();
    let expires_at = now.checked_add(expires_in);
    let context = UserContext {
        provider: PROVIDER,
        user_token: &user_token,
        top_realm: session.top_realm.as_deref(),
        sub_realm: session.sub_realm.as_deref(),
        data: session.data.as_ref(),
        date_expiration: &date_expiration,
    };
    let identity = Identity {
        context: json_object(&context)?,
        // The seed's session carries no personal data.
        pii: None,
        subject: user_token,
        // sso_session_token is the SSO session's own secret: never forwarded.
        session_id: None,
        roles: Vec::new(),
        permissions: Vec::new(),
        organization: None,
        locale: None,
        extra: Vec::new(),
        expires_at,
    };
    Ok((identity, expires_in))
}

/// `{prefix}user-context` for SSO identity sessions, in this key order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserContext<'a> {
    provider: &'static str,
    user_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_realm: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_realm: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    /// RFC 3339, with the offset the IdP wrote.
    date_expiration: &'a str,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const TOKEN: &str = "0f1e2d3c-4b5a-4697-8877-665544332211";

    fn local() -> ClientInfo {
        ClientInfo {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            user_agent: None,
        }
    }
    /// `Sat, 04 Feb 2017 12:13:58  0100` in epoch seconds.
    const EXPIRY: u64 = 1_486_206_838;

    /// The seed's shape with fake values.
    fn answer(identity: &str, expiration: &str) -> String {
        format!(
            r#"{{"response":{{"request":{{"date":"Fri, 03 Feb 2017 12:14:02  0100",
            "resource":"/sso/sessions/identities/{identity}.json",
            "status":{{"flag":"success","code":200,"info":"Your request has been processed successfully"}}}},
            "result":{{"data":{{"sso_session":{{"sso_session_token":"s-fake-secret",
            "user_token":"u-fake-0001","identity_token":"{identity}",
            "top_realm":"portal","sub_realm":"apps","data":"demo","num_cookies_set":0,
            "date_creation":"Fri, 03 Feb 2017 12:13:58  0100","date_expiration":"{expiration}"}}}}}}}}}}"#
        )
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn seed_shape_is_valid_with_its_identity() {
        let body = answer(TOKEN, "Sat, 04 Feb 2017 12:13:58  0100");
        let Ok(Verdict::Valid {
            identity,
            expires_in,
        }) = classify(StatusCode::OK, body.as_bytes(), TOKEN, at(EXPIRY - 600))
        else {
            panic!("not valid")
        };
        assert_eq!(expires_in, Duration::from_secs(600));
        assert_eq!(identity.expires_at, Some(at(EXPIRY)));
        assert_eq!(identity.subject, "u-fake-0001");
        assert_eq!(
            identity.session_id, None,
            "the SSO session token stays here"
        );
        assert!(identity.roles.is_empty() && identity.permissions.is_empty());
        assert!(identity.pii.is_none());
        let ctx = serde_json::to_string(&identity.context).unwrap();
        assert_eq!(
            ctx,
            r#"{"provider":"sso_identity","userToken":"u-fake-0001","topRealm":"portal","subRealm":"apps","data":"demo","dateExpiration":"2017-02-04T12:13:58+01:00"}"#
        );
    }

    #[test]
    fn ttl_comes_from_date_expiration_and_is_zero_once_past() {
        for (text, now, left) in [
            ("Sat, 04 Feb 2017 12:13:58 +0100", EXPIRY - 30, 30),
            ("Sat, 04 Feb 2017 10:13:58 -0100", EXPIRY - 30, 30),
            ("Sat, 04 Feb 2017 12:13:58 0100", EXPIRY - 30, 30),
            ("Sat, 04 Feb 2017 12:13:58  0100", EXPIRY + 1, 0),
            ("Thu, 01 Jan 1960 00:00:00 +0000", EXPIRY, 0),
        ] {
            let body = answer(TOKEN, text);
            let Ok(Verdict::Valid { expires_in, .. }) =
                classify(StatusCode::OK, body.as_bytes(), TOKEN, at(now))
            else {
                panic!("{text}")
            };
            assert_eq!(expires_in, Duration::from_secs(left), "{text}");
        }
    }

    #[test]
    fn classification_table() {
        let now = at(EXPIRY - 60);
        let c = |status: u16, body: &str| {
            classify(
                StatusCode::from_u16(status).unwrap(),
                body.as_bytes(),
                TOKEN,
                now,
            )
        };
        let valid = answer(TOKEN, "Sat, 04 Feb 2017 12:13:58  0100");
        assert!(matches!(c(200, &valid), Ok(Verdict::Valid { .. })));
        for s in [401, 403, 404, 410] {
            assert_eq!(c(s, &valid), Ok(INVALID), "{s}");
            assert_eq!(c(s, "<html>"), Ok(INVALID), "{s}");
        }
        for code in ["401", "403", "404", "\"404\""] {
            let body = format!(
                r#"{{"response":{{"request":{{"status":{{"flag":"error","code":{code}}}}}}}}}"#
            );
            assert_eq!(c(200, &body), Ok(INVALID), "{code}");
        }
        for s in [500, 502, 503, 504, 429] {
            assert!(matches!(c(s, &valid), Err(IdpError::Unavailable(_))), "{s}");
        }
        for (s, body) in [
            (400, valid.clone()),
            (302, String::new()),
            (200, "<html>".into()),
            (200, "{}".into()),
            (200, r#"{"response":{}}"#.into()),
            (
                200,
                r#"{"response":{"request":{"status":{"flag":"error","code":500}}}}"#.into(),
            ),
            (
                200,
                r#"{"response":{"request":{"status":{"flag":"error"}}}}"#.into(),
            ),
            (
                200,
                r#"{"response":{"request":{"status":{"flag":"success","code":200}}}}"#.into(),
            ),
            (200, valid.replace(r#""flag":"success""#, r#""flag":"ok""#)),
            (
                200,
                answer("b0000000-other", "Sat, 04 Feb 2017 12:13:58  0100"),
            ),
            (
                200,
                valid.replace(&format!(r#""identity_token":"{TOKEN}","#), ""),
            ),
            (200, valid.replace("u-fake-0001", "")),
            (200, answer(TOKEN, "tomorrow")),
            (200, answer(TOKEN, "2017-02-04T12:13:58+01:00")),
            (
                200,
                valid.replace(
                    r#","date_expiration":"Sat, 04 Feb 2017 12:13:58  0100""#,
                    "",
                ),
            ),
        ] {
            assert!(
                matches!(c(s, &body), Err(IdpError::BadAnswer(_))),
                "{s} {body}"
            );
        }
    }

    #[test]
    fn an_answer_about_another_identity_names_neither_token() {
        let other = "b0000000-0000-4000-8000-000000000001";
        let body = answer(other, "Sat, 04 Feb 2017 12:13:58  0100");
        let err = classify(StatusCode::OK, body.as_bytes(), TOKEN, at(0)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("another identity"), "{text}");
        assert!(!text.contains(TOKEN) && !text.contains(other), "{text}");
    }

    fn client(base_url: &str) -> SsoIdentityClient {
        let cfg = crate::config::Config::from_toml_str(&format!(
            "[idp]\nprovider = \"sso_identity\"\nbase_url = \"{base_url}\"\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n"
        ))
        .unwrap();
        SsoIdentityClient::new(&cfg.idp).unwrap()
    }

    #[tokio::test]
    async fn unsafe_tokens_are_invalid_without_any_io() {
        // Port 1 refuses connections: any call would be an Unavailable error.
        let client = client("http://127.0.0.1:1");
        for bad in ["..%2F..%2Fadmin", "a/b", "a.json", "", "a b"] {
            let key = Credential::new(bad, "");
            assert_eq!(
                client.fetch(&key, &local()).await,
                Ok(Verdict::Invalid {
                    reason: "malformed_token"
                }),
                "{bad}"
            );
            assert_eq!(
                client.logout(&key).await,
                Ok(LogoutOutcome::AlreadyGone),
                "{bad}"
            );
        }
        let good = Credential::new("a-valid_token", "");
        assert!(matches!(
            client.fetch(&good, &local()).await,
            Err(IdpError::Unavailable(_))
        ));
        assert_eq!(
            client.carries(),
            Carries {
                roles: false,
                permissions: false
            }
        );
    }
}
