//! The floor under the gateway's proxy core: a bare hyper HTTP/1.1 reverse
//! proxy on one current-thread runtime, with the gateway's allocator, one
//! upstream connection per client connection driven in the client
//! connection's own task, and nothing else (no auth, no header rewriting,
//! no timers, no log). What it costs per request against nginx is what any
//! proxy built on hyper's connections costs before doing anything.
//!
//! ```text
//! cargo build --release --example hyper_floor
//! target/release/examples/hyper_floor 127.0.0.1:8080 127.0.0.1:3000
//! ```
//!
//! As a row of `../shared/bench/run-peers.sh` (README, Performance):
//! `GATEWAY_CMD='exec target/release/examples/hyper_floor 127.0.0.1:$GATEWAY_PORT ${BENCH_UPSTREAM_URL#http://}'`.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::error::Error;
use std::rc::Rc;

use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: hyper_floor LISTEN_ADDR UPSTREAM_ADDR".into());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(&listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let upstream = upstream.clone();
            // A connection's error (a client gone mid-request, say) ends only it.
            tokio::task::spawn_local(async move { proxy(stream, &upstream).await.ok() });
        }
    })
}

/// Serves one client connection over one upstream connection, both polled by this task.
async fn proxy(stream: TcpStream, upstream: &str) -> Result<(), Box<dyn Error>> {
    stream.set_nodelay(true)?;
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let (sender, conn) = client::handshake::<_, Incoming>(TokioIo::new(up)).await?;
    let sender = Rc::new(RefCell::new(sender));
    let svc = service_fn(move |req: Request<Incoming>| {
        // The returned future does not borrow the sender: HTTP/1.1 has one
        // request in flight per client connection, and so per sender.
        sender.borrow_mut().send_request(req)
    });
    let served = server::Builder::new().serve_connection(TokioIo::new(stream), svc);
    // The upstream connection ends when the served connection drops its sender.
    let (served, _) = tokio::join!(served, conn);
    Ok(served?)
}
