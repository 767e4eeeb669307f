//! Hop-by-hop headers (RFC 9110 7.6.1): removed from every request before
//! identity headers are added, with the upgrade and `TE: trailers` the
//! upstream may still be given remembered for the forwarder.

use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Version};

use super::Onward;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
/// Connection comes first: [`remove_hop_by_hop`] relies on it.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// What the client's hop-by-hop headers asked for that an upstream may still
/// be given: they are removed with the rest before identity headers are
/// added, and put back (rewritten by the gateway) only when sent upstream.
#[derive(Debug, Default)]
#[must_use = "dropping it silently refuses upgrades and trailers"]
pub struct HopByHop {
    /// `TE` listed `trailers` (gRPC needs it forwarded over HTTP/2).
    pub(super) te_trailers: bool,
    /// The protocols of a valid upgrade request (HTTP/1.1 GET with
    /// `Connection: upgrade`), `h2c` excluded.
    pub(super) upgrade: Option<HeaderValue>,
}

impl HopByHop {
    /// Binds it to the route's client (`Route::client`) and body limit
    /// (`Route::max_body_bytes`).
    pub fn via(self, client: usize, max_body_bytes: Option<u64>) -> Onward {
        Onward {
            client,
            hop: self,
            max_body_bytes,
        }
    }
}

/// Removes a request's hop-by-hop headers (see [`remove_hop_by_hop`]) and
/// returns the parts of them the upstream may be given later: a valid
/// upgrade and `TE: trailers`.
pub fn remove_request_hop_by_hop(parts: &mut Parts) -> HopByHop {
    let headers = &parts.headers;
    if !headers
        .keys()
        .any(|n| HOP_BY_HOP.contains(n) || n == header::UPGRADE)
    {
        return HopByHop::default();
    }
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| has_token(v, "trailers"));
    let upgrade = if parts.method == Method::GET
        && parts.version == Version::HTTP_11
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
    {
        upgrade_protocols(headers)
    } else {
        None
    };
    remove_hop_by_hop(&mut parts.headers);
    HopByHop {
        te_trailers,
        upgrade,
    }
}

/// The `Upgrade` protocols, without `h2c`: switching a proxied connection to
/// cleartext HTTP/2 would let the client send further requests straight to
/// the upstream, past authentication (h2c smuggling).
fn upgrade_protocols(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut kept: Vec<&str> = Vec::new();
    for value in headers.get_all(header::UPGRADE) {
        let Ok(text) = value.to_str() else {
            return None;
        };
        kept.extend(
            text.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c")),
        );
    }
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Whether a comma-separated header value lists `token` (any case, parameters ignored).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|s| {
        s.split(',').any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
/// Runs before identity headers are added, so a client cannot list one of
/// them in `Connection` to have it dropped after injection.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first, noting which are present: most
    // requests carry none, most HTTP/1.1 answers only `Connection`, and a
    // remove() per name would hash every one of them.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == header::UPGRADE {
            present |= 1 << HOP_BY_HOP.len();
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // HOP_BY_HOP[0] is Connection.
        if let Some(listed) = connection_listed(headers) {
            for name in listed {
                headers.remove(&name);
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    // Upgrade is hop-by-hop; a valid upgrade is put back by `Forwarder::send`.
    if present & (1 << HOP_BY_HOP.len()) != 0 {
        headers.remove(header::UPGRADE);
    }
}

fn connection_listed(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut out = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',') {
            let token = token.trim();
            if token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                out.push(name);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}
