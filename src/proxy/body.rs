//! Request bodies on their way upstream, cut off at the route's
//! `max_body_bytes`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A request body on its way upstream, cut off once it goes past the
/// route's `max_body_bytes`: the error aborts the upstream request, and the
/// flag lets [`super::Forwarder::send`] answer 413 rather than 502. On routes
/// without a limit, frames pass through untouched and nothing is allocated.
#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    limit: Option<Limit>,
}

#[derive(Debug)]
struct Limit {
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl RequestBody {
    /// Wraps `inner`; with a limit, also returns the flag set when it is exceeded.
    pub(super) fn new(inner: Incoming, max_bytes: Option<u64>) -> (Self, Option<Arc<AtomicBool>>) {
        let Some(remaining) = max_bytes else {
            return (Self { inner, limit: None }, None);
        };
        let exceeded = Arc::new(AtomicBool::new(false));
        let limit = Limit {
            remaining,
            exceeded: Arc::clone(&exceeded),
        };
        (
            Self {
                inner,
                limit: Some(limit),
            },
            Some(exceeded),
        )
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
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let (Some(limit), Some(Ok(frame))) = (&mut this.limit, &frame) {
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                if n > limit.remaining {
                    limit.exceeded.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(RequestBodyError::TooLarge)));
                }
                limit.remaining -= n;
            }
        }
        Poll::Ready(frame.map(|f| f.map_err(RequestBodyError::Client)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
