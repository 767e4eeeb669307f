//! Accept loop shared by the gateway, the emulator and the demo upstream:
//! HTTP/1.1 with keep-alive, `TCP_NODELAY`, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// Told when a connection opens (`+1`) and closes (`-1`), e.g. for a gauge.
pub type ConnectionObserver = std::sync::Arc<dyn Fn(i64) + Send + Sync>;

/// How a listener is served: limits that apply per connection.
#[derive(Clone)]
pub struct ServeOptions {
    /// Largest request head hyper will buffer; beyond it hyper answers 431 itself.
    pub max_buf_size: usize,
    /// Slow clients that do not finish their request head in time are dropped.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown is signalled.
    pub shutdown_grace: Duration,
    /// Connection open/close notifications.
    pub observer: Option<ConnectionObserver>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("max_buf_size", &self.max_buf_size)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_buf_size: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            observer: None,
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then drains
/// open connections for at most `opts.shutdown_grace`.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    opts: ServeOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_buf_size.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // EMFILE and friends are transient: back off instead of spinning or exiting.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let svc = service_fn(move |req| {
            let fut = handler(req, peer);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        let observer = opts.observer.clone();
        if let Some(o) = &observer {
            o(1);
        }
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            if let Some(o) = observer {
                o(-1);
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with connections still open");
    }
    Ok(())
}
