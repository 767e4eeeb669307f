//! `[idp] headers` reach the IID IdP on every call, beside IID's own headers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::time::Duration;

use support::{users, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A pass-through in front of the IID emulator that reports every request head it relays.
async fn recording_proxy(
    target: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = client.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                let mut server = TcpStream::connect(target).await.unwrap();
                server.write_all(&buf[..n]).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn iid_calls_carry_the_static_headers() {
    // The harness' emulator runs first; a second harness routes through the recorder to it.
    let first = Harness::start().await;
    let (proxy, mut seen) = recording_proxy(first.idp).await;
    let h = Harness::builder()
        .idp_base_url(&format!("http://{proxy}/middleware/api/external"))
        .set("idp", r#"headers = { "X-Gateway-Key" = "gw-secret-2" }"#)
        .start()
        .await;
    let cookie = first.login(users::INVESTOR);
    let r = h.get("/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let head = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .unwrap()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.starts_with("post /middleware/api/external/sso/session/fetch"),
        "{head}"
    );
    assert!(head.contains("x-gateway-key: gw-secret-2\r\n"), "{head}");
    assert!(head.contains("x-iid-api-key: test-api-key\r\n"), "{head}");
    assert_eq!(first.idp_fetches(), 1);
}
