//! Protects the IdP from the gateway, and the gateway from a struggling IdP:
//! [`Guarded`] wraps any [`SessionProvider`] so every call (fetch and
//! logout, foreground and background) first takes one of `idp.max_concurrent`
//! slots, then passes the circuit breaker.
//!
//! - Slots: a call waits up to `idp.timeout` for one, then fails with
//!   [`Backoff::Saturated`]. Requests coalesced on one session share one call,
//!   so they share one slot too (the cache makes one call for them).
//! - Breaker: `idp.breaker.failures` consecutive outages (unavailable or
//!   timeout) open it for `cool_down`; a 429/503 with `Retry-After` opens it
//!   for that long (at most [`super::MAX_RETRY_AFTER`]). While open, calls fail
//!   at once with [`Backoff::CircuitOpen`] and the time left. When the pause
//!   ends, one probe call decides: an answer closes it, another outage opens
//!   it again for twice as long (at most `max_cool_down`).
//!
//! The state sits behind a mutex taken twice per IdP call (never on a cache
//! hit); readiness does not look at it, so a sidecar keeps serving public
//! routes and cached sessions while the IdP is down.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{Backoff, BoxFuture, ClientInfo, IdpError, LogoutOutcome, SessionProvider, Verdict};
use crate::auth::credential::Credential;
use crate::auth::headers::Carries;
use crate::config::{BreakerConfig, IdpConfig};

/// `Retry-After` when no slot freed up: slots turn over within one IdP call.
pub const SATURATED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// `Retry-After` while a probe is out: its answer comes within one IdP call.
pub const PROBING_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the guard did, for metrics (the wiring maps these to the admin's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// No slot freed up within `idp.timeout`: no call made.
    NoSlot,
    /// The breaker held a call off: no call made.
    BreakerRejected,
    /// The breaker changed state.
    Breaker(Phase),
    /// A probe ended; `answered` closes the breaker.
    Probe {
        /// The IdP answered.
        answered: bool,
    },
    /// A call took (+1) or gave back (-1) its slot.
    InFlight(i64),
}

/// The breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Calls go through.
    Closed,
    /// No call until the pause ends.
    Open,
    /// One probe call is out.
    HalfOpen,
}

/// Receives every [`Event`]; must be cheap (it runs on the IdP call path).
pub type Observer = Arc<dyn Fn(Event) + Send + Sync>;

/// A [`SessionProvider`] behind the concurrency limit and the breaker.
pub struct Guarded {
    inner: Arc<dyn SessionProvider>,
    slots: Semaphore,
    slot_wait: Duration,
    breaker: Breaker,
    observe: Observer,
}

impl Guarded {
    /// Wraps `inner` with `cfg`'s `max_concurrent` and `breaker`; what it does goes to `observe`.
    pub fn new(inner: Arc<dyn SessionProvider>, cfg: &IdpConfig, observe: Observer) -> Self {
        Self {
            inner,
            slots: Semaphore::new(cfg.max_concurrent),
            slot_wait: cfg.timeout,
            breaker: Breaker::new(cfg.breaker),
            observe,
        }
    }

    async fn call<'a, T>(
        &'a self,
        call: impl FnOnce() -> BoxFuture<'a, Result<T, IdpError>>,
    ) -> Result<T, IdpError> {
        let observe = &*self.observe;
        let Ok(Ok(_slot)) = tokio::time::timeout(self.slot_wait, self.slots.acquire()).await else {
            observe(Event::NoSlot);
            return Err(IdpError::Backoff {
                cause: Backoff::Saturated,
                retry_after: SATURATED_RETRY_AFTER,
            });
        };
        // After the slot: a call that queued while the breaker opened must not go out.
        let pass = match self.breaker.admit(Instant::now(), observe) {
            Ok(pass) => pass,
            Err(retry_after) => {
                observe(Event::BreakerRejected);
                return Err(IdpError::Backoff {
                    cause: Backoff::CircuitOpen,
                    retry_after,
                });
            }
        };
        observe(Event::InFlight(1));
        let _in_flight = InFlight(observe);
        let result = call().await;
        pass.record(Outcome::of(&result));
        result
    }
}

/// Gives the in-flight count back even when the call is dropped mid-way.
struct InFlight<'a>(&'a Observe);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        (self.0)(Event::InFlight(-1));
    }
}

impl SessionProvider for Guarded {
    fn fetch<'a>(
        &'a self,
        key: &'a Credential,
        client: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<Verdict, IdpError>> {
        Box::pin(self.call(move || self.inner.fetch(key, client)))
    }

    fn logout<'a>(&'a self, key: &'a Credential) -> BoxFuture<'a, Result<LogoutOutcome, IdpError>> {
        Box::pin(self.call(move || self.inner.logout(key)))
    }

    fn carries(&self) -> Carries {
        self.inner.carries()
    }
}

/// What one call tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The IdP answered (a bad answer is an answer: the IdP is up).
    Answered,
    /// Unreachable, 5xx, timeout.
    Outage,
    /// The IdP asked for this pause.
    Throttled(Duration),
}

impl Outcome {
    fn of<T>(result: &Result<T, IdpError>) -> Self {
        match result {
            Ok(_) | Err(IdpError::BadAnswer(_)) => Outcome::Answered,
            Err(IdpError::Backoff { retry_after, .. }) => Outcome::Throttled(*retry_after),
            Err(IdpError::Unavailable(_) | IdpError::Timeout) => Outcome::Outage,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cool_down: Duration },
    HalfOpen { cool_down: Duration },
}

impl State {
    fn phase(self) -> Phase {
        match self {
            State::Closed { .. } => Phase::Closed,
            State::Open { .. } => Phase::Open,
            State::HalfOpen { .. } => Phase::HalfOpen,
        }
    }
}

/// The circuit breaker's state machine.
struct Breaker {
    cfg: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is always whole (plain copies): a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pass for one call, or the time left before calls resume.
    fn admit<'a>(&'a self, now: Instant, observe: &'a Observe) -> Result<Pass<'a>, Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(Pass::new(self, observe, false)),
            State::Open { until, .. } if now < until => Err(until - now),
            State::Open { cool_down, .. } => {
                *state = State::HalfOpen { cool_down };
                drop(state);
                observe(Event::Breaker(Phase::HalfOpen));
                tracing::info!("IdP circuit breaker: cool-down over, one probe call decides");
                Ok(Pass::new(self, observe, true))
            }
            State::HalfOpen { .. } => Err(PROBING_RETRY_AFTER),
        }
    }

    fn record(&self, outcome: Outcome, probe: bool, observe: &Observe) {
        if probe {
            observe(Event::Probe {
                answered: outcome == Outcome::Answered,
            });
        }
        let now = Instant::now();
        let mut state = self.lock();
        let before = *state;
        let base = self.cfg.cool_down;
        let next = match (before, outcome) {
            // A call admitted before the breaker opened says nothing about now.
            (State::Open { .. } | State::HalfOpen { .. }, _) if !probe => return,
            (_, Outcome::Answered) => State::Closed { failures: 0 },
            (_, Outcome::Throttled(pause)) => {
                let until = now + pause;
                match before {
                    // Never shortens a pause already decided.
                    State::Open {
                        until: u,
                        cool_down,
                    } if u > until => State::Open {
                        until: u,
                        cool_down,
                    },
                    State::Open { cool_down, .. } | State::HalfOpen { cool_down } => {
                        State::Open { until, cool_down }
                    }
                    State::Closed { .. } => State::Open {
                        until,
                        cool_down: base,
                    },
                }
            }
            (State::HalfOpen { cool_down }, Outcome::Outage) => {
                let cool_down = (cool_down * 2).min(self.cfg.max_cool_down);
                State::Open {
                    until: now + cool_down,
                    cool_down,
                }
            }
            (State::Closed { failures }, Outcome::Outage) => {
                let failures = failures.saturating_add(1);
                if self.cfg.failures > 0 && failures >= self.cfg.failures {
                    State::Open {
                        until: now + base,
                        cool_down: base,
                    }
                } else {
                    State::Closed { failures }
                }
            }
            (State::Open { .. }, Outcome::Outage) => return,
        };
        *state = next;
        drop(state);
        if before.phase() != next.phase() {
            observe(Event::Breaker(next.phase()));
            match next {
                State::Closed { .. } => {
                    tracing::info!("IdP circuit breaker closed: the IdP answers again")
                }
                State::Open { until, .. } => tracing::warn!(
                    pause_ms = until.saturating_duration_since(now).as_millis() as u64,
                    cause = match outcome {
                        Outcome::Throttled(_) => "idp_retry_after",
                        _ => "idp_failures",
                    },
                    "IdP circuit breaker open: no IdP calls until the pause ends"
                ),
                State::HalfOpen { .. } => {}
            }
        }
    }

    /// A probe that never reported (its request was dropped): let the next call probe.
    fn abandon_probe(&self) {
        let mut state = self.lock();
        if let State::HalfOpen { cool_down } = *state {
            *state = State::Open {
                until: Instant::now(),
                cool_down,
            };
        }
    }
}

/// The observer as the breaker sees it.
type Observe = dyn Fn(Event) + Send + Sync;

/// Permission for one call; reports its outcome once, or gives a probe back when dropped.
struct Pass<'a> {
    breaker: &'a Breaker,
    observe: &'a Observe,
    probe: bool,
    reported: bool,
}

impl<'a> Pass<'a> {
    fn new(breaker: &'a Breaker, observe: &'a Observe, probe: bool) -> Self {
        Self {
            breaker,
            observe,
            probe,
            reported: false,
        }
    }

    fn record(mut self, outcome: Outcome) {
        self.reported = true;
        self.breaker.record(outcome, self.probe, self.observe);
    }
}

impl std::fmt::Debug for Pass<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass").field("probe", &self.probe).finish()
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn breaker(failures: u32) -> (Breaker, Box<Observe>) {
        let cfg = BreakerConfig {
            failures,
            cool_down: Duration::from_millis(100),
            max_cool_down: Duration::from_millis(300),
        };
        (Breaker::new(cfg), Box::new(|_| {}))
    }

    fn call(b: &Breaker, observe: &Observe, outcome: Outcome) -> Result<(), Duration> {
        b.admit(Instant::now(), observe)?.record(outcome);
        Ok(())
    }

    #[test]
    fn opens_after_n_consecutive_outages_only() {
        let (b, observe) = breaker(3);
        for _ in 0..2 {
            call(&b, &observe, Outcome::Outage).unwrap();
        }
        call(&b, &observe, Outcome::Answered).unwrap();
        for _ in 0..3 {
            call(&b, &observe, Outcome::Outage).unwrap();
        }
        let left = call(&b, &observe, Outcome::Answered).unwrap_err();
        assert!(left <= Duration::from_millis(100), "{left:?}");
    }

    #[test]
    fn one_probe_after_the_cool_down_which_doubles_while_failing() {
        let (b, observe) = breaker(1);
        call(&b, &observe, Outcome::Outage).unwrap();
        let later = Instant::now() + Duration::from_millis(150);
        let probe = b.admit(later, &observe).unwrap();
        assert_eq!(b.admit(later, &observe).unwrap_err(), PROBING_RETRY_AFTER);
        probe.record(Outcome::Outage);
        let State::Open { cool_down, .. } = *b.lock() else {
            panic!("open again")
        };
        assert_eq!(cool_down, Duration::from_millis(200));
        // Capped at max_cool_down.
        for _ in 0..3 {
            let far = Instant::now() + Duration::from_secs(10);
            b.admit(far, &observe).unwrap().record(Outcome::Outage);
        }
        let State::Open { cool_down, .. } = *b.lock() else {
            panic!("open again")
        };
        assert_eq!(cool_down, Duration::from_millis(300));
        let far = Instant::now() + Duration::from_secs(10);
        b.admit(far, &observe).unwrap().record(Outcome::Answered);
        assert_eq!(*b.lock(), State::Closed { failures: 0 });
    }

    #[test]
    fn a_dropped_probe_lets_the_next_call_probe() {
        let (b, observe) = breaker(1);
        call(&b, &observe, Outcome::Outage).unwrap();
        let later = Instant::now() + Duration::from_millis(150);
        drop(b.admit(later, &observe).unwrap());
        assert!(b.admit(later, &observe).is_ok(), "probe given back");
    }

    #[test]
    fn retry_after_opens_at_once_even_with_failures_off() {
        let (b, observe) = breaker(0);
        for _ in 0..10 {
            call(&b, &observe, Outcome::Outage).unwrap();
        }
        call(&b, &observe, Outcome::Throttled(Duration::from_secs(2))).unwrap();
        let left = call(&b, &observe, Outcome::Answered).unwrap_err();
        assert!(left > Duration::from_millis(1500) && left <= Duration::from_secs(2));
    }

    #[test]
    fn late_answers_of_calls_admitted_before_opening_are_ignored() {
        let (b, observe) = breaker(1);
        let early = b.admit(Instant::now(), &observe).unwrap();
        call(&b, &observe, Outcome::Outage).unwrap();
        early.record(Outcome::Answered);
        assert!(matches!(*b.lock(), State::Open { .. }), "still open");
    }
}
