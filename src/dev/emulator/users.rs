//! The users file: who the emulator can log in, and what it says about them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::idp::iid::wire;

/// The users shipped with the binary, so `emulator` and `demo` work without files.
const DEFAULT_USERS_JSON: &str = include_str!("../../../config/users.json");

/// One entry of the users JSON file: everything a child session reports about its user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// The acting profile, reported as the single `selfProfile` entry.
    pub profile: wire::Profile,
    /// Calling system reported in the session (the seed says `D360`).
    #[serde(default = "default_external_system_id")]
    pub external_system_id: String,
    /// `SELF` unless the session acts under a delegation.
    #[serde(default = "default_authority_type")]
    pub authority_type: String,
    /// Reported as `iidParams.locale`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Permission codes, in the order the IdP reports them.
    #[serde(default)]
    pub user_permissions: Vec<String>,
    /// Roles with their organizations.
    #[serde(default)]
    pub user_roles: Vec<wire::Role>,
    /// Delegations, passed through verbatim because the seed does not fix their shape.
    #[serde(default)]
    pub delegations: Vec<Value>,
}

fn default_external_system_id() -> String {
    "D360".to_owned()
}

fn default_authority_type() -> String {
    "SELF".to_owned()
}

fn default_locale() -> String {
    "en".to_owned()
}

impl User {
    /// The profile id as text, so `518` and `"518"` name the same user.
    pub(crate) fn key(&self) -> Option<String> {
        self.profile.profile_id.as_ref().and_then(profile_key)
    }
}

/// Normalizes a profile id given as a JSON number or string.
pub(crate) fn profile_key(id: &Value) -> Option<String> {
    match id {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// Why a users file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The file could not be read.
    #[error("cannot read users file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The file is not a JSON array of users.
    #[error("users file {} is not valid: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why parsing failed.
        source: serde_json::Error,
    },
    /// The users parse but cannot be served as given.
    #[error("users file {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which user is wrong and how.
        reason: String,
    },
}

/// Loads and checks a users file.
pub fn load_users(path: &Path) -> Result<Vec<User>, EmulatorError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmulatorError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_users(&text).map_err(|err| match err {
        ParseError::Json(source) => EmulatorError::Parse {
            path: path.to_owned(),
            source,
        },
        ParseError::Invalid(reason) => EmulatorError::Invalid {
            path: path.to_owned(),
            reason,
        },
    })
}

/// The users compiled into the binary from `config/users.json`.
pub fn default_users() -> Vec<User> {
    match parse_users(DEFAULT_USERS_JSON) {
        Ok(users) => users,
        Err(err) => {
            // A broken built-in file must not take the gateway down; the unit
            // test below is what keeps it from ever shipping broken.
            tracing::error!(error = %err, "built-in config/users.json is invalid");
            Vec::new()
        }
    }
}

enum ParseError {
    Json(serde_json::Error),
    Invalid(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(err) => err.fmt(f),
            Self::Invalid(reason) => f.write_str(reason),
        }
    }
}

fn parse_users(text: &str) -> Result<Vec<User>, ParseError> {
    let users: Vec<User> = serde_json::from_str(text).map_err(ParseError::Json)?;
    // Every problem is reported at once so an operator fixes the file in one go.
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (i, user) in users.iter().enumerate() {
        match user.key() {
            None => problems.push(format!("user #{i} has no profile.profileId")),
            Some(key) => {
                if !seen.insert(key.clone()) {
                    problems.push(format!("user #{i}: duplicate profileId {key}"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(users)
    } else {
        Err(ParseError::Invalid(problems.join("; ")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn builtin_users_parse_and_hold_the_four_users() {
        let users = parse_users(DEFAULT_USERS_JSON).unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<String> = users.iter().filter_map(User::key).collect();
        assert_eq!(keys, ["518", "1001", "7001", "9001"]);
        assert_eq!(default_users().len(), 4);

        let seed = &users[0];
        assert_eq!(seed.profile.name_ar.as_deref(), Some("ليلى حسن التجربة"));
        assert_eq!(seed.user_permissions.len(), 36);
        assert_eq!(seed.user_roles[0].code.as_deref(), Some("IID-INVESTOR"));

        assert_eq!(users[1].locale, "ar");
        let est = &users[2];
        assert_eq!(est.profile.kind.as_deref(), Some("ESTABLISHMENT"));
        assert!(est.user_permissions.iter().any(|p| p == "P2001"));
        assert!(est.user_permissions.iter().any(|p| p == "P2002"));
        assert_eq!(
            est.user_roles[0].organization_ids,
            Some(vec![Value::from(7), Value::from(9)])
        );
        assert!(users[3].user_permissions.is_empty() && users[3].user_roles.is_empty());
    }

    #[test]
    fn load_users_names_the_file_and_every_problem() {
        let dir = std::env::temp_dir().join(format!(
            "sessiongate-users-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.json");

        let missing = load_users(&dir.join("absent.json")).unwrap_err();
        assert!(missing.to_string().contains("absent.json"), "{missing}");

        std::fs::write(&path, "[{\"profile\":{}},{\"profile\":{\"profileId\":1}},{\"profile\":{\"profileId\":\"1\"}}]").unwrap();
        let invalid = load_users(&path).unwrap_err().to_string();
        assert!(invalid.contains("users.json"), "{invalid}");
        assert!(invalid.contains("#0 has no profile.profileId"), "{invalid}");
        assert!(invalid.contains("duplicate profileId 1"), "{invalid}");

        std::fs::write(
            &path,
            "[{\"profile\":{\"profileId\":1},\"permissions\":[]}]",
        )
        .unwrap();
        let typo = load_users(&path).unwrap_err();
        assert!(matches!(typo, EmulatorError::Parse { .. }), "{typo}");

        std::fs::write(&path, "[{\"profile\":{\"profileId\":1}}]").unwrap();
        let users = load_users(&path).unwrap();
        assert_eq!(users[0].external_system_id, "D360");
        assert_eq!(users[0].locale, "en");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
