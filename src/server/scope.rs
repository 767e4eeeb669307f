//! Work that belongs to one HTTP/1.1 client connection and runs in that
//! connection's own task: the proxy's upstream connections, and the moment
//! its request's upstream deadline passes. Driven there,
//! a request and its answer cross no task boundary: the handler, the
//! upstream connection and the client connection are polled one after the
//! other by the same task, so a wakeup between them costs no trip through
//! another task or a pool.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Context;

use tokio::time::Instant;

/// A future a connection runs beside its requests.
type SideFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What handlers running in an HTTP/1.1 connection's task may leave with
/// it: futures it polls when they are woken (and drops when it closes), and
/// one value of any type (the proxy keeps its idle upstream senders there).
pub struct ConnectionScope {
    state: Mutex<State>,
    /// Set when `new` or `wake` changed: most polls of the driver find
    /// neither, and then skip the lock.
    news: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Handed over by handlers, not yet taken by the connection's driver.
    new: Vec<SideFuture>,
    local: Option<Box<dyn Any + Send>>,
    /// The earliest moment a handler asked to be polled at.
    wake: Option<Instant>,
}

/// The connection driver's end: the side futures it polls.
pub(super) struct Side {
    scope: Arc<ConnectionScope>,
    running: Vec<SideFuture>,
}

impl ConnectionScope {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            news: AtomicBool::new(false),
        })
    }

    pub(super) fn side(self: &Arc<Self>) -> Side {
        Side {
            scope: Arc::clone(self),
            running: Vec::new(),
        }
    }

    /// Polls `fut` in this connection's task from the next poll on, until
    /// it ends or the connection closes.
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.lock().new.push(Box::pin(fut));
        self.news.store(true, Ordering::Release);
    }

    /// Has the connection's task polled at `at` (and so its in-flight
    /// request, which then sees its deadline has passed) by the connection's
    /// own timer: a request then needs no timer of its own.
    pub fn wake_at(&self, at: Instant) {
        {
            let mut state = self.lock();
            state.wake = Some(state.wake.map_or(at, |w| w.min(at)));
        }
        self.news.store(true, Ordering::Release);
    }

    /// Calls `f` with this connection's value of type `T` (a default one
    /// the first time; a value of another type is replaced).
    pub fn local<T: Default + Send + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut state = self.lock();
        let local = state.local.get_or_insert_with(|| Box::new(T::default()));
        if !local.is::<T>() {
            *local = Box::new(T::default());
        }
        match local.downcast_mut::<T>() {
            Some(value) => f(value),
            // Unreachable: replaced above when of another type.
            None => f(&mut T::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Side {
    /// Takes over futures handed over since the last call and, when they
    /// were `woken` or one is new, polls every one and forgets those that
    /// ended. Returns the moment a handler asked to be polled at since the
    /// last call ([`ConnectionScope::wake_at`]).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>, mut woken: bool) -> Option<Instant> {
        // Cleared before the state is read: what a handler adds after that
        // sets it again, for the next call.
        let news = self.scope.news.load(Ordering::Relaxed)
            && self.scope.news.swap(false, Ordering::Acquire);
        let wake = if news {
            let mut state = self.scope.lock();
            if !state.new.is_empty() {
                self.running.append(&mut state.new);
                woken = true;
            }
            state.wake.take()
        } else {
            None
        };
        if woken {
            self.running
                .retain_mut(|fut| fut.as_mut().poll(cx).is_pending());
        }
        wake
    }
}
