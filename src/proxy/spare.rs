//! The keep-alive retry's copy of a bodiless request.
//!
//! An upstream may close an idle keep-alive connection just as a request
//! goes out on it; an idempotent request without a body then goes once more
//! on a new connection (see `Forwarder::send`). Nearly every copy is
//! dropped unused, so the headers are kept as one buffer of their bytes
//! rather than as a second `HeaderMap`: a map's clone allocates three times
//! and takes a reference on every shared name and value, and its drop gives
//! each one back, about 1.8k instructions of a 43k cache hit. The map is
//! built again only for the retry.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri, Version};

use super::RequestBody;

/// A bodiless HTTP/1.1 request, kept to be sent again.
pub(super) struct Spare {
    method: Method,
    uri: Uri,
    version: Version,
    /// Each header in the map's order: name length (u32, little-endian),
    /// name, value length, value.
    headers: Vec<u8>,
    count: usize,
}

impl Spare {
    /// The copy of a request head about to be sent.
    pub(super) fn of(method: &Method, uri: &Uri, version: Version, headers: &HeaderMap) -> Self {
        let size = headers
            .iter()
            .map(|(name, value)| 8 + name.as_str().len() + value.len())
            .sum();
        let mut buf = Vec::with_capacity(size);
        let mut count = 0;
        for (name, value) in headers {
            put(&mut buf, name.as_str().as_bytes());
            put(&mut buf, value.as_bytes());
            count += 1;
        }
        Self {
            method: method.clone(),
            uri: uri.clone(),
            version,
            headers: buf,
            count,
        }
    }

    /// The request again, with its headers in their order and no body.
    /// `None` only if a header does not read back, which a name and value
    /// that were valid once cannot do.
    pub(super) fn into_request(self) -> Option<Request<RequestBody>> {
        let mut headers = HeaderMap::with_capacity(self.count);
        let mut rest = self.headers.as_slice();
        while !rest.is_empty() {
            let name = HeaderName::from_bytes(take(&mut rest)?).ok()?;
            let value = HeaderValue::from_bytes(take(&mut rest)?).ok()?;
            headers.append(name, value);
        }
        let mut req = Request::new(RequestBody::empty());
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = headers;
        Some(req)
    }
}

fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    // Header lines are bounded far below 4 GiB by the server's head limit.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, tail) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    let (bytes, tail) = tail.split_at_checked(len)?;
    *rest = tail;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{ACCEPT, COOKIE, HOST};

    #[test]
    fn the_request_comes_back_as_it_was_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("up.example:8080"));
        headers.append(COOKIE, HeaderValue::from_static("a=1"));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        headers.insert("x-iid-profile-id", HeaderValue::from_static("u-1"));
        headers.insert(ACCEPT, HeaderValue::from_static(""));
        headers.insert(
            "x-iid-permissions",
            HeaderValue::from_bytes(&[b'p'; 70_000]).unwrap(),
        );
        let uri: Uri = "/a/b?c=d".parse().unwrap();
        let spare = Spare::of(&Method::HEAD, &uri, Version::HTTP_11, &headers);

        let req = spare.into_request().expect("valid headers read back");
        assert_eq!(req.method(), Method::HEAD);
        assert_eq!(req.uri(), &uri);
        assert_eq!(req.version(), Version::HTTP_11);
        let sent: Vec<_> = headers.iter().collect();
        let again: Vec<_> = req.headers().iter().collect();
        assert_eq!(again, sent, "every value, in the order hyper writes them");
        assert!(hyper::body::Body::is_end_stream(req.body()));
    }

    #[test]
    fn a_damaged_buffer_reads_as_none() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("h"));
        let mut spare = Spare::of(
            &Method::GET,
            &Uri::from_static("/"),
            Version::HTTP_11,
            &headers,
        );
        spare.headers.truncate(spare.headers.len() - 1);
        assert!(spare.into_request().is_none());
    }
}
