//! Wire types of CIAM "Exchanging sessiontoken for ssoticket" (seed 004),
//! shared by the CIAM client and its emulator so both speak exactly the
//! same JSON, plus the userinfo answer the emulator serves.

use serde::{Deserialize, Serialize};

/// Path of the exchange under `base_url`.
pub const PATH_SSO_TICKET: &str = "/api/v2/tenant/sso/session-token/sso-ticket";
/// Path of the emulator's userinfo endpoint (the seed names none; a real
/// deployment sets `idp.userinfo_url` to its own).
pub const PATH_USERINFO: &str = "/api/v2/tenant/sso/userinfo";
/// Query parameter that carries the ticket to userinfo.
pub const QUERY_TICKET: &str = "sso_ticket";
/// `operating_sys_version` when the User-Agent names no known system.
pub const UNKNOWN_OS: &str = "unknown";

/// The exchange's request body: every field the seed marks required, and
/// `agent` when the client sent a User-Agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRequest {
    /// The user's session token (the credential).
    pub session_token: String,
    /// The client's operating system and version, e.g. `windows10.0`.
    pub operating_sys_version: String,
    /// The client's address.
    pub device_ip: String,
    /// Stable per session, reveals nothing about the token.
    pub device_fingerprint: String,
    /// The client's User-Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// The exchange's answer. Both fields optional so a missing one is a bad
/// answer the client names, not a parse error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketResponse {
    /// Seconds the ticket (and so the validation) is good for.
    #[serde(default)]
    pub expire: Option<f64>,
    /// One-time ticket for userinfo (a secret: never logged or forwarded).
    #[serde(default)]
    pub sso_ticket: Option<String>,
}

/// What the emulator's userinfo answers. The client does not use this type:
/// it reads any JSON object through the configured pointers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The subject (`idp.subject_pointer` default `/sub`).
    pub sub: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Preferred language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Personal data: e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Personal data: phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Role codes (`roles_pointer = "/roles"`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permission codes (`permissions_pointer = "/permissions"`).
    #[serde(default)]
    pub permissions: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seed_shapes_round_trip() {
        let answer: TicketResponse =
            serde_json::from_str(r#"{"expire": 300, "sso_ticket": "ssoTicket-fake"}"#).unwrap();
        assert_eq!(answer.expire, Some(300.0));
        assert_eq!(answer.sso_ticket.as_deref(), Some("ssoTicket-fake"));
        let req = TicketRequest {
            session_token: "t".into(),
            operating_sys_version: "windows10.0".into(),
            device_ip: "192.0.2.1".into(),
            device_fingerprint: "f".into(),
            agent: None,
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"session_token": "t", "operating_sys_version": "windows10.0",
                "device_ip": "192.0.2.1", "device_fingerprint": "f"})
        );
    }
}
