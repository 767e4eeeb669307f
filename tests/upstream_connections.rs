//! An HTTP/1.1 client connection's requests go upstream over a connection
//! it owns: one upstream connection carries all of them, in order, and it
//! closes when the client's connection does (nothing idles in a pool after).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Connections the upstream accepted, and how many of them have ended.
#[derive(Default)]
struct Counts {
    opened: AtomicUsize,
    closed: AtomicUsize,
    requests: AtomicUsize,
}

/// An upstream that answers every bodiless request with `ok` and counts.
async fn counting_upstream() -> (SocketAddr, Arc<Counts>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let state = Arc::clone(&counts);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            state.opened.fetch_add(1, Ordering::SeqCst);
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        state.requests.fetch_add(1, Ordering::SeqCst);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            break;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                state.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts)
}

/// Sends `n` GETs one after the other on one client connection, reading each answer.
async fn keep_alive_client(gateway: SocketAddr, n: usize) -> TcpStream {
    let mut s = TcpStream::connect(gateway).await.unwrap();
    for i in 0..n {
        let req = format!("GET /r{i} HTTP/1.1\r\nhost: app.test\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.ends_with(b"ok") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                .await
                .expect("an answer")
                .unwrap();
            assert!(
                n > 0,
                "the gateway closed: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    s
}

#[tokio::test]
async fn one_upstream_connection_per_client_connection_closed_with_it() {
    let (up, counts) = counting_upstream().await;
    let h = Harness::builder()
        .routes(&format!(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://{up}\"\nauth = \"public\"\n"
        ))
        .start()
        .await;
    let first = keep_alive_client(h.addr, 5).await;
    let second = keep_alive_client(h.addr, 3).await;
    assert_eq!(counts.requests.load(Ordering::SeqCst), 8);
    assert_eq!(
        counts.opened.load(Ordering::SeqCst),
        2,
        "each client connection reuses its own upstream connection"
    );
    assert_eq!(counts.closed.load(Ordering::SeqCst), 0);
    let closed = |n| {
        let counts = Arc::clone(&counts);
        support::eventually(Duration::from_secs(10), move || {
            let counts = Arc::clone(&counts);
            async move { counts.closed.load(Ordering::SeqCst) == n }
        })
    };
    drop(first);
    assert!(
        closed(1).await,
        "the first upstream connection closed with its client's"
    );
    drop(second);
    assert!(closed(2).await, "and the second");
    assert_eq!(counts.opened.load(Ordering::SeqCst), 2);
}
