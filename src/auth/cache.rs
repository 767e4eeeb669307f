//! Session cache (moka): a valid session is fresh for min(expires_in,
//! max_ttl), an invalid one for negative_ttl, and IdP failures are never
//! served as answers. Concurrent lookups of one key share a single IdP call.
//!
//! Freshness is the cache's answer, not moka's eviction: every entry carries
//! `fresh_until`, and only a fresh entry is a hit. Eviction comes
//! `retention` later (the longest route `stale_if_error`), so the last valid
//! answer can outlive its freshness for a stale-if-error decision without
//! ever being mistaken for a fresh one.
//!
//! Three rules keep stale serving safe, all enforced here:
//! - only a *valid* answer is ever offered as stale; an invalid answer, a
//!   logout or any other [`SessionCache::revoke`] replaces it, so nothing of
//!   the session is left to serve;
//! - a failed renewal keeps the previous answer as it was (same freshness,
//!   same eviction), so the grace runs from the last valid answer, not from
//!   the last attempt;
//! - a revocation waits for an IdP call in flight on the same key and writes
//!   its tombstone after it, so a late answer cannot resurrect the session.
//!
//! Refresh-ahead: a hit inside the last `cache.refresh_ahead` of an entry's
//! life hands the caller one [`RefreshTicket`] per entry (an atomic flag in
//! the entry), and [`SessionCache::refresh`] renews the entry in place.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use crate::auth::credential::{Credential, PreHashed};
use crate::auth::headers::Authenticated;
use crate::config::{CacheConfig, RefreshAhead};

mod front;

use front::Front;

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
    /// The IdP failed and the route admitted the last valid answer.
    Stale,
}

impl Lookup {
    /// Stable log field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Coalesced => "coalesced",
            Lookup::Stale => "stale",
        }
    }
}

/// One answer about a session. Shared behind an `Arc`, so the flags below are
/// the same for every request that sees this answer.
#[derive(Debug)]
struct Entry {
    value: Cached,
    /// Until then the entry answers for the session without asking the IdP.
    fresh_until: Instant,
    /// From then on (while fresh) a hit asks for one background renewal.
    refresh_from: Instant,
    /// A logout or revocation tombstone: replaced only by a later IdP answer
    /// after it has expired, never by a call that was already in flight.
    revoked: bool,
    /// Set by the one hit that takes the [`RefreshTicket`].
    refreshing: AtomicBool,
    /// Set by the first stale serve, so an outage logs once per session.
    stale_warned: AtomicBool,
    /// Set once a renewal replaced this entry in moka, so no thread's
    /// front map serves it any more.
    superseded: AtomicBool,
}

impl Entry {
    fn new(value: Cached, ttl: Duration, refresh_window: Duration) -> Self {
        let now = Instant::now();
        let fresh_until = now.checked_add(ttl).unwrap_or(now);
        Self {
            value,
            fresh_until,
            refresh_from: fresh_until
                .checked_sub(refresh_window)
                .unwrap_or(fresh_until),
            revoked: false,
            refreshing: AtomicBool::new(false),
            stale_warned: AtomicBool::new(false),
            superseded: AtomicBool::new(false),
        }
    }

    fn supersede(&self) {
        self.superseded.store(true, Ordering::SeqCst);
    }

    fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }

    fn is_fresh(&self, now: Instant) -> bool {
        self.fresh_until > now
    }

    /// True for exactly one caller once the refresh window has begun: a
    /// timestamp compare, and an atomic swap only inside the window.
    fn take_refresh(&self, now: Instant) -> bool {
        now >= self.refresh_from
            && !self.refreshing.load(Ordering::Relaxed)
            && !self.refreshing.swap(true, Ordering::AcqRel)
    }
}

/// What moka stores for a key: the latest answer, or the failure of the
/// last attempt to renew it together with the answer before it.
#[derive(Debug)]
enum Slot<E> {
    Answer(Arc<Entry>),
    Failed {
        last: Option<Arc<Entry>>,
        error: Arc<E>,
    },
}

impl<E> Clone for Slot<E> {
    fn clone(&self) -> Self {
        match self {
            Slot::Answer(e) => Slot::Answer(Arc::clone(e)),
            Slot::Failed { last, error } => Slot::Failed {
                last: last.clone(),
                error: Arc::clone(error),
            },
        }
    }
}

impl<E> Slot<E> {
    /// The answer this slot stands for, if any.
    fn latest(&self) -> Option<&Arc<Entry>> {
        match self {
            Slot::Answer(e) => Some(e),
            Slot::Failed { last, .. } => last.as_ref(),
        }
    }

    fn fresh(&self, now: Instant) -> Option<&Arc<Entry>> {
        self.latest().filter(|e| e.is_fresh(now))
    }
}

/// Each slot is evicted `retention` after its answer's freshness ends, so
/// expiry follows the IdP's `expires_in`; a failure with no answer behind it
/// is not kept at all.
struct EvictAfterFresh {
    retention: Duration,
}

impl EvictAfterFresh {
    fn life<E>(&self, slot: &Slot<E>, now: Instant) -> Duration {
        match slot.latest() {
            Some(e) => e.fresh_until.saturating_duration_since(now) + self.retention,
            None => Duration::ZERO,
        }
    }
}

impl<E> Expiry<Credential, Slot<E>> for EvictAfterFresh {
    fn expire_after_create(
        &self,
        _: &Credential,
        slot: &Slot<E>,
        now: Instant,
    ) -> Option<Duration> {
        Some(self.life(slot, now))
    }

    fn expire_after_update(
        &self,
        _: &Credential,
        slot: &Slot<E>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        // A tombstone or a new answer gets its own lifetime; a failed renewal
        // keeps the old answer's, so the grace is counted from the last valid answer.
        Some(self.life(slot, now))
    }
}

/// An answer for the request.
#[derive(Debug)]
pub struct Resolved {
    /// What the cache or the IdP says about the session.
    pub value: Cached,
    /// How it was found.
    pub lookup: Lookup,
    /// Present on the one hit that should renew the entry in the background.
    pub refresh: Option<RefreshTicket>,
}

/// No answer: the IdP call failed (and was not stored as an answer).
#[derive(Debug)]
pub struct Failed<E> {
    /// The failure, shared with every request that waited for the same call.
    pub error: Arc<E>,
    /// The session's last valid answer, while the cache still holds it.
    pub stale: Option<Stale>,
}

/// The last valid answer of a session whose renewal failed.
#[derive(Debug)]
pub struct Stale {
    auth: Arc<Authenticated>,
    entry: Arc<Entry>,
}

impl Stale {
    /// The identity of that answer.
    pub fn auth(&self) -> &Arc<Authenticated> {
        &self.auth
    }

    /// True while the answer expired less than `grace` ago (at `now`).
    pub fn within(&self, grace: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.entry.fresh_until) < grace
    }

    /// True for the first stale serve of this answer only: one warn per
    /// session per outage, however many requests the outage sees.
    pub fn first_serve(&self) -> bool {
        !self.entry.stale_warned.swap(true, Ordering::Relaxed)
    }
}

/// Permission to renew one entry in the background (see [`SessionCache::refresh`]).
#[derive(Debug)]
pub struct RefreshTicket(Arc<Entry>);

impl RefreshTicket {
    /// When the entry being renewed stops being fresh.
    pub fn fresh_until(&self) -> Instant {
        self.0.fresh_until
    }
}

/// How a background renewal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// The IdP still says valid: the entry is renewed.
    Valid,
    /// The IdP says invalid: the entry is replaced, the next request is refused.
    Invalid,
    /// The IdP call failed: the entry stays as it was until it expires.
    Failed,
    /// Another answer (a logout, a newer call) replaced the entry first.
    Superseded,
}

impl Refreshed {
    /// Stable metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refreshed::Valid => "valid",
            Refreshed::Invalid => "invalid",
            Refreshed::Failed => "failed",
            Refreshed::Superseded => "superseded",
        }
    }

    const ALL: [Self; 4] = [
        Refreshed::Valid,
        Refreshed::Invalid,
        Refreshed::Failed,
        Refreshed::Superseded,
    ];
}

/// The session cache; `E` is the IdP failure shared by coalesced callers.
pub struct SessionCache<E> {
    inner: Cache<Credential, Slot<E>, PreHashed>,
    /// Each worker thread's copies of the answers it served, for hits.
    front: Front,
    max_ttl: Duration,
    negative_ttl: Duration,
    refresh_ahead: RefreshAhead,
}

impl<E> Clone for SessionCache<E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            front: self.front.clone(),
            max_ttl: self.max_ttl,
            negative_ttl: self.negative_ttl,
            refresh_ahead: self.refresh_ahead,
        }
    }
}

impl<E: Send + Sync + 'static> SessionCache<E> {
    /// Builds a cache bounded by `cfg.max_entries`; entries go when they stop being fresh.
    pub fn new(cfg: &CacheConfig) -> Self {
        Self::with_retention(cfg, Duration::ZERO)
    }

    /// Like [`SessionCache::new`], but entries stay `retention` past their
    /// freshness (never served as hits then), for a stale-if-error decision.
    pub fn with_retention(cfg: &CacheConfig, retention: Duration) -> Self {
        Self {
            inner: Cache::builder()
                .max_capacity(cfg.max_entries)
                .expire_after(EvictAfterFresh { retention })
                .build_with_hasher(PreHashed),
            front: Front::new(cfg.max_entries),
            max_ttl: cfg.max_ttl,
            negative_ttl: cfg.negative_ttl,
            refresh_ahead: cfg.refresh_ahead,
        }
    }

    fn entry_for(&self, fresh: Fresh) -> Entry {
        match fresh {
            Fresh::Valid(auth, expires_in) => {
                let ttl = expires_in.min(self.max_ttl);
                Entry::new(Cached::Valid(auth), ttl, self.refresh_ahead.window(ttl))
            }
            Fresh::Invalid => Entry::new(Cached::Invalid, self.negative_ttl, Duration::ZERO),
        }
    }

    /// Returns the fresh answer for `key`, or runs `resolve` (once for all
    /// concurrent callers) and keeps what it yields. A failure is shared with
    /// the waiting callers, never served as an answer, and comes with the
    /// session's last valid answer if the cache still holds one.
    ///
    /// `resolve` builds the call only on a miss, and the miss runs in a
    /// future of its own on the heap: a hit's future stays a few hundred
    /// bytes instead of carrying the IdP call's, which every request would
    /// otherwise copy.
    pub async fn get_or_resolve<R, F>(
        &self,
        key: &Credential,
        resolve: R,
    ) -> Result<Resolved, Failed<E>>
    where
        R: FnOnce() -> F,
        F: Future<Output = Result<Fresh, E>>,
    {
        // The hot path: one moka read, a timestamp compare, no allocation.
        if let Some(hit) = self
            .inner
            .get(key)
            .await
            .and_then(|slot| Self::served(&slot))
        {
            return Ok(hit);
        }
        Box::pin(self.resolve_miss(key, resolve())).await
    }

    /// The fresh answer for `key` if the cache has it ready, without
    /// waiting: a cache hit then decides a request with no `await` on the
    /// way, so no async state is built or moved for it. `None` is a miss, an
    /// entry past its freshness, or moka busy with its housekeeping; the
    /// caller goes on to [`SessionCache::get_or_resolve`].
    pub fn hit(&self, key: &Credential) -> Option<Resolved> {
        let now = Instant::now();
        if let Some(hit) = self.front.with(key, now, |entry| Self::serve(entry, now)) {
            return Some(hit);
        }
        let generation = self.front.generation();
        // moka's lookup is async only because it may run housekeeping; it
        // is cancel-safe by design (an interrupted operation is retried by
        // the next one), so one poll that does not finish is simply dropped.
        let lookup = std::pin::pin!(self.inner.get(key));
        let mut cx = Context::from_waker(Waker::noop());
        match lookup.poll(&mut cx) {
            Poll::Ready(slot) => {
                let slot = slot?;
                let entry = slot.fresh(now)?;
                self.front.keep(key, entry, generation, now);
                Some(Self::serve(entry, now))
            }
            Poll::Pending => None,
        }
    }

    /// A hit, if `slot` holds a fresh answer.
    fn served(slot: &Slot<E>) -> Option<Resolved> {
        let now = Instant::now();
        Some(Self::serve(slot.fresh(now)?, now))
    }

    /// The hit on a fresh `entry`, with the refresh ticket for the one hit
    /// that should renew it.
    fn serve(entry: &Arc<Entry>, now: Instant) -> Resolved {
        let refresh = entry
            .take_refresh(now)
            .then(|| RefreshTicket(Arc::clone(entry)));
        Resolved {
            value: entry.value.clone(),
            lookup: Lookup::Hit,
            refresh,
        }
    }

    /// [`SessionCache::get_or_resolve`] past a miss: one call for all
    /// concurrent callers.
    async fn resolve_miss<F>(&self, key: &Credential, resolve: F) -> Result<Resolved, Failed<E>>
    where
        F: Future<Output = Result<Fresh, E>>,
    {
        let called = AtomicBool::new(false);
        let init = async {
            called.store(true, Ordering::Relaxed);
            // What the key held when this call began: carried past a failure.
            let last = self.inner.get(key).await.and_then(|s| s.latest().cloned());
            match resolve.await {
                Ok(fresh) => Slot::Answer(Arc::new(self.entry_for(fresh))),
                Err(error) => Slot::Failed {
                    last,
                    error: Arc::new(error),
                },
            }
        };
        // Replaces only what is no longer fresh: a concurrent caller that
        // already renewed the key wins, and callers arriving meanwhile wait
        // for this one call.
        let slot = self
            .inner
            .entry_by_ref(key)
            .or_insert_with_if(init, |s| s.fresh(Instant::now()).is_none())
            .await
            .into_value();
        let lookup = if called.load(Ordering::Relaxed) {
            Lookup::Miss
        } else {
            Lookup::Coalesced
        };
        match slot {
            Slot::Answer(entry) => Ok(Resolved {
                value: entry.value.clone(),
                lookup,
                refresh: None,
            }),
            // A tombstone written while the call was failing still answers.
            Slot::Failed {
                last: Some(entry), ..
            } if entry.is_fresh(Instant::now()) => Ok(Resolved {
                value: entry.value.clone(),
                lookup,
                refresh: None,
            }),
            Slot::Failed { last, error } => Err(Failed {
                error,
                stale: last.and_then(|entry| match &entry.value {
                    Cached::Valid(auth) => Some(Stale {
                        auth: Arc::clone(auth),
                        entry,
                    }),
                    Cached::Invalid => None,
                }),
            }),
        }
    }

    /// Renews the entry `ticket` was taken from with `resolve`, unless
    /// something else replaced it first. Requests meanwhile are served from
    /// the entry (or, once it expires, wait for this call).
    pub async fn refresh<F>(&self, key: &Credential, ticket: RefreshTicket, resolve: F) -> Refreshed
    where
        F: Future<Output = Result<Fresh, E>>,
    {
        let from = ticket.0;
        let outcome = AtomicU8::new(Refreshed::Superseded as u8);
        let set = |r: Refreshed| outcome.store(r as u8, Ordering::Relaxed);
        let init = async {
            match resolve.await {
                Ok(fresh) => {
                    set(match fresh {
                        Fresh::Valid(..) => Refreshed::Valid,
                        Fresh::Invalid => Refreshed::Invalid,
                    });
                    // Written over `from` next (this runs only if `from` is
                    // the key's answer, or the key has none): the front maps
                    // must stop serving it.
                    from.supersede();
                    Slot::Answer(Arc::new(self.entry_for(fresh)))
                }
                Err(error) => {
                    set(Refreshed::Failed);
                    if from.is_fresh(Instant::now()) {
                        Slot::Answer(Arc::clone(&from))
                    } else {
                        // Expired while the call ran: requests that waited for
                        // it must see a failure, never the expired answer.
                        Slot::Failed {
                            last: Some(Arc::clone(&from)),
                            error: Arc::new(error),
                        }
                    }
                }
            }
        };
        self.inner
            .entry_by_ref(key)
            .or_insert_with_if(init, |s| s.latest().is_some_and(|e| Arc::ptr_eq(e, &from)))
            .await;
        Refreshed::ALL[usize::from(outcome.load(Ordering::Relaxed))]
    }

    /// Marks `key` invalid for at least as long as any valid entry could have
    /// lived, so a logged-out cookie is refused at once and its last answer
    /// can never be served stale. The one revocation entry point: logout here,
    /// and any other source of revocations, call it.
    ///
    /// Returns whether a live answer (not an earlier tombstone) was dropped.
    pub async fn revoke(&self, key: &Credential) -> bool {
        let had_answer = self
            .inner
            .get(key)
            .await
            .is_some_and(|s| s.latest().is_some_and(|e| !e.revoked));
        let mut tomb = Entry::new(
            Cached::Invalid,
            self.max_ttl.max(self.negative_ttl),
            Duration::ZERO,
        );
        tomb.revoked = true;
        let tomb = Arc::new(tomb);
        // Effective at once for every later lookup...
        self.inner
            .insert(key.clone(), Slot::Answer(Arc::clone(&tomb)))
            .await;
        self.front.invalidate();
        // ...but an IdP call in flight on this key ends by writing its answer
        // over it. Join that call, then write the tombstone again; bounded,
        // since each round either writes the tombstone or waits out one call.
        for _ in 0..4 {
            let slot = self
                .inner
                .entry_by_ref(key)
                .or_insert_with_if(async { Slot::Answer(Arc::clone(&tomb)) }, |_| true)
                .await
                .into_value();
            if slot.latest().is_some_and(|e| e.revoked) {
                break;
            }
        }
        // An answer an in-flight call wrote meanwhile may have reached a
        // front map too.
        self.front.invalidate();
        had_answer
    }

    /// Revokes every cached credential `matches` picks (an IID session id
    /// revoked with all its tokens); returns how many live answers went.
    /// Walks the whole cache: for rare, operator-driven revocations only.
    pub async fn revoke_where(&self, matches: impl Fn(&Credential) -> bool) -> usize {
        let keys: Vec<Credential> = self
            .inner
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(k, _)| Credential::clone(&k))
            .collect();
        let mut dropped = 0;
        for key in keys {
            if self.revoke(&key).await {
                dropped += 1;
            }
        }
        dropped
    }

    /// Forgets every answer: for when revocations may have been missed and
    /// no cached answer can be trusted any more. Later lookups ask again.
    pub fn drop_all(&self) {
        self.inner.invalidate_all();
        self.front.invalidate();
    }

    /// Approximate number of live entries.
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

/// Bytes the cache's own bookkeeping adds per session beyond moka's node and
/// the key: the stored slot plus the shared entry it points to.
pub const ENTRY_BYTES: usize = std::mem::size_of::<Slot<()>>()
    + std::mem::size_of::<Entry>()
    + 2 * std::mem::size_of::<usize>();

// The README's memory figure (80 bytes) stays true: a bigger entry must update it.
const _: () = assert!(ENTRY_BYTES <= 80);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::headers::{Carries, HeaderPlan};
    use crate::auth::identity::Identity;

    type TestCache = SessionCache<&'static str>;

    fn config(max_ttl: Duration, refresh_ahead: RefreshAhead) -> CacheConfig {
        CacheConfig {
            max_entries: 100,
            max_ttl,
            negative_ttl: Duration::from_secs(60),
            refresh_ahead,
        }
    }

    fn cache(max_ttl: u64, negative_ttl: u64) -> TestCache {
        SessionCache::new(&CacheConfig {
            negative_ttl: Duration::from_secs(negative_ttl),
            ..config(Duration::from_secs(max_ttl), RefreshAhead::Off)
        })
    }

    fn valid_for(ttl: Duration) -> Fresh {
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
        Fresh::Valid(Arc::new(auth), ttl)
    }

    fn valid(secs: u64) -> Fresh {
        valid_for(Duration::from_secs(secs))
    }

    async fn lookup(c: &TestCache, k: &Credential, answer: Result<Fresh, &'static str>) -> Lookup {
        c.get_or_resolve(k, || async { answer })
            .await
            .unwrap()
            .lookup
    }

    /// A lookup that must be served from the cache (it panics if it asks).
    async fn cached(c: &TestCache, k: &Credential) -> Resolved {
        c.get_or_resolve(k, || async { unreachable!() })
            .await
            .unwrap()
    }

    /// A hit is served from the thread's own copy, and that copy goes with
    /// the answer it copied: a renewal, a revocation from another thread
    /// and `drop_all` each end it.
    #[tokio::test]
    async fn a_hits_copy_goes_with_the_answer_it_copied() {
        let hour = Duration::from_secs(3600);
        let c: TestCache = SessionCache::new(&config(hour, RefreshAhead::Before(hour)));
        let is_valid = |r: Option<Resolved>| matches!(r.map(|r| r.value), Some(Cached::Valid(_)));

        // Renewed as invalid: the next hit says so.
        let k = Credential::new("renewed", "");
        lookup(&c, &k, Ok(valid(3600))).await;
        let ticket = c
            .hit(&k)
            .and_then(|r| r.refresh)
            .expect("inside the window");
        assert_eq!(c.front.local_len(), 1, "the hit kept a copy");
        let again = c.hit(&k).expect("the copy");
        assert!(again.refresh.is_none(), "one ticket per entry, copy or not");
        assert_eq!(
            c.refresh(&k, ticket, async { Ok(Fresh::Invalid) }).await,
            Refreshed::Invalid
        );
        assert!(matches!(c.hit(&k).map(|r| r.value), Some(Cached::Invalid)));

        // Revoked from another thread: this thread's copy goes too.
        let k = Credential::new("revoked", "");
        lookup(&c, &k, Ok(valid(3600))).await;
        assert!(is_valid(c.hit(&k)));
        assert!(is_valid(c.hit(&k)), "served from the copy");
        let (other, key) = (c.clone(), k.clone());
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(other.revoke(&key))
        })
        .await
        .unwrap();
        assert!(matches!(c.hit(&k).map(|r| r.value), Some(Cached::Invalid)));

        // Everything dropped: no copy answers.
        let k = Credential::new("dropped", "");
        lookup(&c, &k, Ok(valid(3600))).await;
        assert!(is_valid(c.hit(&k)));
        c.drop_all();
        assert!(c.hit(&k).is_none(), "asks moka, which has nothing");
    }

    #[tokio::test]
    async fn second_lookup_is_a_hit_and_errors_are_not_cached() {
        let c = cache(60, 60);
        let k = Credential::new("a", "");
        assert_eq!(lookup(&c, &k, Ok(valid(60))).await, Lookup::Miss);
        let r = c
            .get_or_resolve(&k, || async { unreachable!("must not resolve") })
            .await
            .unwrap();
        assert_eq!(r.lookup, Lookup::Hit);
        assert!(matches!(r.value, Cached::Valid(_)));

        let e = Credential::new("b", "");
        let failed = c
            .get_or_resolve(&e, || async { Err("idp timed out") })
            .await
            .unwrap_err();
        assert_eq!(*failed.error, "idp timed out");
        assert!(failed.stale.is_none(), "never validated: nothing to serve");
        assert_eq!(
            lookup(&c, &e, Ok(Fresh::Invalid)).await,
            Lookup::Miss,
            "the error must not have been cached"
        );
    }

    /// The request path decides a cache hit with `hit` alone: it must agree
    /// with `get_or_resolve` on what is fresh, and hand out the refresh
    /// ticket the same way.
    #[tokio::test]
    async fn hit_serves_only_a_fresh_answer_and_one_refresh_ticket() {
        let c = retaining();
        let k = Credential::new("now", "");
        assert!(c.hit(&k).is_none(), "nothing cached yet");
        lookup(&c, &k, Ok(valid(60))).await;
        let r = c.hit(&k).expect("a fresh answer");
        assert_eq!(r.lookup, Lookup::Hit);
        assert!(matches!(r.value, Cached::Valid(_)));
        assert!(r.refresh.is_none(), "refresh-ahead is off");
        past_freshness().await;
        assert!(c.hit(&k).is_none(), "retained, but no longer fresh");
        c.revoke(&k).await;
        assert!(
            matches!(c.hit(&k).map(|r| r.value), Some(Cached::Invalid)),
            "a revoked session is answered as invalid"
        );

        let c: TestCache = SessionCache::new(&config(
            Duration::from_secs(60),
            RefreshAhead::Before(Duration::from_secs(60)),
        ));
        lookup(&c, &k, Ok(valid(60))).await;
        let tickets = (0..3).filter_map(|_| c.hit(&k)?.refresh).count();
        assert_eq!(tickets, 1, "one renewal per entry");
    }

    #[tokio::test]
    async fn zero_expiry_is_not_served_again() {
        let c = cache(60, 60);
        let k = Credential::new("z", "");
        lookup(&c, &k, Ok(valid(0))).await;
        assert_eq!(lookup(&c, &k, Ok(valid(0))).await, Lookup::Miss);
    }

    #[tokio::test]
    async fn revoke_replaces_a_valid_entry() {
        let c = cache(60, 1);
        let k = Credential::new("r", "t");
        lookup(&c, &k, Ok(valid(60))).await;
        c.revoke(&k).await;
        let r = c
            .get_or_resolve(&k, || async { Ok(valid(60)) })
            .await
            .unwrap();
        assert_eq!(r.lookup, Lookup::Hit);
        assert!(matches!(r.value, Cached::Invalid));
    }

    #[tokio::test]
    async fn the_token_is_part_of_the_key() {
        let c = cache(60, 60);
        lookup(&c, &Credential::new("s", "right"), Ok(valid(60))).await;
        let r = c
            .get_or_resolve(&Credential::new("s", "wrong"), || async {
                Ok(Fresh::Invalid)
            })
            .await
            .unwrap();
        assert_eq!(r.lookup, Lookup::Miss);
        assert!(matches!(r.value, Cached::Invalid));
    }

    #[tokio::test]
    async fn a_retained_entry_past_its_freshness_is_not_a_hit() {
        // Retained for a minute after a zero-length freshness: moka still
        // holds it, but the cache must ask the IdP again.
        let cfg = config(Duration::from_secs(60), RefreshAhead::Off);
        let c: TestCache = SessionCache::with_retention(&cfg, Duration::from_secs(60));
        let k = Credential::new("kept", "");
        lookup(&c, &k, Ok(valid(0))).await;
        c.inner.run_pending_tasks().await;
        assert_eq!(c.entry_count(), 1, "retained past freshness");
        assert_eq!(lookup(&c, &k, Ok(valid(60))).await, Lookup::Miss);
        let r = c
            .get_or_resolve(&k, || async { unreachable!("fresh now") })
            .await
            .unwrap();
        assert_eq!(r.lookup, Lookup::Hit);
    }

    /// A retaining cache whose entries expire after 50 ms.
    fn retaining() -> TestCache {
        let cfg = config(Duration::from_millis(50), RefreshAhead::Off);
        SessionCache::with_retention(&cfg, Duration::from_secs(60))
    }

    async fn past_freshness() {
        tokio::time::sleep(Duration::from_millis(80)).await;
    }

    #[tokio::test]
    async fn a_failed_renewal_offers_the_last_valid_answer_and_keeps_it() {
        let c = retaining();
        let k = Credential::new("stale", "");
        lookup(&c, &k, Ok(valid(60))).await;
        past_freshness().await;
        for _ in 0..2 {
            let failed = c
                .get_or_resolve(&k, || async { Err("idp down") })
                .await
                .unwrap_err();
            let stale = failed.stale.expect("last valid answer offered");
            assert_eq!(stale.auth().subject(), "1");
            let now = Instant::now();
            assert!(stale.within(Duration::from_secs(10), now));
            assert!(
                !stale.within(Duration::from_millis(1), now),
                "grace runs from expiry"
            );
        }
        let failed = c
            .get_or_resolve(&k, || async { Err("down") })
            .await
            .unwrap_err();
        let stale = failed.stale.unwrap();
        assert!(stale.first_serve(), "first serve of this answer");
        assert!(!stale.first_serve(), "once per outage");
        // The IdP is back: a new answer replaces the stale one.
        assert_eq!(lookup(&c, &k, Ok(valid(60))).await, Lookup::Miss);
    }

    #[tokio::test]
    async fn nothing_stale_after_revoke_or_an_invalid_answer() {
        let c = retaining();
        let revoked = Credential::new("revoked", "");
        lookup(&c, &revoked, Ok(valid(60))).await;
        c.revoke(&revoked).await;
        let r = c
            .get_or_resolve(&revoked, || async { Err("down") })
            .await
            .unwrap();
        assert!(matches!(r.value, Cached::Invalid), "the tombstone answers");

        let invalid = Credential::new("invalid", "");
        lookup(&c, &invalid, Ok(valid(60))).await;
        past_freshness().await;
        lookup(&c, &invalid, Ok(Fresh::Invalid)).await;
        // Past the negative answer's freshness too, with the IdP down.
        let c2 = {
            let cfg = CacheConfig {
                negative_ttl: Duration::ZERO,
                ..config(Duration::from_millis(50), RefreshAhead::Off)
            };
            SessionCache::with_retention(&cfg, Duration::from_secs(60))
        };
        lookup(&c2, &invalid, Ok(valid(60))).await;
        past_freshness().await;
        lookup(&c2, &invalid, Ok(Fresh::Invalid)).await;
        let failed = c2
            .get_or_resolve(&invalid, || async { Err("down") })
            .await
            .unwrap_err();
        assert!(
            failed.stale.is_none(),
            "an invalid answer ends stale eligibility"
        );
    }

    #[tokio::test]
    async fn revoke_outlasts_an_idp_call_in_flight() {
        let c = cache(60, 60);
        let k = Credential::new("racing", "");
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel::<()>();
        let pending = {
            let c = c.clone();
            let k = k.clone();
            tokio::spawn(async move {
                c.get_or_resolve(&k, || async move {
                    let _ = started_tx.send(());
                    let _ = answer_rx.await;
                    Ok(valid(60))
                })
                .await
                .map(|r| r.lookup)
            })
        };
        started_rx.await.unwrap();
        let revoking = {
            let c = c.clone();
            let k = k.clone();
            tokio::spawn(async move { c.revoke(&k).await })
        };
        // The tombstone is effective before the call in flight ends...
        let mut refused = false;
        for _ in 0..100 {
            // Bounded: before the tombstone lands, a lookup joins the call in flight.
            let r = tokio::time::timeout(
                Duration::from_millis(20),
                c.get_or_resolve(&k, || async { Ok(valid(60)) }),
            )
            .await;
            if matches!(
                r,
                Ok(Ok(Resolved {
                    value: Cached::Invalid,
                    ..
                }))
            ) {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(refused, "revocation applies at once");
        // ...and survives the call's late valid answer.
        answer_tx.send(()).unwrap();
        pending.await.unwrap().unwrap();
        revoking.await.unwrap();
        let r = c
            .get_or_resolve(&k, || async { unreachable!("tombstone is fresh") })
            .await
            .unwrap();
        assert!(matches!(r.value, Cached::Invalid));
    }

    #[tokio::test]
    async fn one_refresh_ticket_per_entry_inside_the_window() {
        let cfg = config(Duration::from_millis(400), RefreshAhead::Percent(50));
        let c: TestCache = SessionCache::new(&cfg);
        let k = Credential::new("ahead", "");
        lookup(&c, &k, Ok(valid(60))).await;
        let hit = cached(&c, &k).await;
        assert!(hit.refresh.is_none(), "not inside the window yet");
        tokio::time::sleep(Duration::from_millis(220)).await;
        let hit = cached(&c, &k).await;
        let ticket = hit.refresh.expect("inside the window");
        let again = cached(&c, &k).await;
        assert!(again.refresh.is_none(), "one ticket per entry");
        assert_eq!(
            c.refresh(&k, ticket, async { Ok(valid(60)) }).await,
            Refreshed::Valid
        );
        let renewed = cached(&c, &k).await;
        assert!(renewed.refresh.is_none(), "a new entry, outside its window");

        // A refresh that finds the session invalid replaces the entry.
        tokio::time::sleep(Duration::from_millis(220)).await;
        let ticket = cached(&c, &k).await.refresh.unwrap();
        assert_eq!(
            c.refresh(&k, ticket, async { Ok(Fresh::Invalid) }).await,
            Refreshed::Invalid
        );
        let r = cached(&c, &k).await;
        assert!(matches!(r.value, Cached::Invalid));
    }

    #[tokio::test]
    async fn a_failed_or_superseded_refresh_leaves_the_entry() {
        let cfg = config(Duration::from_millis(400), RefreshAhead::Percent(90));
        let c: TestCache = SessionCache::new(&cfg);
        let k = Credential::new("kept", "");
        lookup(&c, &k, Ok(valid(60))).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let ticket = cached(&c, &k).await.refresh.unwrap();
        assert_eq!(
            c.refresh(&k, ticket, async { Err("down") }).await,
            Refreshed::Failed
        );
        let r = cached(&c, &k).await;
        assert!(
            matches!(r.value, Cached::Valid(_)),
            "still served until it expires"
        );

        let k2 = Credential::new("logged-out", "");
        lookup(&c, &k2, Ok(valid(60))).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let ticket = c
            .get_or_resolve(&k2, || async { unreachable!() })
            .await
            .unwrap()
            .refresh
            .unwrap();
        c.revoke(&k2).await;
        assert_eq!(
            c.refresh(&k2, ticket, async { unreachable!("superseded") })
                .await,
            Refreshed::Superseded
        );
        let r = c
            .get_or_resolve(&k2, || async { unreachable!() })
            .await
            .unwrap();
        assert!(
            matches!(r.value, Cached::Invalid),
            "a refresh never undoes a logout"
        );
    }
}
