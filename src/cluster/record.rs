//! The answer one replica shares with the others: a valid session's identity
//! and until when it is fresh, or "invalid". Stored as JSON inside the
//! sealed value (see `keys`), versioned by the seal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::auth::identity::Identity;
use crate::idp::Verdict;

/// What Redis holds for a session.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// A live session, fresh until `until_ms` (Unix milliseconds).
    Valid {
        /// The provider-neutral identity, rendered again by each replica.
        identity: Box<Identity>,
        /// End of freshness: the IdP's `expires_in` (capped by `cache.max_ttl`) from the answer.
        until_ms: u64,
    },
    /// The IdP said the session is not valid.
    Invalid,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Record {
    /// The record of an IdP answer; `ttl` is how long it stays fresh.
    pub fn of(verdict: &Verdict, ttl: Duration) -> Record {
        match verdict {
            Verdict::Valid { identity, .. } => Record::Valid {
                identity: identity.clone(),
                until_ms: unix_ms(SystemTime::now())
                    .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            },
            Verdict::Invalid { .. } => Record::Invalid,
        }
    }

    /// The answer this record stands for now; `None` once it is no longer fresh.
    pub fn into_verdict(self) -> Option<Verdict> {
        match self {
            Record::Valid { identity, until_ms } => {
                let left = until_ms.checked_sub(unix_ms(SystemTime::now()))?;
                (left > 0).then(|| Verdict::Valid {
                    identity,
                    expires_in: Duration::from_millis(left),
                })
            }
            Record::Invalid => Some(Verdict::Invalid {
                reason: "shared_negative",
            }),
        }
    }

    /// When the record stops being fresh (`None`: a negative record).
    pub fn until(&self) -> Option<SystemTime> {
        match self {
            Record::Valid { until_ms, .. } => {
                UNIX_EPOCH.checked_add(Duration::from_millis(*until_ms))
            }
            Record::Invalid => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_record_round_trips_with_its_remaining_time() {
        let identity = Identity {
            subject: "518".into(),
            roles: vec!["IID-INVESTOR".into()],
            extra: vec![("authority-type".into(), "SELF".into())],
            ..Default::default()
        };
        let verdict = Verdict::Valid {
            identity: Box::new(identity.clone()),
            expires_in: Duration::from_secs(600),
        };
        let json = serde_json::to_vec(&Record::of(&verdict, Duration::from_secs(60))).unwrap();
        let back: Record = serde_json::from_slice(&json).unwrap();
        match back.into_verdict() {
            Some(Verdict::Valid {
                identity: got,
                expires_in,
            }) => {
                assert_eq!(*got, identity);
                assert!(expires_in <= Duration::from_secs(60), "{expires_in:?}");
                assert!(expires_in > Duration::from_secs(50), "{expires_in:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_expired_record_is_no_answer_and_invalid_stays_invalid() {
        let expired = Record::Valid {
            identity: Box::default(),
            until_ms: unix_ms(SystemTime::now()) - 1,
        };
        assert!(expired.into_verdict().is_none());
        assert!(matches!(
            Record::Invalid.into_verdict(),
            Some(Verdict::Invalid { .. })
        ));
    }
}
