//! Per-connection timers: a keep-alive connection with no request in flight
//! is closed after `idle_timeout`, and a request head must arrive within
//! `header_read_timeout` of its first byte (of the connection opening, for
//! the first request).
//!
//! hyper's own `header_read_timeout` cannot do this: in hyper 1.x (checked
//! in 1.12, hyperium/hyper#3828) its timer also runs while a kept-alive
//! connection waits for the next request, so it would close every idle
//! connection after the (short) head timeout. It is switched off and replaced by [`Activity`], which the
//! connection's requests, its IO and its task share:
//! - each request holds an [`ActiveGuard`] until its response body is done
//!   (moved into the body by [`Tracked`]);
//! - [`Watched`] notes the first byte of a request head that arrives while
//!   no request is in flight (HTTP/1.1 only: HTTP/2 reads control frames
//!   all the time);
//! - the connection task asks [`Activity::due`] when the connection must
//!   close, and closes it then.
//!
//! Per request this costs a few uncontended atomic operations and two clock
//! reads; per connection, one allocation.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// `head_since` when no request head is pending.
const NO_HEAD: u64 = u64::MAX;

/// What a connection's requests, IO and task know about its activity.
/// Times are milliseconds since `opened`, so they fit in an atomic.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    /// Requests whose response is not finished (HTTP/2: open streams).
    active: AtomicUsize,
    /// When the last response finished (or the connection opened).
    idle_since: AtomicU64,
    /// When the first byte of a request head arrived while no request was
    /// in flight; [`NO_HEAD`] when none is pending.
    head_since: AtomicU64,
    idle_timeout: Duration,
    header_timeout: Duration,
}

impl Activity {
    /// A connection opened now. `owes_head`: HTTP/1.1, whose first request
    /// head must come within the head timeout; an HTTP/2 connection with
    /// no stream is merely idle.
    pub(crate) fn new(owes_head: bool, idle_timeout: Duration, header_timeout: Duration) -> Self {
        Self {
            opened: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(if owes_head { 0 } else { NO_HEAD }),
            idle_timeout,
            header_timeout,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NO_HEAD - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    /// A request was handed to the service: its head is complete.
    pub(crate) fn request_started(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NO_HEAD, Ordering::Relaxed);
        ActiveGuard(Arc::clone(self))
    }

    /// Bytes arrived from the client (HTTP/1.1 only).
    fn bytes_arrived(&self) {
        // Bytes while a request is in flight are its body (or a pipelined
        // request, which is rare enough to be held to the idle timeout only).
        if self.active.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NO_HEAD
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// When the connection must close if nothing happens before; `None`
    /// while a request is in flight (no deadline applies then).
    pub(crate) fn due(&self) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_since.load(Ordering::Relaxed) {
            NO_HEAD => Some(self.at(self.idle_since.load(Ordering::Relaxed)) + self.idle_timeout),
            head => Some(self.at(head) + self.header_timeout),
        }
    }

    /// How soon to look again while requests are in flight: nothing wakes
    /// the connection task when an HTTP/2 stream ends in its own task.
    pub(crate) fn recheck(&self) -> Duration {
        self.idle_timeout.min(self.header_timeout)
    }
}

/// Held by one request until its response is finished (or abandoned).
#[derive(Debug)]
pub(crate) struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let a = &self.0;
        // Before the decrement: whoever sees the connection idle must also
        // see when it became idle, or a long request would look long idle.
        a.idle_since.store(a.now(), Ordering::Relaxed);
        a.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is
/// finished or dropped. Delegates everything, so `Content-Length` and
/// end-of-stream detection are unchanged.
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    pub(crate) body: B,
    pub(crate) _guard: ActiveGuard,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An HTTP/1.1 connection's IO, noting when a request head starts.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(io: S, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);
    const HEAD: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn deadlines_follow_the_connection_state() {
        let a = Arc::new(Activity::new(true, IDLE, HEAD));
        // A new HTTP/1.1 connection owes its first head.
        assert_eq!(a.due(), Some(a.opened + HEAD));
        let guard = a.request_started();
        assert_eq!(a.due(), None, "no deadline while a request is in flight");
        a.bytes_arrived();
        assert_eq!(a.due(), None, "body bytes start no head");
        drop(guard);
        let idle = a.due().unwrap();
        assert!(idle >= a.opened + IDLE, "idle after the response");
        a.bytes_arrived();
        let head = a.due().unwrap();
        assert!(
            head < idle && head >= a.opened + HEAD,
            "the next head started"
        );
        let _second = a.request_started();
        assert_eq!(a.due(), None);

        let h2 = Activity::new(false, IDLE, HEAD);
        assert_eq!(h2.due(), Some(h2.opened + IDLE));
    }
}
