//! A per-thread map in front of moka, for the cache hit.
//!
//! moka's `get` is built for every thread at once: an epoch pin, a
//! concurrent bucket walk, a read recorded for its eviction policy and, now
//! and then, housekeeping inline. On the bench's cache hit it was 4-5% of
//! the gateway's user time for 1.3% of its instructions. A worker thread
//! that already saw an answer keeps it here, and a hit is one plain hash
//! lookup with no atomic write.
//!
//! An answer kept here is served only while moka would serve the same one:
//! - it is fresh (the same `fresh_until` moka's copy carries);
//! - nothing replaced it in moka: a renewal marks the entry it replaces
//!   superseded, and a missing or expired entry is replaced only when it is
//!   no longer fresh, so it would not be served here either;
//! - the cache's generation is the one read before the answer was fetched
//!   from moka: a revocation or `drop_all` moves it on, so every thread's
//!   copy goes at once. Revocations are rare (a logout, an operator), so
//!   they may cost every thread its map; renewals must not, and do not.
//!
//! An entry moka evicts for room stays servable here while it is fresh: the
//! answer is still the IdP's latest. Each thread keeps at most `capacity`
//! entries per cache, so at most that many answers outlive moka's bound.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::Entry;
use crate::auth::credential::{Credential, PreHashed};

/// Entries one thread keeps for one cache, at most.
pub const MAX_PER_THREAD: usize = 4096;

/// One cache's view of the per-thread maps: which maps are its own, and the
/// generation their entries must carry.
#[derive(Clone)]
pub struct Front {
    /// Moved on by every revocation; its allocation names the cache's maps.
    generation: Arc<AtomicU64>,
    capacity: usize,
}

/// A thread's map for one cache.
struct Local {
    cache: Weak<AtomicU64>,
    map: HashMap<Credential, (Arc<Entry>, u64), PreHashed>,
}

thread_local! {
    static LOCALS: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

impl Front {
    /// A front for a cache of `max_entries`: each thread keeps at most that
    /// many, and never more than [`MAX_PER_THREAD`].
    pub fn new(max_entries: u64) -> Self {
        Self {
            generation: Arc::new(AtomicU64::new(0)),
            capacity: usize::try_from(max_entries)
                .unwrap_or(usize::MAX)
                .min(MAX_PER_THREAD),
        }
    }

    /// The generation to hand to [`Front::keep`]: read before the answer is
    /// fetched from moka, so a revocation in between leaves the kept copy
    /// behind.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Every thread's copies go: after a revocation or `drop_all` wrote moka.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// `f` of this thread's fresh, current copy of `key`'s answer, if it has one.
    pub fn with<R>(
        &self,
        key: &Credential,
        now: Instant,
        f: impl FnOnce(&Arc<Entry>) -> R,
    ) -> Option<R> {
        let generation = self.generation();
        // `try_with`: a thread being torn down has no copies, not a panic.
        LOCALS
            .try_with(|locals| {
                let locals = locals.borrow();
                let local = locals.iter().find(|l| self.owns(l))?;
                let (entry, seen) = local.map.get(key)?;
                (*seen == generation && entry.is_fresh(now) && !entry.is_superseded())
                    .then(|| f(entry))
            })
            .ok()
            .flatten()
    }

    /// Keeps `entry`, fetched from moka after reading `generation`, for
    /// this thread's next lookups of `key`.
    pub fn keep(&self, key: &Credential, entry: &Arc<Entry>, generation: u64, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let _ = LOCALS.try_with(|locals| {
            let mut locals = locals.borrow_mut();
            let at = match locals.iter().position(|l| self.owns(l)) {
                Some(at) => at,
                None => {
                    // Maps of caches that are gone (a test's, a replaced
                    // gateway's) go with the first fill of a new one.
                    locals.retain(|l| l.cache.strong_count() > 0);
                    locals.push(Local {
                        cache: Arc::downgrade(&self.generation),
                        map: HashMap::with_hasher(PreHashed),
                    });
                    locals.len() - 1
                }
            };
            let map = &mut locals[at].map;
            if map.len() >= self.capacity && !map.contains_key(key) {
                let current = self.generation();
                map.retain(|_, (e, seen)| {
                    *seen == current && e.is_fresh(now) && !e.is_superseded()
                });
                if map.len() >= self.capacity {
                    map.clear();
                }
            }
            map.insert(key.clone(), (Arc::clone(entry), generation));
        });
    }

    /// This thread's entry count for this cache, for tests.
    #[cfg(test)]
    pub fn local_len(&self) -> usize {
        LOCALS.with_borrow(|locals| {
            locals
                .iter()
                .find(|l| self.owns(l))
                .map_or(0, |l| l.map.len())
        })
    }

    fn owns(&self, local: &Local) -> bool {
        // A live `Weak` keeps the allocation, so its address names one cache.
        std::ptr::eq(local.cache.as_ptr(), Arc::as_ptr(&self.generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::cache::Cached;
    use std::time::Duration;

    fn entry(secs: u64) -> Arc<Entry> {
        Arc::new(Entry::new(
            Cached::Invalid,
            Duration::from_secs(secs),
            Duration::ZERO,
        ))
    }

    fn served(front: &Front, key: &Credential) -> Option<*const Entry> {
        front.with(key, Instant::now(), Arc::as_ptr)
    }

    #[test]
    fn keeps_an_answer_until_it_is_revoked_superseded_or_stale() {
        let front = Front::new(100);
        let key = Credential::new("id", "tok");
        let e = entry(3600);
        assert_eq!(served(&front, &key), None);
        front.keep(&key, &e, front.generation(), Instant::now());
        assert_eq!(served(&front, &key), Some(Arc::as_ptr(&e)));

        // A revocation: every copy goes.
        front.invalidate();
        assert_eq!(served(&front, &key), None);

        // Kept with a generation read before a revocation: never served.
        let before = front.generation();
        front.invalidate();
        front.keep(&key, &e, before, Instant::now());
        assert_eq!(served(&front, &key), None);

        // A renewal marks the entry it replaced.
        front.keep(&key, &e, front.generation(), Instant::now());
        assert!(served(&front, &key).is_some());
        e.supersede();
        assert_eq!(served(&front, &key), None);

        // Past its freshness.
        let short = entry(3600);
        front.keep(&key, &short, front.generation(), Instant::now());
        let later = Instant::now() + Duration::from_secs(3601);
        assert!(front.with(&key, later, |_| ()).is_none());
    }

    #[test]
    fn each_cache_has_its_own_map_and_a_bound() {
        let a = Front::new(2);
        let b = Front::new(2);
        let e = entry(3600);
        let keys: Vec<Credential> = (0..3)
            .map(|i| Credential::new(&format!("id{i}"), ""))
            .collect();
        a.keep(&keys[0], &e, a.generation(), Instant::now());
        assert!(served(&a, &keys[0]).is_some());
        assert_eq!(served(&b, &keys[0]), None);

        a.keep(&keys[1], &e, a.generation(), Instant::now());
        a.keep(&keys[2], &e, a.generation(), Instant::now());
        assert!(a.local_len() <= 2, "{}", a.local_len());
        assert!(served(&a, &keys[2]).is_some());

        // A cache with no room keeps nothing.
        let none = Front::new(0);
        none.keep(&keys[0], &e, none.generation(), Instant::now());
        assert_eq!(served(&none, &keys[0]), None);
    }

    #[test]
    fn a_revocation_on_another_thread_reaches_this_one() {
        let front = Arc::new(Front::new(10));
        let key = Credential::new("id", "tok");
        let e = entry(3600);
        front.keep(&key, &e, front.generation(), Instant::now());
        assert!(served(&front, &key).is_some());
        let other = Arc::clone(&front);
        std::thread::spawn(move || other.invalidate())
            .join()
            .unwrap();
        assert_eq!(served(&front, &key), None);
    }
}
