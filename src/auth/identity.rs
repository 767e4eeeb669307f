//! The provider-neutral identity of a session: what every provider reports
//! about a user, whatever its own answer looks like. The headers the upstream
//! receives are rendered from it once (see [`crate::auth::headers`]).

use std::borrow::Cow;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A validated user, as every provider reports it. Serializable so that
/// replicas can share it (sealed, see `cluster`), never for logs.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Who the user is, in the provider's terms (IID: the acting profile
    /// id); sent as `{prefix}profile-id`. Empty only for a provider that
    /// names no one (ciam without userinfo): then no profile id is sent.
    pub subject: String,
    /// The provider's own session id, when it has one; sent as `{prefix}session-id`.
    pub session_id: Option<String>,
    /// Role codes, in provider order.
    pub roles: Vec<String>,
    /// Permission codes, in provider order.
    pub permissions: Vec<String>,
    /// The organization the user acts for; sent as `{prefix}org-id`.
    pub organization: Option<String>,
    /// Preferred language (`en`, `ar`); sent as `{prefix}locale`.
    pub locale: Option<String>,
    /// Further provider-specific headers, as (name after the prefix, value),
    /// e.g. IID's `authority-type`.
    pub extra: Vec<(Cow<'static, str>, String)>,
    /// What the provider says about the user that is not personal data: the
    /// body of `{prefix}user-context`, keys in the provider's order.
    pub context: Map<String, Value>,
    /// Personal data, added to the user context as `pii` only when
    /// `headers.include_pii` is on; `None` when the provider has none.
    pub pii: Option<Map<String, Value>>,
    /// When the session ends, as the provider reported it.
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for Identity {
    /// Personal data never reaches a log line, even at debug level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field(
                "session_id",
                &self.session_id.as_ref().map(|_| "<redacted>"),
            )
            .field("roles", &self.roles)
            .field("permissions", &self.permissions.len())
            .field("organization", &self.organization)
            .field("locale", &self.locale)
            .field("pii", &self.pii.as_ref().map(|_| "<redacted>"))
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_personal_data_and_the_session_id() {
        let mut pii = Map::new();
        pii.insert("eid".into(), Value::from("784-1234"));
        let id = Identity {
            subject: "518".into(),
            session_id: Some("fa44b0c4-secret".into()),
            pii: Some(pii),
            ..Default::default()
        };
        let d = format!("{id:?}");
        assert!(d.contains("518"), "{d}");
        assert!(!d.contains("784-1234") && !d.contains("fa44b0c4"), "{d}");
    }
}
