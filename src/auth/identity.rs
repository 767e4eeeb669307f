//! The provider-neutral identity of a session, and the identity headers
//! rendered from it once, when the session enters the cache, so a cache hit
//! only clones ready `HeaderValue`s (reference-counted bytes).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;

/// Prefix of every identity header; client copies of it never reach upstream.
pub const IDENTITY_HEADER_PREFIX: &str = "x-iid-";
/// The child session id.
pub const H_SESSION_ID: HeaderName = HeaderName::from_static("x-iid-session-id");
/// `selfProfile[0].profileId`.
pub const H_PROFILE_ID: HeaderName = HeaderName::from_static("x-iid-profile-id");
/// Permission codes, comma-separated, IdP order.
pub const H_PERMISSIONS: HeaderName = HeaderName::from_static("x-iid-permissions");
/// Role codes, comma-separated.
pub const H_ROLES: HeaderName = HeaderName::from_static("x-iid-roles");
/// `iidParams.locale`.
pub const H_LOCALE: HeaderName = HeaderName::from_static("x-iid-locale");
/// `authorityType`.
pub const H_AUTHORITY_TYPE: HeaderName = HeaderName::from_static("x-iid-authority-type");
/// base64url (no padding) JSON of the normalized identity.
pub const H_USER_CONTEXT: HeaderName = HeaderName::from_static("x-iid-user-context");

/// A validated user, as every provider reports it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Session id as the IdP reports it.
    pub session_id: String,
    /// Acting profile id.
    pub profile_id: String,
    /// Calling system, e.g. `D360`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_system_id: Option<String>,
    /// `SELF` or a delegation kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_type: Option<String>,
    /// `en` / `ar`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Permission codes, in IdP order. Sent as `x-iid-permissions` only, not
    /// repeated in the user context: the list is long and would double the
    /// bytes per request and per cached session.
    #[serde(skip)]
    pub permissions: Vec<String>,
    /// Roles and their organizations.
    pub roles: Vec<RoleGrant>,
    /// Delegations, passed through as the IdP sent them.
    pub delegations: Vec<Value>,
    /// Profile details that are not personal data.
    pub profile: ProfileInfo,
    /// Personal data; only rendered when `headers.include_pii` is on.
    #[serde(skip)]
    pub pii: Pii,
}

/// A role code and the organizations it applies to.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleGrant {
    /// Role code.
    pub code: String,
    /// Organization ids.
    pub organization_ids: Vec<Value>,
}

/// Non-sensitive profile fields.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileInfo {
    /// Licensing-authority profile id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub la_profile_id: Option<Value>,
    /// Name in English.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_en: Option<String>,
    /// Name in Arabic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_ar: Option<String>,
    /// Gender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// Unified id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unified_id: Option<String>,
    /// Nationality code (ISO alpha-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nationality: Option<String>,
    /// Profile type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether the profile is active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

/// Personal data, kept out of headers unless configured.
#[derive(Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pii {
    /// Emirates ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eid: Option<String>,
    /// Passport number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passport_no: Option<String>,
    /// Mobile number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_no: Option<String>,
    /// E-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl std::fmt::Debug for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pii(<redacted>)")
    }
}

/// Why an identity cannot be turned into headers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("identity field {field} cannot be sent as a header: {why}")]
pub struct RenderError {
    /// Which field.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: &'static str,
}

/// What the gateway keeps per valid session: the identity headers, rendered
/// once. Authorization reads the same comma lists the upstream receives, so
/// a session costs one allocation per header and nothing else.
#[derive(Debug)]
pub struct Authenticated {
    session_id: HeaderValue,
    profile_id: HeaderValue,
    permissions: HeaderValue,
    roles: HeaderValue,
    locale: Option<HeaderValue>,
    authority_type: Option<HeaderValue>,
    user_context: HeaderValue,
}

impl Authenticated {
    /// Renders `identity` into headers; fails on values that could smuggle
    /// header syntax (control characters, commas inside list items).
    pub fn render(identity: &Identity, include_pii: bool) -> Result<Self, RenderError> {
        for p in &identity.permissions {
            check_item("userPermissions", p)?;
        }
        for r in &identity.roles {
            check_item("userRoles.code", &r.code)?;
        }
        let roles: Vec<&str> = identity.roles.iter().map(|r| r.code.as_str()).collect();
        let (permissions, roles) = (identity.permissions.join(","), roles.join(","));
        let context = user_context(identity, include_pii)?;
        // All values share one buffer: a cached session costs one allocation
        // for its header bytes instead of seven.
        let parts: [(&'static str, Option<&str>); 7] = [
            ("sessionId", Some(&identity.session_id)),
            ("profileId", Some(&identity.profile_id)),
            ("userPermissions", Some(&permissions)),
            ("userRoles", Some(&roles)),
            ("iidParams.locale", identity.locale.as_deref()),
            ("authorityType", identity.authority_type.as_deref()),
            ("userContext", Some(&context)),
        ];
        let mut buf = Vec::with_capacity(parts.iter().filter_map(|(_, v)| v.map(str::len)).sum());
        let mut spans: [Option<std::ops::Range<usize>>; 7] = Default::default();
        for (span, (field, value)) in spans.iter_mut().zip(&parts) {
            if let Some(v) = value {
                check_ascii(field, v)?;
                let start = buf.len();
                buf.extend_from_slice(v.as_bytes());
                *span = Some(start..buf.len());
            }
        }
        let shared = Bytes::from(buf);
        let value = |i: usize| -> Result<Option<HeaderValue>, RenderError> {
            spans[i]
                .clone()
                .map(|r| {
                    HeaderValue::from_maybe_shared(shared.slice(r)).map_err(|_| RenderError {
                        field: parts[i].0,
                        why: "not a valid header value",
                    })
                })
                .transpose()
        };
        let required = |i: usize| -> Result<HeaderValue, RenderError> {
            value(i)?.ok_or(RenderError {
                field: parts[i].0,
                why: "missing",
            })
        };
        Ok(Self {
            session_id: required(0)?,
            profile_id: required(1)?,
            permissions: required(2)?,
            roles: required(3)?,
            locale: value(4)?,
            authority_type: value(5)?,
            user_context: required(6)?,
        })
    }

    /// The profile id, for logs.
    pub fn profile_id(&self) -> &str {
        // Rendered from a checked ASCII string, so this cannot fail.
        self.profile_id.to_str().unwrap_or_default()
    }

    /// True when every code in `required` is granted.
    pub fn has_all_permissions(&self, required: &[Box<str>]) -> bool {
        required.iter().all(|p| list_contains(&self.permissions, p))
    }

    /// True when `any_of` is empty or one of its codes is granted.
    pub fn has_any_role(&self, any_of: &[Box<str>]) -> bool {
        any_of.is_empty() || any_of.iter().any(|r| list_contains(&self.roles, r))
    }

    /// Adds the identity headers; the caller has already removed client copies.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.reserve(7);
        headers.insert(H_SESSION_ID, self.session_id.clone());
        headers.insert(H_PROFILE_ID, self.profile_id.clone());
        headers.insert(H_PERMISSIONS, self.permissions.clone());
        headers.insert(H_ROLES, self.roles.clone());
        if let Some(v) = &self.locale {
            headers.insert(H_LOCALE, v.clone());
        }
        if let Some(v) = &self.authority_type {
            headers.insert(H_AUTHORITY_TYPE, v.clone());
        }
        headers.insert(H_USER_CONTEXT, self.user_context.clone());
    }

    /// The rendered headers, for tests and diagnostics.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = HeaderMap::new();
        self.inject(&mut h);
        h.into_iter().filter_map(|(n, v)| Some((n?, v))).collect()
    }
}

/// Whether the comma list `list` contains `item` exactly.
fn list_contains(list: &HeaderValue, item: &str) -> bool {
    list.as_bytes()
        .split(|&b| b == b',')
        .any(|p| p == item.as_bytes())
}

/// Removes every header that looks like an identity header, including
/// `_`-for-`-` and mixed-case variants some frameworks fold together.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    // Fast path: most requests carry no such header, so look before allocating.
    if !headers.keys().any(is_identity_header) {
        return;
    }
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_identity_header(n))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(&name);
    }
}

/// True for names equal to `x-iid-*` once lowercased and with `_` read as `-`.
pub fn is_identity_header(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    let p = IDENTITY_HEADER_PREFIX.as_bytes();
    n.len() >= p.len()
        && n[..p.len()]
            .iter()
            .zip(p)
            .all(|(&a, &b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
}

fn check_item(field: &'static str, v: &str) -> Result<(), RenderError> {
    if v.is_empty() || v.contains(',') {
        return Err(RenderError {
            field,
            why: "empty or contains ','",
        });
    }
    Ok(())
}

fn check_ascii(field: &'static str, v: &str) -> Result<(), RenderError> {
    if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(RenderError {
            field,
            why: "not printable ASCII",
        });
    }
    Ok(())
}

fn user_context(identity: &Identity, include_pii: bool) -> Result<String, RenderError> {
    #[derive(Serialize)]
    struct WithPii<'a> {
        #[serde(flatten)]
        identity: &'a Identity,
        pii: &'a Pii,
    }
    let json = if include_pii {
        serde_json::to_vec(&WithPii {
            identity,
            pii: &identity.pii,
        })
    } else {
        serde_json::to_vec(identity)
    }
    .map_err(|_| RenderError {
        field: "userContext",
        why: "not serializable",
    })?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Identity {
        Identity {
            session_id: "s-1".into(),
            profile_id: "518".into(),
            authority_type: Some("SELF".into()),
            locale: Some("en".into()),
            permissions: vec!["P2".into(), "P1".into()],
            roles: vec![RoleGrant {
                code: "IID-INVESTOR".into(),
                organization_ids: vec![Value::from(2)],
            }],
            profile: ProfileInfo {
                name_ar: Some("خديجه".into()),
                ..Default::default()
            },
            pii: Pii {
                eid: Some("784-0000".into()),
                email: Some("a@example.ae".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn context_json(a: &Authenticated) -> Value {
        let headers = a.headers();
        let (_, v) = headers.iter().find(|(n, _)| *n == H_USER_CONTEXT).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(v.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn renders_headers_in_idp_order_and_keeps_arabic_in_the_context() {
        let a = Authenticated::render(&sample(), false).unwrap();
        let headers = a.headers();
        let get = |n: &HeaderName| headers.iter().find(|(h, _)| h == n).unwrap().1.clone();
        assert_eq!(get(&H_PERMISSIONS), "P2,P1");
        assert_eq!(get(&H_ROLES), "IID-INVESTOR");
        assert_eq!(get(&H_PROFILE_ID), "518");
        let ctx = context_json(&a);
        assert_eq!(ctx["profile"]["nameAr"], "خديجه");
        assert!(
            ctx.get("permissions").is_none(),
            "carried by x-iid-permissions only"
        );
        assert_eq!(ctx["roles"][0]["organizationIds"][0], 2);
        assert!(ctx.get("pii").is_none());
    }

    #[test]
    fn pii_only_when_enabled() {
        let a = Authenticated::render(&sample(), true).unwrap();
        assert_eq!(context_json(&a)["pii"]["eid"], "784-0000");
    }

    #[test]
    fn rejects_header_smuggling_values() {
        let mut id = sample();
        id.permissions.push("P3\r\nX-Evil: 1".into());
        assert!(Authenticated::render(&id, false).is_err());
        let mut id = sample();
        id.permissions.push("P3,P4".into());
        assert!(Authenticated::render(&id, false).is_err());
    }

    #[test]
    fn authorization_checks() {
        let a = Authenticated::render(&sample(), false).unwrap();
        assert!(a.has_all_permissions(&["P1".into(), "P2".into()]));
        assert!(!a.has_all_permissions(&["P1".into(), "P9".into()]));
        assert!(a.has_any_role(&[]));
        assert!(a.has_any_role(&["X".into(), "IID-INVESTOR".into()]));
        assert!(!a.has_any_role(&["X".into()]));
        // Exact items only: no prefix or substring matches.
        assert!(!a.has_all_permissions(&["P".into()]));
        assert!(!a.has_any_role(&["IID".into()]));
    }

    #[test]
    fn identity_header_variants_are_recognized() {
        for n in [
            "x-iid-profile-id",
            "x_iid_profile_id",
            "x-iid_roles",
            "x_iid-",
        ] {
            assert!(
                is_identity_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
        for n in ["x-iidx", "x-forwarded-for", "iid-profile-id"] {
            assert!(
                !is_identity_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert("X_IID_Profile_Id", HeaderValue::from_static("1"));
        h.insert("x-iid-roles", HeaderValue::from_static("ADMIN"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_identity_headers(&mut h);
        assert_eq!(h.len(), 1);
    }
}
