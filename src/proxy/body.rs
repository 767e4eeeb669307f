//! Request bodies on their way upstream, cut off at the route's
//! `max_body_bytes`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A request body on its way upstream, cut off once it goes past the
/// route's `max_body_bytes`: the error aborts the upstream request, and the
/// shared [`BodyFate`] lets [`Forwarder::send`] answer 413 (too large) or
/// 400 (the client broke it) rather than blame the upstream with a 502. On
/// routes without a limit, frames pass through untouched.
///
/// [`Forwarder::send`]: super::Forwarder::send
#[derive(Debug)]
pub struct RequestBody {
    /// `None`: no body (a request sent again after a keep-alive race).
    inner: Option<Incoming>,
    /// Bytes still allowed; `None` on routes without `max_body_bytes`.
    remaining: Option<u64>,
    fate: Arc<BodyFate>,
}

/// Why a request body broke off, as seen after hyper has consumed it: the
/// upstream request's error alone cannot say (over HTTP/2 it is a bare
/// stream reset), so the body records it where it happens.
#[derive(Debug, Default)]
pub(super) struct BodyFate(AtomicU8);

/// How a request body broke off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Broken {
    /// It went past the route's `max_body_bytes`.
    TooLarge,
    /// The client's side failed: a malformed chunk, or the connection ended early.
    Client,
}

impl BodyFate {
    const INTACT: u8 = 0;
    const TOO_LARGE: u8 = 1;
    const CLIENT: u8 = 2;

    fn set(&self, broken: Broken) {
        let v = match broken {
            Broken::TooLarge => Self::TOO_LARGE,
            Broken::Client => Self::CLIENT,
        };
        self.0.store(v, Ordering::Release);
    }

    /// How the body broke off, if it did.
    pub(super) fn broken(&self) -> Option<Broken> {
        match self.0.load(Ordering::Acquire) {
            Self::INTACT => None,
            Self::TOO_LARGE => Some(Broken::TooLarge),
            _ => Some(Broken::Client),
        }
    }
}

impl RequestBody {
    /// Wraps `inner`, cut off after `max_bytes` if given; also returns
    /// where the body records how it broke off.
    pub(super) fn new(inner: Incoming, max_bytes: Option<u64>) -> (Self, Arc<BodyFate>) {
        let fate = Arc::new(BodyFate::default());
        let body = Self {
            inner: Some(inner),
            remaining: max_bytes,
            fate: Arc::clone(&fate),
        };
        (body, fate)
    }

    /// No body at all, for sending a bodiless request a second time.
    pub(super) fn empty() -> Self {
        Self {
            inner: None,
            remaining: None,
            fate: Arc::default(),
        }
    }
}

/// Why a request body stopped short.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The client's side failed (it went away, or sent a broken body).
    #[error(transparent)]
    Client(#[from] hyper::Error),
    /// More bytes than the route's `max_body_bytes`.
    #[error("request body exceeds the route's max_body_bytes")]
    TooLarge,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        match (&mut this.remaining, &frame) {
            (Some(remaining), Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > *remaining {
                        this.fate.set(Broken::TooLarge);
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge)));
                    }
                    *remaining -= n;
                }
            }
            (_, Some(Err(_))) => this.fate.set(Broken::Client),
            _ => {}
        }
        Poll::Ready(frame.map(|f| f.map_err(RequestBodyError::Client)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
