//! Session cache (moka): a valid session is fresh for min(expires_in,
//! max_ttl), an invalid one for negative_ttl, and IdP failures are never
//! stored. Concurrent misses on one key share a single IdP call.
//!
//! Freshness is the cache's answer, not moka's eviction: every entry carries
//! `fresh_until`, and only a fresh entry is a hit. Eviction comes
//! `retention` later, so what serving stale needs can outlive freshness
//! without ever being mistaken for a fresh answer.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::Op;
use moka::Expiry;

use crate::auth::credential::Credential;
use crate::auth::headers::Authenticated;
use crate::config::CacheConfig;

/// What the cache remembers about a session.
#[derive(Debug, Clone)]
pub enum Cached {
    /// Live session with its rendered identity.
    Valid(Arc<Authenticated>),
    /// The IdP rejected it (or it was logged out here).
    Invalid,
}

/// A freshly resolved answer, before the cache decides its lifetime.
#[derive(Debug)]
pub enum Fresh {
    /// Live session and the time the IdP says it has left.
    Valid(Arc<Authenticated>, Duration),
    /// Rejected session.
    Invalid,
}

/// How a lookup was served, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Served from the cache.
    Hit,
    /// This request called the IdP.
    Miss,
    /// Waited for another request's IdP call on the same key.
    Coalesced,
}

impl Lookup {
    /// Stable log field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Coalesced => "coalesced",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    value: Cached,
    /// Until then the entry answers for the session without asking the IdP.
    fresh_until: Instant,
}

impl Entry {
    fn new(value: Cached, ttl: Duration) -> Self {
        let now = Instant::now();
        Self {
            value,
            fresh_until: now.checked_add(ttl).unwrap_or(now),
        }
    }
}

/// Each entry is evicted `retention` after its own freshness ends, so expiry
/// follows the IdP's `expires_in`.
struct EvictAfterFresh {
    retention: Duration,
}

impl EvictAfterFresh {
    fn life(&self, entry: &Entry, now: Instant) -> Duration {
        entry.fresh_until.saturating_duration_since(now) + self.retention
    }
}

impl Expiry<Credential, Entry> for EvictAfterFresh {
    fn expire_after_create(&self, _: &Credential, entry: &Entry, now: Instant) -> Option<Duration> {
        Some(self.life(entry, now))
    }

    fn expire_after_update(
        &self,
        _: &Credential,
        entry: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        // A logout tombstone replaces a valid entry and must get its own lifetime.
        Some(self.life(entry, now))
    }
}

/// The session cache.
#[derive(Clone)]
pub struct SessionCache {
    inner: Cache<Credential, Entry>,
    max_ttl: Duration,
    negative_ttl: Duration,
}

impl SessionCache {
    /// Builds a cache bounded by `cfg.max_entries`; entries go when they stop being fresh.
    pub fn new(cfg: &CacheConfig) -> Self {
        Self::with_retention(cfg, Duration::ZERO)
    }

    /// Like [`SessionCache::new`], but entries stay `retention` past their
    /// freshness (never served as hits then), for a later stale-if-error decision.
    pub fn with_retention(cfg: &CacheConfig, retention: Duration) -> Self {
        Self {
            inner: Cache::builder()
                .max_capacity(cfg.max_entries)
                .expire_after(EvictAfterFresh { retention })
                .build(),
            max_ttl: cfg.max_ttl,
            negative_ttl: cfg.negative_ttl,
        }
    }

    /// Returns the cached answer for `key`, or runs `resolve` (once for all
    /// concurrent callers) and caches what it yields. Errors are shared with
    /// the waiting callers but not stored.
    pub async fn get_or_resolve<F, E>(
        &self,
        key: &Credential,
        resolve: F,
    ) -> Result<(Cached, Lookup), Arc<E>>
    where
        F: Future<Output = Result<Fresh, E>>,
        E: Send + Sync + 'static,
    {
        if let Some(entry) = self.inner.get(key).await {
            let now = Instant::now();
            if entry.fresh_until > now {
                return Ok((entry.value, Lookup::Hit));
            }
            // Kept past its freshness: no longer an answer. Drop it so the
            // coalesced resolve below runs, unless a concurrent request has
            // already put a fresh one in its place.
            self.inner
                .entry_by_ref(key)
                .and_compute_with(|current| async move {
                    match current {
                        Some(e) if e.value().fresh_until <= now => Op::Remove,
                        _ => Op::Nop,
                    }
                })
                .await;
        }
        let called = AtomicBool::new(false);
        let init = async {
            called.store(true, Ordering::Relaxed);
            resolve.await.map(|fresh| match fresh {
                Fresh::Valid(auth, expires_in) => {
                    Entry::new(Cached::Valid(auth), expires_in.min(self.max_ttl))
                }
                Fresh::Invalid => Entry::new(Cached::Invalid, self.negative_ttl),
            })
        };
        let entry = self.inner.try_get_with_by_ref(key, init).await?;
        let how = if called.load(Ordering::Relaxed) {
            Lookup::Miss
        } else {
            Lookup::Coalesced
        };
        Ok((entry.value, how))
    }

    /// Marks `key` invalid for at least as long as any valid entry could have
    /// lived, so a logged-out cookie is refused at once.
    pub async fn revoke(&self, key: &Credential) {
        let entry = Entry::new(Cached::Invalid, self.max_ttl.max(self.negative_ttl));
        self.inner.insert(key.clone(), entry).await;
    }

    /// Approximate number of live entries.
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::headers::{Carries, HeaderPlan};
    use crate::auth::identity::Identity;

    fn cache(max_ttl: u64, negative_ttl: u64) -> SessionCache {
        SessionCache::new(&CacheConfig {
            max_entries: 100,
            max_ttl: Duration::from_secs(max_ttl),
            negative_ttl: Duration::from_secs(negative_ttl),
        })
    }

    fn valid(secs: u64) -> Fresh {
        let plan = HeaderPlan::new(
            "x-iid-",
            false,
            Carries {
                roles: true,
                permissions: true,
            },
        )
        .unwrap();
        let auth = plan
            .render(&Identity {
                session_id: Some("s".into()),
                subject: "1".into(),
                ..Default::default()
            })
            .unwrap();
        Fresh::Valid(Arc::new(auth), Duration::from_secs(secs))
    }

    #[tokio::test]
    async fn second_lookup_is_a_hit_and_errors_are_not_cached() {
        let c = cache(60, 60);
        let k = Credential::new("a", "");
        let (_, how) = c
            .get_or_resolve::<_, &str>(&k, async { Ok(valid(60)) })
            .await
            .unwrap();
        assert_eq!(how, Lookup::Miss);
        let (v, how) = c
            .get_or_resolve::<_, &str>(&k, async { unreachable!("must not resolve") })
            .await
            .unwrap();
        assert_eq!(how, Lookup::Hit);
        assert!(matches!(v, Cached::Valid(_)));

        let e = Credential::new("b", "");
        assert!(c
            .get_or_resolve::<_, &str>(&e, async { Err("idp timed out") })
            .await
            .is_err());
        let (_, how) = c
            .get_or_resolve::<_, &str>(&e, async { Ok(Fresh::Invalid) })
            .await
            .unwrap();
        assert_eq!(how, Lookup::Miss, "the error must not have been cached");
    }

    #[tokio::test]
    async fn zero_expiry_is_not_served_again() {
        let c = cache(60, 60);
        let k = Credential::new("z", "");
        c.get_or_resolve::<_, &str>(&k, async { Ok(valid(0)) })
            .await
            .unwrap();
        let (_, how) = c
            .get_or_resolve::<_, &str>(&k, async { Ok(valid(0)) })
            .await
            .unwrap();
        assert_eq!(how, Lookup::Miss);
    }

    #[tokio::test]
    async fn revoke_replaces_a_valid_entry() {
        let c = cache(60, 1);
        let k = Credential::new("r", "t");
        c.get_or_resolve::<_, &str>(&k, async { Ok(valid(60)) })
            .await
            .unwrap();
        c.revoke(&k).await;
        let (v, how) = c
            .get_or_resolve::<_, &str>(&k, async { Ok(valid(60)) })
            .await
            .unwrap();
        assert_eq!(how, Lookup::Hit);
        assert!(matches!(v, Cached::Invalid));
    }

    #[tokio::test]
    async fn the_token_is_part_of_the_key() {
        let c = cache(60, 60);
        c.get_or_resolve::<_, &str>(&Credential::new("s", "right"), async { Ok(valid(60)) })
            .await
            .unwrap();
        let (v, how) = c
            .get_or_resolve::<_, &str>(&Credential::new("s", "wrong"), async { Ok(Fresh::Invalid) })
            .await
            .unwrap();
        assert_eq!(how, Lookup::Miss);
        assert!(matches!(v, Cached::Invalid));
    }

    #[tokio::test]
    async fn a_retained_entry_past_its_freshness_is_not_a_hit() {
        let cfg = CacheConfig {
            max_entries: 100,
            max_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
        };
        // Retained for a minute after a zero-length freshness: moka still
        // holds it, but the cache must ask the IdP again.
        let c = SessionCache::with_retention(&cfg, Duration::from_secs(60));
        let k = Credential::new("kept", "");
        c.get_or_resolve::<_, &str>(&k, async { Ok(valid(0)) })
            .await
            .unwrap();
        c.inner.run_pending_tasks().await;
        assert_eq!(c.entry_count(), 1, "retained past freshness");
        let (_, how) = c
            .get_or_resolve::<_, &str>(&k, async { Ok(valid(60)) })
            .await
            .unwrap();
        assert_eq!(how, Lookup::Miss);
        let (_, how) = c
            .get_or_resolve::<_, &str>(&k, async { unreachable!("fresh now") })
            .await
            .unwrap();
        assert_eq!(how, Lookup::Hit);
    }
}
