//! The keep-alive race: the upstream closes an idle connection just as the
//! gateway sends the next request on it. A bodiless GET must not fail for
//! the client (it goes again, once, on a new connection); a POST must never
//! be sent twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Method;
use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the racing upstream saw: per request, in order, its connection,
/// request line and whole head.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<(usize, String, String)>>,
}

impl Seen {
    fn count(&self, line: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l, _)| l == line)
            .count()
    }
}

/// Reads one request (head and a content-length body); its head.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..end + 4 + len);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An upstream whose FIRST connection answers one request and then closes
/// as soon as the second request has arrived, without answering it: the
/// race, made deterministic. Every later connection answers normally.
async fn racing_upstream() -> (SocketAddr, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let state = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let n = state.connections.fetch_add(1, Ordering::SeqCst);
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut answered = 0;
                while let Some(head) = read_request(&mut s, &mut buf).await {
                    let line = head.lines().next().unwrap_or_default().to_string();
                    state.requests.lock().unwrap().push((n, line, head));
                    if n == 0 && answered == 1 {
                        return; // closes under the second request
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                    answered += 1;
                }
            });
        }
    });
    (addr, seen)
}

async fn gateway(up: SocketAddr) -> Harness {
    Harness::builder()
        .routes(&format!(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://{up}\"\nauth = \"public\"\n"
        ))
        .start()
        .await
}

#[tokio::test]
async fn a_get_the_upstream_dropped_goes_again_on_a_new_connection() {
    let (up, seen) = racing_upstream().await;
    let h = gateway(up).await;
    assert_eq!(h.get("/warm", &[]).await.status, 200);
    let r = h.get("/x", &[("x-trace", "t-1")]).await;
    assert_eq!(r.status, 200, "the client saw the race: {:?}", r.body);
    assert_eq!(
        seen.count("GET /x HTTP/1.1"),
        2,
        "sent, dropped, sent again"
    );
    let requests = seen.requests.lock().unwrap().clone();
    let sent: Vec<&(usize, String, String)> = requests
        .iter()
        .filter(|(_, l, _)| l == "GET /x HTTP/1.1")
        .collect();
    assert_eq!(sent[0].0, 0, "first on the reused connection");
    assert_ne!(sent[1].0, 0, "then on a new one");
    assert!(sent[0].2.contains("x-trace: t-1"), "{}", sent[0].2);
    assert_eq!(sent[1].2, sent[0].2, "sent again byte for byte");
}

#[tokio::test]
async fn a_post_the_upstream_dropped_is_never_sent_twice() {
    let (up, seen) = racing_upstream().await;
    let h = gateway(up).await;
    assert_eq!(h.get("/warm", &[]).await.status, 200);
    let r = h
        .request(
            Method::POST,
            "/order",
            &[("content-type", "application/json")],
            Bytes::from_static(b"{\"qty\":1}"),
        )
        .await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    assert_eq!(r.reason(), "upstream_unreachable");
    assert_eq!(
        seen.count("POST /order HTTP/1.1"),
        1,
        "a POST is never replayed"
    );
}
