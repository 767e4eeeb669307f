//! IID child-session client: "Get Child Session" (`/sso/session/fetch`) to
//! validate, "Logout Child Session" (`/sso/session/logout`) to end.
//!
//! Classification (the whole contract with the IdP in one place):
//! HTTP 200 + `code == 0` + `data` -> valid; HTTP 401/404 or `code != 0` ->
//! invalid; transport error, timeout, 5xx, 408, 429 -> unavailable; anything
//! else, or a body that is not the seed's shape -> bad answer.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, StatusCode, Uri};
use http_body_util::Full;
use serde::Serialize;
use serde_json::Value;

pub mod wire;

use self::wire::{ChildSession, CommonResponse, SessionRequest};
use super::{
    describe_json, json_object, BoxFuture, BuildError, ClientInfo, HttpClient, IdpError,
    LogoutOutcome, SessionProvider, Verdict,
};
use crate::auth::credential::Credential;
use crate::auth::headers::Carries;
use crate::auth::identity::Identity;
use crate::config::{IdpConfig, IidConfig, StaticHeaders};

/// Client for the IID child-session API.
pub struct IidClient {
    client: HttpClient,
    fetch_uri: Uri,
    logout_uri: Uri,
    api_key: HeaderValue,
    client_id: HeaderValue,
    /// `[idp] headers`, sent first; values are marked sensitive.
    static_headers: StaticHeaders,
    timeout: Duration,
}

impl IidClient {
    /// Builds a client for `cfg` and IID's own keys (`base_url` must already
    /// point at the IdP or emulator).
    pub fn new(cfg: &IdpConfig, iid: &IidConfig) -> Result<Self, BuildError> {
        let mut api_key = HeaderValue::from_str(iid.api_key.expose())
            .map_err(|_| BuildError::Header("api_key"))?;
        // Keeps the key out of any header dump hyper or a debug hook might print.
        api_key.set_sensitive(true);
        let client = super::http_client(cfg)?;
        Ok(Self {
            client,
            fetch_uri: super::endpoint_uri(cfg, wire::PATH_FETCH)?,
            logout_uri: super::endpoint_uri(cfg, wire::PATH_LOGOUT)?,
            api_key,
            client_id: HeaderValue::from_str(&iid.client_id)
                .map_err(|_| BuildError::Header("client_id"))?,
            static_headers: cfg.headers.clone(),
            timeout: cfg.timeout,
        })
    }

    /// POSTs the session pair to `uri`; the timeout covers connect to last body byte.
    async fn call(&self, uri: &Uri, key: &Credential) -> Result<(StatusCode, Bytes), IdpError> {
        let body = serde_json::to_vec(&SessionRequest {
            session_token: key.token().to_owned(),
            session_id: key.id().to_owned(),
        })
        .map_err(|e| IdpError::BadAnswer(format!("request encoding: {e}")))?;
        let req = super::request(Method::POST, uri.clone(), &self.static_headers)
            .header(wire::HEADER_API_KEY, self.api_key.clone())
            .header(wire::HEADER_CLIENT_ID, self.client_id.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| IdpError::BadAnswer(format!("request building: {e}")))?;
        super::exchange(&self.client, req, self.timeout).await
    }
}

impl SessionProvider for IidClient {
    fn fetch<'a>(
        &'a self,
        key: &'a Credential,
        _client: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<Verdict, IdpError>> {
        Box::pin(async move {
            let (status, body) = self.call(&self.fetch_uri, key).await?;
            classify_fetch(status, &body, key)
        })
    }

    fn carries(&self) -> Carries {
        Carries {
            roles: true,
            permissions: true,
        }
    }

    fn logout<'a>(&'a self, key: &'a Credential) -> BoxFuture<'a, Result<LogoutOutcome, IdpError>> {
        Box::pin(async move {
            let (status, body) = self.call(&self.logout_uri, key).await?;
            match status {
                StatusCode::OK => match serde_json::from_slice::<CommonResponse<Value>>(&body) {
                    Ok(r) if r.code == 0 => Ok(LogoutOutcome::LoggedOut),
                    Ok(_) => Ok(LogoutOutcome::AlreadyGone),
                    Err(e) => Err(IdpError::BadAnswer(format!(
                        "logout answer: {}",
                        describe_json(&e)
                    ))),
                },
                StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND => Ok(LogoutOutcome::AlreadyGone),
                s => Err(unexpected_status(s)),
            }
        })
    }
}

/// Turns a "Get Child Session" exchange into a verdict.
pub fn classify_fetch(
    status: StatusCode,
    body: &[u8],
    key: &Credential,
) -> Result<Verdict, IdpError> {
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED if rejects_our_credentials(body) => {
            // Every session would look logged out: a misconfiguration, not a
            // verdict on this session, so it is neither cached nor trusted.
            return Err(IdpError::BadAnswer(
                "the IdP rejected the API key or client id (check idp.api_key / idp.client_id)"
                    .into(),
            ));
        }
        StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND => {
            return Ok(Verdict::Invalid {
                reason: "idp_rejected",
            })
        }
        s => return Err(unexpected_status(s)),
    }
    let answer: CommonResponse<ChildSession> = serde_json::from_slice(body)
        .map_err(|e| IdpError::BadAnswer(format!("not a CommonResponse: {}", describe_json(&e))))?;
    if answer.code != 0 {
        return Ok(Verdict::Invalid {
            reason: "idp_rejected",
        });
    }
    let data = answer
        .data
        .ok_or_else(|| IdpError::BadAnswer("code 0 without data".into()))?;
    let (identity, expires_in) = to_identity(data, key)?;
    Ok(Verdict::Valid {
        identity: Box::new(identity),
        expires_in,
    })
}

/// True when a 401 says the integration's credentials, not the session, were
/// refused (IID answers `desc.en` "Invalid API Key" / "Invalid Client Id").
fn rejects_our_credentials(body: &[u8]) -> bool {
    let Ok(answer) = serde_json::from_slice::<CommonResponse<Value>>(body) else {
        return false;
    };
    let text = answer
        .desc
        .and_then(|d| d.en)
        .unwrap_or_default()
        .to_ascii_lowercase();
    text.contains("api key") || text.contains("api-key") || text.contains("client id")
}

fn unexpected_status(s: StatusCode) -> IdpError {
    if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT
    {
        IdpError::Unavailable(format!("HTTP {}", s.as_u16()))
    } else {
        IdpError::BadAnswer(format!("unexpected HTTP {}", s.as_u16()))
    }
}

/// Maps the seed's `data` onto the provider-neutral identity. The user
/// context keeps the shape (and key order) IID apps have always received.
fn to_identity(data: ChildSession, key: &Credential) -> Result<(Identity, Duration), IdpError> {
    let profile = data
        .self_profile
        .and_then(|p| p.into_iter().next())
        .ok_or_else(|| IdpError::BadAnswer("selfProfile is empty".into()))?;
    let profile_id = match &profile.profile_id {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(IdpError::BadAnswer(
                "selfProfile[0].profileId missing".into(),
            ))
        }
    };
    let expires_in = match data.expires_in {
        Some(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs.min(1.0e9)),
        _ => Duration::ZERO,
    };
    let roles: Vec<RoleGrant> = data
        .user_roles
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            Some(RoleGrant {
                code: r.code?,
                organization_ids: r.organization_ids.unwrap_or_default(),
            })
        })
        .collect();
    let session_id = data
        .session_id
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| key.id().to_owned());
    let locale = data.iid_params.and_then(|p| p.locale);
    let context = UserContext {
        session_id: &session_id,
        profile_id: &profile_id,
        external_system_id: data.external_system_id.as_deref(),
        authority_type: data.authority_type.as_deref(),
        locale: locale.as_deref(),
        roles: &roles,
        delegations: data.delegations.as_deref().unwrap_or_default(),
        profile: ProfileInfo {
            la_profile_id: profile.la_profile_id,
            name_en: profile.name_en,
            name_ar: profile.name_ar,
            gender: profile.gender,
            unified_id: profile.unified_id,
            nationality: profile.nationality.and_then(|n| n.code),
            kind: profile.kind,
            is_active: profile.is_active,
        },
    };
    let pii = Pii {
        eid: profile.eid,
        passport_no: profile.passport_no,
        mobile_no: profile.mobile_no,
        email: profile.email,
    };
    let identity = Identity {
        context: json_object(&context)?,
        pii: Some(json_object(&pii)?),
        subject: profile_id,
        session_id: Some(session_id),
        roles: roles.into_iter().map(|r| r.code).collect(),
        permissions: data.user_permissions.unwrap_or_default(),
        organization: None,
        locale,
        extra: data
            .authority_type
            .map(|a| vec![("authority-type".into(), a)])
            .unwrap_or_default(),
        expires_at: SystemTime::now().checked_add(expires_in),
    };
    Ok((identity, expires_in))
}

/// `{prefix}user-context` for IID: everything but permissions (sent as their
/// own header: the list is long and would double the bytes per request) and
/// personal data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserContext<'a> {
    session_id: &'a str,
    profile_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_system_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authority_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locale: Option<&'a str>,
    roles: &'a [RoleGrant],
    delegations: &'a [Value],
    profile: ProfileInfo,
}

/// A role code and the organizations it applies to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct RoleGrant {
    code: String,
    organization_ids: Vec<Value>,
}

/// Profile fields that are not personal data.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    la_profile_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_en: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_ar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unified_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nationality: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_active: Option<bool>,
}

/// Personal data: in the user context only with `headers.include_pii`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pii {
    #[serde(skip_serializing_if = "Option::is_none")]
    eid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    passport_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mobile_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = include_bytes!("../../../tests/data/seed_fetch_response.json");

    fn key() -> Credential {
        Credential::new("fa44b0c4-fb2d-43c3-bb65-345ad2a8be11", "")
    }

    #[test]
    fn seed_answer_is_valid_with_its_identity() {
        let Verdict::Valid {
            identity,
            expires_in,
        } = classify_fetch(StatusCode::OK, SEED, &key()).unwrap()
        else {
            panic!("not valid")
        };
        assert_eq!(expires_in, Duration::from_secs(15));
        assert_eq!(identity.subject, "518");
        assert_eq!(
            identity.session_id.as_deref(),
            Some("b26e93f2-19bc-4473-95ed-db72bd1eb5f2")
        );
        assert_eq!(identity.permissions.len(), 36);
        assert_eq!(identity.roles[0], "IID-INVESTOR");
        assert_eq!(identity.locale.as_deref(), Some("en"));
        assert_eq!(identity.context["profile"]["nameAr"], "ليلى حسن التجربة");
        assert_eq!(identity.context["roles"][0]["code"], "IID-INVESTOR");
        assert_eq!(
            identity.pii.as_ref().unwrap()["eid"],
            "784000000000518",
            "personal data stays out of the context"
        );
        assert!(identity.context.get("eid").is_none());
        // The user context keeps the field order IID apps have always received.
        let keys: Vec<&str> = identity.context.keys().map(String::as_str).collect();
        assert_eq!(&keys[..2], ["sessionId", "profileId"]);
        assert_eq!(keys.last(), Some(&"profile"));
    }

    #[test]
    fn classification_table() {
        let k = key();
        let invalid = Ok(Verdict::Invalid {
            reason: "idp_rejected",
        });
        assert_eq!(classify_fetch(StatusCode::UNAUTHORIZED, b"", &k), invalid);
        assert_eq!(
            classify_fetch(StatusCode::NOT_FOUND, b"whatever", &k),
            invalid
        );
        assert_eq!(
            classify_fetch(StatusCode::OK, br#"{"code":401,"desc":{"en":"x"}}"#, &k),
            invalid
        );
        assert!(matches!(
            classify_fetch(StatusCode::BAD_GATEWAY, b"", &k),
            Err(IdpError::Unavailable(_))
        ));
        assert!(matches!(
            classify_fetch(StatusCode::TOO_MANY_REQUESTS, b"", &k),
            Err(IdpError::Unavailable(_))
        ));
        assert!(matches!(
            classify_fetch(StatusCode::OK, b"<html>", &k),
            Err(IdpError::BadAnswer(_))
        ));
        assert!(matches!(
            classify_fetch(StatusCode::OK, br#"{"code":0}"#, &k),
            Err(IdpError::BadAnswer(_))
        ));
        assert!(matches!(
            classify_fetch(
                StatusCode::OK,
                br#"{"code":0,"data":{"selfProfile":[]}}"#,
                &k
            ),
            Err(IdpError::BadAnswer(_))
        ));
        assert!(matches!(
            classify_fetch(StatusCode::FORBIDDEN, b"", &k),
            Err(IdpError::BadAnswer(_))
        ));
        // A refused API key is a misconfiguration, not an invalid session.
        assert!(matches!(
            classify_fetch(
                StatusCode::UNAUTHORIZED,
                br#"{"code":401,"desc":{"en":"Invalid API Key","ar":"x"}}"#,
                &k
            ),
            Err(IdpError::BadAnswer(_))
        ));
        assert_eq!(
            classify_fetch(
                StatusCode::UNAUTHORIZED,
                br#"{"code":401,"desc":{"en":"Already Logout"}}"#,
                &k
            ),
            invalid
        );
    }

    #[test]
    fn missing_or_negative_expiry_means_zero() {
        let body = br#"{"code":0,"data":{"selfProfile":[{"profileId":"7"}],"expires_in":-3}}"#;
        let Ok(Verdict::Valid {
            expires_in,
            identity,
        }) = classify_fetch(StatusCode::OK, body, &key())
        else {
            panic!()
        };
        assert_eq!(expires_in, Duration::ZERO);
        assert_eq!(identity.subject, "7");
        assert_eq!(identity.session_id.as_deref(), Some(key().id()));
    }
}
