//! CIAM client: "Exchanging sessiontoken for ssoticket" (`POST
//! /api/v2/tenant/sso/session-token/sso-ticket` under `base_url`) validates
//! the session; with `idp.userinfo_url` the one-time ticket is redeemed
//! there (`GET ?sso_ticket=`) for who the user is. The seed has no logout
//! call, so logout is local only.
//!
//! Classification (the whole contract with the IdP in one place):
//! exchange HTTP 400/401/403/404 -> invalid; transport error, timeout, 5xx,
//! 429 (exchange or userinfo) -> unavailable; exchange HTTP 200 with a
//! non-empty `sso_ticket` -> valid for `expire` seconds, once userinfo (when
//! configured) answered 200 with a JSON object holding the subject; anything
//! else -> bad answer.
//!
//! The ticket is a bearer secret for the user's data: it stays inside
//! [`CiamClient::fetch`], never in a log line, an error text or a header.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode, Uri};
use http_body_util::Full;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::hmac;
use serde_json::{Map, Value};

pub mod wire;

use self::wire::{TicketRequest, TicketResponse};
use super::{
    describe_json, BoxFuture, BuildError, ClientInfo, HttpClient, IdpError, LogoutOutcome,
    SessionProvider, Verdict,
};
use crate::auth::credential::Credential;
use crate::auth::headers::Carries;
use crate::auth::identity::Identity;
use crate::config::{CiamConfig, IdpConfig, StaticHeaders};

/// Value of `provider` in the user context.
pub const PROVIDER: &str = "ciam";

/// Userinfo keys that never reach the user context: personal data (sent as
/// `pii` only with `include_pii`), the ticket should an IdP echo it, and our
/// own `provider`.
const PII_KEYS: [&str; 2] = ["email", "phone"];
const DROPPED_KEYS: [&str; 2] = [wire::QUERY_TICKET, "provider"];

/// Characters left as-is in the ticket query value (RFC 3986 unreserved).
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Domain separation for the device fingerprint's HMAC input.
const FINGERPRINT_CONTEXT: &[u8] = b"sessiongate ciam device fingerprint\n";

/// Client for CIAM session tokens.
pub struct CiamClient {
    client: HttpClient,
    ticket_uri: Uri,
    /// `Bearer {access_token}`, marked sensitive.
    bearer: HeaderValue,
    userinfo: Option<Userinfo>,
    /// Keyed by the access token, so every gateway replica sends the same
    /// fingerprint for a session while nobody without the key can tie it to
    /// a token.
    fingerprint_key: hmac::Key,
    /// `[idp] headers`, sent on every call; values are marked sensitive.
    static_headers: StaticHeaders,
    timeout: Duration,
}

/// Where and how tickets are redeemed.
struct Userinfo {
    /// `userinfo_url` followed by `?` or `&`, ready for `sso_ticket=`.
    url_prefix: String,
    pointers: Pointers,
}

/// Where the userinfo answer holds the subject, roles and permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointers {
    /// JSON Pointer to the subject.
    pub subject: String,
    /// JSON Pointer to the role codes, when ciam carries roles.
    pub roles: Option<String>,
    /// JSON Pointer to the permission codes, when ciam carries permissions.
    pub permissions: Option<String>,
}

impl CiamClient {
    /// Builds a client for `cfg` (`base_url` must already point at the IdP or emulator).
    pub fn new(cfg: &IdpConfig, own: &CiamConfig) -> Result<Self, BuildError> {
        let ticket_uri = super::endpoint_uri(cfg, wire::PATH_SSO_TICKET)?;
        let token = own.access_token.expose();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| BuildError::AccessToken)?;
        bearer.set_sensitive(true);
        let userinfo = own.userinfo_url.as_deref().map(|url| Userinfo {
            url_prefix: format!("{url}{}", if url.contains('?') { '&' } else { '?' }),
            pointers: Pointers {
                subject: own.subject_pointer.clone(),
                roles: own.roles_pointer.clone(),
                permissions: own.permissions_pointer.clone(),
            },
        });
        let client = super::http_client(cfg)?;
        Ok(Self {
            client,
            ticket_uri,
            bearer,
            userinfo,
            fingerprint_key: hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes()),
            static_headers: cfg.headers.clone(),
            timeout: cfg.timeout,
        })
    }

    /// The device fingerprint of a session: 32 hex digits of
    /// HMAC-SHA256(access token, context || session token).
    fn fingerprint(&self, session_token: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.fingerprint_key);
        ctx.update(FINGERPRINT_CONTEXT);
        ctx.update(session_token.as_bytes());
        let tag = ctx.sign();
        tag.as_ref()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn request(&self, method: Method, uri: Uri) -> http::request::Builder {
        super::request(method, uri, &self.static_headers).header(AUTHORIZATION, self.bearer.clone())
    }

    /// The exchange: session token (and device) for a ticket.
    async fn exchange_ticket(
        &self,
        key: &Credential,
        client: &ClientInfo,
    ) -> Result<(StatusCode, Bytes), IdpError> {
        let body = TicketRequest {
            session_token: key.id().to_owned(),
            operating_sys_version: operating_system(client.user_agent.as_deref()),
            device_ip: client.ip.to_string(),
            device_fingerprint: self.fingerprint(key.id()),
            agent: client.user_agent.as_deref().map(str::to_owned),
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| IdpError::BadAnswer(format!("request building: {}", describe_json(&e))))?;
        let req = self
            .request(Method::POST, self.ticket_uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| IdpError::BadAnswer(format!("request building: {e}")))?;
        super::exchange(&self.client, req, self.timeout).await
    }

    /// Redeems `ticket` at userinfo.
    async fn redeem(
        &self,
        userinfo: &Userinfo,
        ticket: &str,
    ) -> Result<(StatusCode, Bytes), IdpError> {
        let uri: Uri = format!(
            "{}{}={}",
            userinfo.url_prefix,
            wire::QUERY_TICKET,
            utf8_percent_encode(ticket, QUERY_ENCODE)
        )
        .parse()
        // Never the URI in the message: it holds the ticket.
        .map_err(|_| IdpError::BadAnswer("userinfo URL with the ticket is not a URI".into()))?;
        let req = self
            .request(Method::GET, uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| IdpError::BadAnswer(format!("request building: {e}")))?;
        super::exchange(&self.client, req, self.timeout).await
    }
}

impl SessionProvider for CiamClient {
    fn fetch<'a>(
        &'a self,
        key: &'a Credential,
        client: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<Verdict, IdpError>> {
        Box::pin(async move {
            let (status, body) = self.exchange_ticket(key, client).await?;
            let (ticket, expires_in) = match classify_exchange(status, &body)? {
                Exchange::Ticket { ticket, expires_in } => (ticket, expires_in),
                Exchange::Rejected => {
                    return Ok(Verdict::Invalid {
                        reason: "idp_rejected",
                    })
                }
            };
            let expires_at = SystemTime::now().checked_add(expires_in);
            let identity = match &self.userinfo {
                None => validated_only(expires_at),
                Some(userinfo) => {
                    let (status, body) = self.redeem(userinfo, &ticket).await?;
                    classify_userinfo(status, &body, &userinfo.pointers, expires_at)?
                }
            };
            Ok(Verdict::Valid {
                identity: Box::new(identity),
                expires_in,
            })
        })
    }

    /// The seed has no logout call: the gateway revokes its cache entry and
    /// expires the cookie; the CIAM session lives on until it expires.
    fn logout<'a>(
        &'a self,
        _key: &'a Credential,
    ) -> BoxFuture<'a, Result<LogoutOutcome, IdpError>> {
        Box::pin(async { Ok(LogoutOutcome::AlreadyGone) })
    }

    fn carries(&self) -> Carries {
        let pointers = self.userinfo.as_ref().map(|u| &u.pointers);
        Carries {
            roles: pointers.is_some_and(|p| p.roles.is_some()),
            permissions: pointers.is_some_and(|p| p.permissions.is_some()),
        }
    }
}

/// What the exchange said.
#[derive(Debug, PartialEq)]
pub enum Exchange {
    /// A live session: its one-time ticket, and how long the answer holds.
    Ticket {
        /// The ticket (a secret).
        ticket: String,
        /// `expire`, in seconds.
        expires_in: Duration,
    },
    /// The IdP refused the session token.
    Rejected,
}

/// Turns an exchange answer into a ticket, a rejection or an IdP failure.
pub fn classify_exchange(status: StatusCode, body: &[u8]) -> Result<Exchange, IdpError> {
    match status {
        StatusCode::OK => {}
        StatusCode::BAD_REQUEST
        | StatusCode::UNAUTHORIZED
        | StatusCode::FORBIDDEN
        | StatusCode::NOT_FOUND => return Ok(Exchange::Rejected),
        s => return Err(unexpected(s)),
    }
    let answer: TicketResponse = serde_json::from_slice(body)
        .map_err(|e| IdpError::BadAnswer(format!("not a ticket answer: {}", describe_json(&e))))?;
    let ticket = answer
        .sso_ticket
        .filter(|t| !t.is_empty())
        .ok_or_else(|| IdpError::BadAnswer("sso_ticket missing or empty".into()))?;
    let expires_in = match answer.expire {
        // Clamped so a nonsense answer cannot overflow the arithmetic.
        Some(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs.min(1.0e9)),
        // Valid, but not cacheable.
        _ => Duration::ZERO,
    };
    Ok(Exchange::Ticket { ticket, expires_in })
}

/// 5xx and 429 are the IdP being down or busy; anything else is nonsense.
fn unexpected(status: StatusCode) -> IdpError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        IdpError::Unavailable(format!("HTTP {}", status.as_u16()))
    } else {
        IdpError::BadAnswer(format!("unexpected HTTP {}", status.as_u16()))
    }
}

/// The identity of a session validated without userinfo: no subject, a
/// user context that only names the provider.
fn validated_only(expires_at: Option<SystemTime>) -> Identity {
    let mut context = Map::new();
    context.insert("provider".into(), Value::from(PROVIDER));
    Identity {
        context,
        expires_at,
        ..Identity::default()
    }
}

/// Turns a userinfo answer into the identity. Any failure here is the IdP's
/// (never an invalid session): the exchange already said the session lives.
pub fn classify_userinfo(
    status: StatusCode,
    body: &[u8],
    pointers: &Pointers,
    expires_at: Option<SystemTime>,
) -> Result<Identity, IdpError> {
    if status != StatusCode::OK {
        let err = unexpected(status);
        return Err(match err {
            IdpError::Unavailable(why) => IdpError::Unavailable(format!("userinfo: {why}")),
            IdpError::BadAnswer(why) => IdpError::BadAnswer(format!("userinfo: {why}")),
            other => other,
        });
    }
    let answer: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        IdpError::BadAnswer(format!(
            "userinfo is not a JSON object: {}",
            describe_json(&e)
        ))
    })?;
    let root = Value::Object(answer);
    let subject = match root.pointer(&pointers.subject) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => {
            return Err(IdpError::BadAnswer(format!(
                "userinfo has no subject at {}",
                pointers.subject
            )))
        }
    };
    let roles = codes(&root, pointers.roles.as_deref(), "roles")?;
    let permissions = codes(&root, pointers.permissions.as_deref(), "permissions")?;
    let Value::Object(answer) = root else {
        return Err(IdpError::BadAnswer("userinfo is not a JSON object".into()));
    };
    let mut context = Map::with_capacity(answer.len() + 1);
    context.insert("provider".into(), Value::from(PROVIDER));
    let mut pii = Map::new();
    for (k, v) in answer {
        if PII_KEYS.contains(&k.as_str()) {
            pii.insert(k, v);
        } else if !DROPPED_KEYS.contains(&k.as_str()) {
            context.insert(k, v);
        }
    }
    Ok(Identity {
        subject,
        roles,
        permissions,
        context,
        pii: (!pii.is_empty()).then_some(pii),
        expires_at,
        ..Identity::default()
    })
}

/// The codes at `pointer`: absent means none; anything but an array of
/// strings is a bad answer.
fn codes(root: &Value, pointer: Option<&str>, what: &str) -> Result<Vec<String>, IdpError> {
    let Some(pointer) = pointer else {
        return Ok(Vec::new());
    };
    match root.pointer(pointer) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| IdpError::BadAnswer(format!("userinfo {what} are not all strings"))),
        Some(_) => Err(IdpError::BadAnswer(format!(
            "userinfo {what} at {pointer} is not an array"
        ))),
    }
}

/// `operating_sys_version` from a User-Agent: the system's name in lower
/// case and its version (`windows10.0`, `ios13.3`, `macos10.15.7`,
/// `android14`), the name alone when no version follows (`linux`), else
/// `"unknown"`.
pub fn operating_system(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else {
        return wire::UNKNOWN_OS.into();
    };
    // Order matters: iPhone and iPad agents say "like Mac OS X", Android ones "Linux".
    const SYSTEMS: [(&str, &str); 8] = [
        ("Windows NT ", "windows"),
        ("iPhone OS ", "ios"),
        ("CPU OS ", "ios"),
        ("Mac OS X ", "macos"),
        ("Android ", "android"),
        ("CrOS", "chromeos"),
        ("Linux", "linux"),
        ("Windows", "windows"),
    ];
    for (marker, name) in SYSTEMS {
        if let Some(at) = ua.find(marker) {
            let rest = ua.get(at + marker.len()..).unwrap_or_default();
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '_')
                .take(16)
                .map(|c| if c == '_' { '.' } else { c })
                .collect();
            let version = version.trim_matches('.');
            return format!("{name}{version}");
        }
    }
    wire::UNKNOWN_OS.into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn pointers(roles: bool) -> Pointers {
        Pointers {
            subject: "/sub".into(),
            roles: roles.then(|| "/roles".into()),
            permissions: roles.then(|| "/permissions".into()),
        }
    }

    #[test]
    fn exchange_classification_table() {
        let c = |status: u16, body: &str| {
            classify_exchange(StatusCode::from_u16(status).unwrap(), body.as_bytes())
        };
        assert_eq!(
            c(200, r#"{"expire": 300, "sso_ticket": "ssoTicket-fake"}"#),
            Ok(Exchange::Ticket {
                ticket: "ssoTicket-fake".into(),
                expires_in: Duration::from_secs(300)
            })
        );
        assert_eq!(
            c(200, r#"{"sso_ticket": "t"}"#),
            Ok(Exchange::Ticket {
                ticket: "t".into(),
                expires_in: Duration::ZERO
            }),
            "no expire: valid, not cached"
        );
        for s in [400, 401, 403, 404] {
            assert_eq!(c(s, "<html>"), Ok(Exchange::Rejected), "{s}");
        }
        for s in [500, 502, 503, 429] {
            assert!(matches!(c(s, ""), Err(IdpError::Unavailable(_))), "{s}");
        }
        for (s, body) in [
            (302, ""),
            (410, ""),
            (200, "<html>"),
            (200, "{}"),
            (200, r#"{"expire": 300, "sso_ticket": ""}"#),
            (200, r#"{"expire": 300, "sso_ticket": null}"#),
        ] {
            assert!(
                matches!(c(s, body), Err(IdpError::BadAnswer(_))),
                "{s} {body}"
            );
        }
    }

    #[test]
    fn userinfo_becomes_the_identity_with_pii_apart() {
        let body = r#"{"sub":"518","name":"Fake User","email":"fake@example.com","phone":"+971-500000001",
            "roles":["R1","R2"],"permissions":["P1"],"provider":"other","sso_ticket":"ssoTicket-echo"}"#;
        let id = classify_userinfo(StatusCode::OK, body.as_bytes(), &pointers(true), None).unwrap();
        assert_eq!(id.subject, "518");
        assert_eq!(id.roles, ["R1", "R2"]);
        assert_eq!(id.permissions, ["P1"]);
        let keys: Vec<&str> = id.context.keys().map(String::as_str).collect();
        assert_eq!(keys, ["provider", "sub", "name", "roles", "permissions"]);
        assert_eq!(id.context["provider"], "ciam");
        let pii = id.pii.unwrap();
        assert_eq!(pii["email"], "fake@example.com");
        assert_eq!(pii["phone"], "+971-500000001");

        let id = classify_userinfo(
            StatusCode::OK,
            br#"{"sub":42,"roles":["R"]}"#,
            &pointers(false),
            None,
        )
        .unwrap();
        assert_eq!(id.subject, "42");
        assert!(id.roles.is_empty(), "no pointer, no roles");
        assert!(id.pii.is_none());
    }

    #[test]
    fn userinfo_failures_are_idp_failures() {
        let c = |status: u16, body: &str| {
            classify_userinfo(
                StatusCode::from_u16(status).unwrap(),
                body.as_bytes(),
                &pointers(true),
                None,
            )
        };
        for s in [500, 503, 429] {
            assert!(matches!(c(s, ""), Err(IdpError::Unavailable(_))), "{s}");
        }
        for (s, body) in [
            (401, ""),
            (404, ""),
            (200, "<html>"),
            (200, "[]"),
            (200, r#"{"name":"no subject"}"#),
            (200, r#"{"sub":""}"#),
            (200, r#"{"sub":{"id":1}}"#),
            (200, r#"{"sub":"1","roles":"R1"}"#),
            (200, r#"{"sub":"1","permissions":[1]}"#),
        ] {
            assert!(
                matches!(c(s, body), Err(IdpError::BadAnswer(_))),
                "{s} {body}"
            );
        }
    }

    #[test]
    fn operating_system_from_user_agents() {
        for (ua, os) in [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/89.0.4389.82 Safari/537.36", "windows10.0"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X)", "ios13.3"),
            ("Mozilla/5.0 (iPad; CPU OS 16_1 like Mac OS X)", "ios16.1"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)", "macos10.15.7"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8)", "android14"),
            ("Mozilla/5.0 (X11; Linux x86_64)", "linux"),
            ("curl/8.5.0", "unknown"),
        ] {
            assert_eq!(operating_system(Some(ua)), os, "{ua}");
        }
        assert_eq!(operating_system(None), "unknown");
    }

    fn client(extra: &str) -> CiamClient {
        let cfg = Config::from_toml_str(&format!(
            "[idp]\nprovider = \"ciam\"\nbase_url = \"http://127.0.0.1:1\"\naccess_token = \"at-1\"\n{extra}\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n"
        ))
        .unwrap();
        let crate::config::ProviderConfig::Ciam(own) = &cfg.idp.provider else {
            panic!("not ciam")
        };
        CiamClient::new(&cfg.idp, own).unwrap()
    }

    #[test]
    fn fingerprint_is_stable_keyed_and_opaque() {
        let a = client("");
        let fp = a.fingerprint("session-token-1");
        assert_eq!(fp.len(), 32);
        assert_eq!(
            fp,
            a.fingerprint("session-token-1"),
            "same session, same value"
        );
        assert_ne!(fp, a.fingerprint("session-token-2"));
        assert!(!fp.contains("session"));
        assert_eq!(
            fp,
            client("").fingerprint("session-token-1"),
            "same key on every replica"
        );
    }

    #[tokio::test]
    async fn logout_does_no_io_and_carries_follow_the_pointers() {
        let plain = client("");
        let key = Credential::new("t", "");
        assert_eq!(plain.logout(&key).await, Ok(LogoutOutcome::AlreadyGone));
        assert_eq!(
            plain.carries(),
            Carries {
                roles: false,
                permissions: false
            }
        );
        let full =
            client("userinfo_url = \"http://127.0.0.1:1/u?x=1\"\nroles_pointer = \"/roles\"\n");
        assert_eq!(
            full.carries(),
            Carries {
                roles: true,
                permissions: false
            }
        );
        assert_eq!(
            full.userinfo.as_ref().unwrap().url_prefix,
            "http://127.0.0.1:1/u?x=1&"
        );
    }
}
