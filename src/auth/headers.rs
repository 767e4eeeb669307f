//! What the upstream is told about the user: the [`HeaderPlan`], built once
//! from config, renders an [`Identity`] into identity headers once, when the
//! session enters the cache, so a cache hit only clones ready `HeaderValue`s
//! (reference-counted bytes). The same plan strips client copies of those
//! headers, so the prefix that names them is also the one that protects them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value};

use super::identity::Identity;
use super::jwt::IdentityToken;

/// Which lists a provider carries; a provider without roles sends no roles header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carries {
    /// The provider reports role codes.
    pub roles: bool,
    /// The provider reports permission codes.
    pub permissions: bool,
}

/// Why a header plan cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("headers.prefix {0:?} does not make valid header names")]
pub struct InvalidPrefix(pub String);

/// Why an identity cannot be turned into headers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("identity field {field} cannot be sent as a header: {why}")]
pub struct RenderError {
    /// Which field.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: &'static str,
}

/// The identity headers' names, all under one prefix.
#[derive(Debug, Clone)]
struct Names {
    session_id: HeaderName,
    profile_id: HeaderName,
    permissions: HeaderName,
    roles: HeaderName,
    locale: HeaderName,
    org_id: HeaderName,
    user_context: HeaderName,
}

/// How identities become upstream headers: names, the PII switch, and which
/// lists the provider carries. Built once from config.
#[derive(Debug, Clone)]
pub struct HeaderPlan {
    prefix: Box<str>,
    /// Identity headers named outside the prefix (a custom `jwt.header`),
    /// stripped from clients all the same.
    also_strip: Box<[HeaderName]>,
    names: Names,
    include_pii: bool,
    carries: Carries,
}

impl HeaderPlan {
    /// A plan for headers named `{prefix}profile-id` and so on.
    pub fn new(prefix: &str, include_pii: bool, carries: Carries) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.to_ascii_lowercase();
        let name = |suffix: &str| {
            HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes())
                .map_err(|_| InvalidPrefix(prefix.clone()))
        };
        if prefix.is_empty() {
            return Err(InvalidPrefix(prefix));
        }
        Ok(Self {
            names: Names {
                session_id: name("session-id")?,
                profile_id: name("profile-id")?,
                permissions: name("permissions")?,
                roles: name("roles")?,
                locale: name("locale")?,
                org_id: name("org-id")?,
                user_context: name("user-context")?,
            },
            prefix: prefix.into(),
            also_strip: Box::new([]),
            include_pii,
            carries,
        })
    }

    /// Also strips client copies of `name` (an identity header named outside the prefix).
    pub fn also_strip(mut self, name: HeaderName) -> Self {
        if !self.is_identity_header(&name) {
            let mut names = self.also_strip.into_vec();
            names.push(name);
            self.also_strip = names.into();
        }
        self
    }

    /// The prefix every identity header starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Which lists the provider carries.
    pub fn carries(&self) -> Carries {
        self.carries
    }

    /// Renders `identity` into headers; fails on values that could smuggle
    /// header syntax (control characters, commas inside list items).
    pub fn render(&self, identity: &Identity) -> Result<Authenticated, RenderError> {
        for p in &identity.permissions {
            check_item("permissions", p)?;
        }
        for r in &identity.roles {
            check_item("roles", r)?;
        }
        let permissions = self
            .carries
            .permissions
            .then(|| identity.permissions.join(","));
        let roles = self.carries.roles.then(|| identity.roles.join(","));
        let context = self.user_context(identity)?;
        let n = &self.names;
        let mut slots: Vec<(HeaderName, &str, &'static str)> =
            Vec::with_capacity(7 + identity.extra.len());
        if let Some(v) = &identity.session_id {
            slots.push((n.session_id.clone(), v, "session_id"));
        }
        // An empty subject is a provider that names no one (ciam without
        // userinfo): no profile id rather than an empty one. Providers that
        // do name a subject refuse an empty one themselves.
        if !identity.subject.is_empty() {
            slots.push((n.profile_id.clone(), &identity.subject, "subject"));
        }
        if let Some(v) = &permissions {
            slots.push((n.permissions.clone(), v, "permissions"));
        }
        if let Some(v) = &roles {
            slots.push((n.roles.clone(), v, "roles"));
        }
        if let Some(v) = &identity.locale {
            slots.push((n.locale.clone(), v, "locale"));
        }
        if let Some(v) = &identity.organization {
            slots.push((n.org_id.clone(), v, "organization"));
        }
        for (suffix, v) in &identity.extra {
            let name = HeaderName::from_bytes(format!("{}{suffix}", self.prefix).as_bytes())
                .map_err(|_| RenderError {
                    field: "extra",
                    why: "not a valid header name",
                })?;
            slots.push((name, v, "extra"));
        }
        slots.push((n.user_context.clone(), &context, "user_context"));

        // All values share one buffer: a cached session costs one allocation
        // for its header bytes instead of one per header.
        let mut buf = Vec::with_capacity(slots.iter().map(|(_, v, _)| v.len()).sum());
        let mut spans = Vec::with_capacity(slots.len());
        for (_, v, field) in &slots {
            check_ascii(field, v)?;
            let start = buf.len();
            buf.extend_from_slice(v.as_bytes());
            spans.push(start..buf.len());
        }
        let shared = Bytes::from(buf);
        let headers = slots
            .into_iter()
            .zip(spans)
            .map(|((name, _, field), span)| {
                HeaderValue::from_maybe_shared(shared.slice(span))
                    .map(|v| (name, v))
                    .map_err(|_| RenderError {
                        field,
                        why: "not a valid header value",
                    })
            })
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(Authenticated {
            subject: identity.subject.as_str().into(),
            roles: identity.roles.iter().map(|r| r.as_str().into()).collect(),
            permissions: identity
                .permissions
                .iter()
                .map(|p| p.as_str().into())
                .collect(),
            headers,
            token: None,
        })
    }

    /// Removes every client header that looks like an identity header,
    /// including `_`-for-`-` and mixed-case variants some frameworks fold
    /// together, so anything identity-shaped upstream was written here.
    pub fn strip(&self, headers: &mut HeaderMap) {
        // Fast path: most requests carry no such header, so look before allocating.
        if !headers.keys().any(|n| self.is_identity_header(n)) {
            return;
        }
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| self.is_identity_header(n))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(&name);
        }
    }

    /// True for names equal to `{prefix}*`, or to a name given to
    /// [`HeaderPlan::also_strip`], once lowercased and with `_` read as `-`.
    pub fn is_identity_header(&self, name: &HeaderName) -> bool {
        let n = name.as_str().as_bytes();
        let folds = |p: &[u8]| {
            n.iter()
                .zip(p)
                .all(|(&a, &b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
        };
        (n.len() >= self.prefix.len() && folds(self.prefix.as_bytes()))
            || self
                .also_strip
                .iter()
                .any(|x| x.as_str().len() == n.len() && folds(x.as_str().as_bytes()))
    }

    /// base64url (no padding) of the provider's context, plus `pii` when enabled.
    fn user_context(&self, identity: &Identity) -> Result<String, RenderError> {
        #[derive(Serialize)]
        struct WithPii<'a> {
            #[serde(flatten)]
            context: &'a Map<String, Value>,
            pii: &'a Map<String, Value>,
        }
        let json = match (&identity.pii, self.include_pii) {
            (Some(pii), true) => serde_json::to_vec(&WithPii {
                context: &identity.context,
                pii,
            }),
            _ => serde_json::to_vec(&identity.context),
        }
        .map_err(|_| RenderError {
            field: "user_context",
            why: "not serializable",
        })?;
        Ok(URL_SAFE_NO_PAD.encode(json))
    }
}

/// What the gateway keeps per valid session: the identity headers, rendered
/// once, and the codes authorization checks.
#[derive(Debug)]
pub struct Authenticated {
    subject: Box<str>,
    roles: Box<[Box<str>]>,
    permissions: Box<[Box<str>]>,
    headers: Box<[(HeaderName, HeaderValue)]>,
    /// The signed identity token, with `[jwt]` on.
    token: Option<IdentityToken>,
}

impl Authenticated {
    /// Adds the signed identity token, sent after the other identity headers.
    pub fn with_token(mut self, token: IdentityToken) -> Self {
        self.token = Some(token);
        self
    }

    /// The provider's subject (profile id), for logs.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// True when every code in `required` is granted.
    pub fn has_all_permissions(&self, required: &[Box<str>]) -> bool {
        required.iter().all(|p| self.permissions.contains(p))
    }

    /// True when `any_of` is empty or one of its codes is granted.
    pub fn has_any_role(&self, any_of: &[Box<str>]) -> bool {
        any_of.is_empty() || any_of.iter().any(|r| self.roles.contains(r))
    }

    /// Adds the identity headers; the caller has already removed client copies.
    /// The signed token is one of them: cloned, or re-signed when near its expiry.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.reserve(self.headers.len() + usize::from(self.token.is_some()));
        for (name, value) in self.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(token) = &self.token {
            if let Some(value) = token.value(std::time::SystemTime::now()) {
                headers.insert(token.header().clone(), value);
            }
        }
    }

    /// The rendered headers, in the order they are sent (the signed token,
    /// which changes over the session's life, is added by [`Authenticated::inject`]).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BOTH: Carries = Carries {
        roles: true,
        permissions: true,
    };

    fn plan(include_pii: bool) -> HeaderPlan {
        HeaderPlan::new("x-iid-", include_pii, BOTH).unwrap()
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn sample() -> Identity {
        Identity {
            session_id: Some("s-1".into()),
            subject: "518".into(),
            locale: Some("en".into()),
            permissions: vec!["P2".into(), "P1".into()],
            roles: vec!["IID-INVESTOR".into()],
            extra: vec![("authority-type".into(), "SELF".into())],
            context: object(json!({
                "roles": [{"code": "IID-INVESTOR", "organizationIds": [2]}],
                "profile": {"nameAr": "ليلى"},
            })),
            pii: Some(object(json!({"eid": "784-0000", "email": "a@example.ae"}))),
            ..Default::default()
        }
    }

    fn get(a: &Authenticated, name: &str) -> Option<HeaderValue> {
        a.headers()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn context_json(a: &Authenticated) -> Value {
        let v = get(a, "x-iid-user-context").unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(v.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn renders_headers_in_idp_order_and_keeps_arabic_in_the_context() {
        let a = plan(false).render(&sample()).unwrap();
        assert_eq!(get(&a, "x-iid-permissions").unwrap(), "P2,P1");
        assert_eq!(get(&a, "x-iid-roles").unwrap(), "IID-INVESTOR");
        assert_eq!(get(&a, "x-iid-profile-id").unwrap(), "518");
        assert_eq!(get(&a, "x-iid-session-id").unwrap(), "s-1");
        assert_eq!(get(&a, "x-iid-authority-type").unwrap(), "SELF");
        let ctx = context_json(&a);
        assert_eq!(ctx["profile"]["nameAr"], "ليلى");
        assert!(
            ctx.get("permissions").is_none(),
            "carried by x-iid-permissions only"
        );
        assert_eq!(ctx["roles"][0]["organizationIds"][0], 2);
        assert!(ctx.get("pii").is_none());
        let names: Vec<&str> = a.headers().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-iid-session-id",
                "x-iid-profile-id",
                "x-iid-permissions",
                "x-iid-roles",
                "x-iid-locale",
                "x-iid-authority-type",
                "x-iid-user-context"
            ]
        );
    }

    #[test]
    fn pii_only_when_enabled() {
        let a = plan(true).render(&sample()).unwrap();
        assert_eq!(context_json(&a)["pii"]["eid"], "784-0000");
    }

    #[test]
    fn the_prefix_names_every_header_and_lists_follow_what_the_provider_carries() {
        let p = HeaderPlan::new(
            "X-Portal-",
            false,
            Carries {
                roles: false,
                permissions: false,
            },
        )
        .unwrap();
        let mut id = sample();
        id.organization = Some("org-7".into());
        let a = p.render(&id).unwrap();
        let names: Vec<&str> = a.headers().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-portal-session-id",
                "x-portal-profile-id",
                "x-portal-locale",
                "x-portal-org-id",
                "x-portal-authority-type",
                "x-portal-user-context"
            ]
        );
        assert!(HeaderPlan::new("bad prefix", false, BOTH).is_err());
        assert!(HeaderPlan::new("", false, BOTH).is_err());
    }

    #[test]
    fn rejects_header_smuggling_values() {
        let mut id = sample();
        id.permissions.push("P3\r\nX-Evil: 1".into());
        assert!(plan(false).render(&id).is_err());
        let mut id = sample();
        id.permissions.push("P3,P4".into());
        assert!(plan(false).render(&id).is_err());
        let mut id = sample();
        id.subject = "5\n18".into();
        assert!(plan(false).render(&id).is_err());
    }

    #[test]
    fn an_empty_subject_sends_no_profile_id() {
        let mut id = sample();
        id.subject.clear();
        let a = plan(false).render(&id).unwrap();
        let mut h = HeaderMap::new();
        a.inject(&mut h);
        assert!(h.get("x-iid-profile-id").is_none());
        assert!(h.get("x-iid-user-context").is_some());
    }

    #[test]
    fn authorization_checks() {
        let a = plan(false).render(&sample()).unwrap();
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
        let p = plan(false);
        for n in [
            "x-iid-profile-id",
            "x_iid_profile_id",
            "x-iid_roles",
            "x_iid-",
        ] {
            assert!(
                p.is_identity_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
        for n in ["x-iidx", "x-forwarded-for", "iid-profile-id"] {
            assert!(
                !p.is_identity_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
        let custom = plan(false).also_strip(HeaderName::from_static("x-app-assertion"));
        for n in ["x-app-assertion", "x_app_assertion"] {
            assert!(custom.is_identity_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()));
        }
        for n in ["x-app-assertion2", "x-app-assert"] {
            assert!(!custom.is_identity_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()));
        }
        let mut h = HeaderMap::new();
        h.insert("X_IID_Profile_Id", HeaderValue::from_static("1"));
        h.insert("x-iid-roles", HeaderValue::from_static("ADMIN"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        p.strip(&mut h);
        assert_eq!(h.len(), 1);
    }
}
