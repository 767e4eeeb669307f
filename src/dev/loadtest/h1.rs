//! One HTTP/1.1 keep-alive connection driven inline by the task that sends
//! on it: the request is written as pre-serialised bytes and the answer is
//! framed with `httparse`, with no connection task, channel or body type in
//! between. hyper's client connection costs two cross-task wakeups and a
//! request/response object per request, which made the load generator
//! slower than the proxies it measured (0.28x of `wrk`). wrk works this way
//! too: a prebuilt request and a response parser on the socket.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head accepted; a bigger one is an error, not a stall.
const MAX_HEAD: usize = 64 * 1024;
/// Response headers parsed per answer.
const MAX_HEADERS: usize = 64;

/// Why one request failed, as a stable error kind for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connecting failed.
    Connect,
    /// The server closed or reset the connection before the whole answer.
    Closed,
    /// The answer is not HTTP/1.1 as the generator understands it.
    Protocol,
}

impl Failure {
    /// Stable name in the report's `error_kinds`.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Closed => "connection closed",
            Failure::Protocol => "protocol",
        }
    }
}

/// A keep-alive connection, reopened after the server ends it.
pub struct Connection {
    addr: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

impl Connection {
    /// Opens the first connection, so a wrong address fails before the run.
    pub async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = connect(addr).await?;
        Ok(Self {
            addr: addr.to_string(),
            stream: Some(stream),
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Sends `request` (a whole serialised request without a body) and reads
    /// the whole answer; returns its status code.
    pub async fn round_trip(&mut self, request: &[u8]) -> Result<u16, Failure> {
        if self.stream.is_none() {
            // A closed keep-alive connection is replaced, as a browser would.
            self.stream = Some(connect(&self.addr).await.map_err(|_| Failure::Connect)?);
            self.buf.clear();
        }
        let result = self.exchange(request).await;
        match result {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(status)
            }
            Err(f) => {
                self.stream = None;
                Err(f)
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, bool), Failure> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::Closed);
        };
        stream
            .write_all(request)
            .await
            .map_err(|_| Failure::Closed)?;
        let head = loop {
            match parse_head(&self.buf)? {
                Some(head) if head.status >= 200 => break head,
                // 1xx: an interim answer; the real one follows.
                Some(head) => self.buf.advance(head.len),
                None => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(Failure::Protocol);
                    }
                    fill(stream, &mut self.buf).await?;
                }
            }
        };
        self.buf.advance(head.len);
        let keep_alive = match head.body {
            Body::Length(n) => {
                while self.buf.len() < n {
                    fill(stream, &mut self.buf).await?;
                }
                self.buf.advance(n);
                head.keep_alive
            }
            Body::Chunked => {
                skip_chunked(stream, &mut self.buf).await?;
                head.keep_alive
            }
            Body::UntilClose => {
                // Drain to EOF, then the connection is gone.
                loop {
                    self.buf.clear();
                    match stream.read_buf(&mut self.buf).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(_) => return Err(Failure::Closed),
                    }
                }
                false
            }
        };
        Ok((head.status, keep_alive))
    }
}

async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads more bytes; EOF or an error before the answer is complete is a closed connection.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), Failure> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    match stream.read_buf(buf).await {
        Ok(0) | Err(_) => Err(Failure::Closed),
        Ok(_) => Ok(()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Body {
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
struct Head {
    status: u16,
    len: usize,
    body: Body,
    keep_alive: bool,
}

/// The response head at the start of `buf`, or `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Protocol),
    };
    let status = resp.code.ok_or(Failure::Protocol)?;
    let mut keep_alive = resp.version == Some(1);
    let mut body = if status < 200 || status == 204 || status == 304 {
        Body::Length(0)
    } else {
        Body::UntilClose
    };
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") && body == Body::UntilClose {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(Failure::Protocol)?;
            body = Body::Length(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value.eq_ignore_ascii_case(b"chunked")
            && status >= 200
        {
            body = Body::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            if h.value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    Ok(Some(Head {
        status,
        len,
        body,
        keep_alive,
    }))
}

/// Skips a chunked body and its trailers.
async fn skip_chunked(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), Failure> {
    loop {
        let (size_len, size) = loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete(parsed)) => break parsed,
                Ok(httparse::Status::Partial) => fill(stream, buf).await?,
                Err(_) => return Err(Failure::Protocol),
            }
        };
        buf.advance(size_len);
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                if let Some(end) = find_line_end(buf) {
                    let empty = end == 0;
                    buf.advance(end + 2);
                    if empty {
                        return Ok(());
                    }
                } else {
                    fill(stream, buf).await?;
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| Failure::Protocol)?;
        while buf.len() < size + 2 {
            fill(stream, buf).await?;
        }
        buf.advance(size + 2);
    }
}

fn find_line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request with the next canned answer.
    async fn canned(answers: &'static [&'static [u8]]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            for a in answers {
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                s.write_all(a).await.unwrap();
            }
        });
        addr
    }

    const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn length_chunked_and_interim_answers_keep_the_connection() {
        let addr = canned(&[
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ])
        .await;
        let mut c = Connection::open(&addr).await.unwrap();
        assert_eq!(c.round_trip(REQ).await, Ok(200));
        assert_eq!(c.round_trip(REQ).await, Ok(404));
        assert_eq!(c.round_trip(REQ).await, Ok(204));
        assert!(c.buf.is_empty(), "every answer was consumed whole");
    }

    #[tokio::test]
    async fn a_body_cut_short_is_a_closed_connection_and_the_next_request_reconnects() {
        let addr = canned(&[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok"]).await;
        let mut c = Connection::open(&addr).await.unwrap();
        // The canned server sends 2 of 10 bytes and then hangs up.
        assert_eq!(c.round_trip(REQ).await, Err(Failure::Closed));
        assert!(c.stream.is_none());
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let addr = canned(&[b"SSH-2.0-OpenSSH\r\n\r\n"]).await;
        let mut c = Connection::open(&addr).await.unwrap();
        assert_eq!(c.round_trip(REQ).await, Err(Failure::Protocol));
    }
}
