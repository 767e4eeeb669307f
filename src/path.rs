//! Request-path normalization, a leaf every other module may use: routes
//! match, and the upstream receives, only the normalized path.
//!
//! Normalization (in the spirit of Envoy's `normalize_path` + `merge_slashes`
//! and Spring's StrictHttpFirewall):
//! - percent-encoded unreserved characters are decoded (`%2e` -> `.`), other
//!   escapes are kept with upper-case hex;
//! - `//` collapses to `/`, `.` segments vanish, `..` removes the previous
//!   segment (never climbing above `/`);
//! - rejected as ambiguous (400): `;` (path parameters, `..;/` tricks),
//!   backslashes, encoded `/` `\` `;` `%` and control characters, and any
//!   malformed escape — upstream servers disagree on what those mean.
//!
//! [`local_target`] is the rule for redirect targets (`return_to`): a path on
//! this origin, never one a browser would read as another host.

use std::borrow::Cow;

/// Why a path cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEscape,
    /// Something servers interpret differently (see module docs).
    #[error("ambiguous path ({0})")]
    Ambiguous(&'static str),
}

/// A route prefix without its trailing slash (except `/` itself). A trailing
/// slash must not leave the bare path (`/admin` for `/admin/`) to a less
/// protected route, since many servers treat the two alike.
pub fn canonical_prefix(prefix: &str) -> &str {
    match prefix.trim_end_matches('/') {
        "" => "/",
        p => p,
    }
}

/// Normalizes a request path; borrows when it is already canonical, which is
/// the common case and costs no allocation.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(bytes) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode(bytes)?;
    let ends_with_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || ends_with_slash {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// True when the path needs no rewriting: no escapes, no empty or dot segments,
/// nothing ambiguous.
fn is_canonical(b: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'%' | b';' | b'\\' => return false,
            c if c < 0x20 || c == 0x7f => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // "/." followed by end, "/" or ".": a dot segment.
                match b.get(i + 1) {
                    None | Some(b'/') => return false,
                    Some(b'.') if matches!(b.get(i + 2), None | Some(b'/')) => return false,
                    _ => {}
                }
            }
            _ => {}
        }
        prev = c;
    }
    true
}

fn decode(b: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b';' => return Err(PathError::Ambiguous("path parameter ';'")),
            b'\\' => return Err(PathError::Ambiguous("backslash")),
            c if c < 0x20 || c == 0x7f => return Err(PathError::Ambiguous("control character")),
            b'%' => {
                let (hi, lo) = match (b.get(i + 1), b.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex(h)?, hex(l)?),
                    _ => return Err(PathError::BadEscape),
                };
                let v = hi << 4 | lo;
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(v));
                } else if matches!(v, b'/' | b'\\' | b';' | b'%') || v < 0x20 || v == 0x7f {
                    return Err(PathError::Ambiguous(
                        "encoded '/', '\\', ';', '%' or control",
                    ));
                } else {
                    out.push('%');
                    out.push(char::from(HEX[usize::from(hi)]));
                    out.push(char::from(HEX[usize::from(lo)]));
                }
                i += 3;
                continue;
            }
            c if c.is_ascii() => out.push(char::from(c)),
            _ => {
                // Raw non-ASCII bytes: keep them percent-encoded so the output stays ASCII.
                out.push('%');
                out.push(char::from(HEX[usize::from(c >> 4)]));
                out.push(char::from(HEX[usize::from(c & 0xf)]));
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Why a redirect target such as `return_to` is not a path on this origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotLocal {
    /// No leading '/': an absolute URL (`https://evil`), or text that the
    /// origin it is appended to would turn into a host (`@evil`).
    #[error("not an absolute path")]
    NotAbsolute,
    /// `//evil`: a browser reads it as another host.
    #[error("scheme-relative")]
    SchemeRelative,
    /// Browsers read `\` as `/`, so `/\evil` is `//evil`.
    #[error("backslash")]
    Backslash,
    /// Browsers drop tabs and newlines (`/\t/evil` becomes `//evil`), and
    /// other controls or spaces have no business in a redirect.
    #[error("control character or space")]
    ControlOrSpace,
}

impl NotLocal {
    /// Stable log field value.
    pub fn as_str(self) -> &'static str {
        match self {
            NotLocal::NotAbsolute => "not_absolute",
            NotLocal::SchemeRelative => "scheme_relative",
            NotLocal::Backslash => "backslash",
            NotLocal::ControlOrSpace => "control_or_space",
        }
    }
}

/// Checks that an already-decoded redirect target stays on this origin: it
/// starts with exactly one '/', and holds no '\\', control character or
/// whitespace. The one rule for every `return_to` the gateway and its
/// emulator honour.
pub fn local_target(target: &str) -> Result<(), NotLocal> {
    if !target.starts_with('/') {
        return Err(NotLocal::NotAbsolute);
    }
    if target.starts_with("//") {
        return Err(NotLocal::SchemeRelative);
    }
    if target.contains('\\') {
        return Err(NotLocal::Backslash);
    }
    if target.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(NotLocal::ControlOrSpace);
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(c: u8) -> Result<u8, PathError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(PathError::BadEscape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in ["/", "/a/b", "/a/b/", "/a.b/c..d/.e", "/x-y_z~"] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(n("/public/../admin").unwrap(), "/admin");
        assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/public/%2E%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/public/.%2e/admin").unwrap(), "/admin");
        assert_eq!(n("//admin//x").unwrap(), "/admin/x");
        assert_eq!(n("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(n("/../../etc").unwrap(), "/etc");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
        assert_eq!(n("/a%c3%a9").unwrap(), "/a%C3%A9");
    }

    #[test]
    fn ambiguous_forms_are_rejected() {
        for p in [
            "/public/..;/admin",
            "/public;x=1/a",
            "/public/%2f../admin",
            "/public/%2F",
            "/a\\b",
            "/a%5cb",
            "/a%3bb",
            "/a%252e",
            "/a%00",
            "/a%zz",
            "/a%2",
        ] {
            assert!(normalize_path(p).is_err(), "{p}");
        }
        assert_eq!(normalize_path("admin"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn local_targets_stay_on_the_origin() {
        for ok in ["/", "/home?a=1", "/reports?q=%D8%AA", "/تقرير", "/a#b"] {
            assert_eq!(local_target(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("https://evil.example", NotLocal::NotAbsolute),
            ("evil", NotLocal::NotAbsolute),
            ("@evil.example", NotLocal::NotAbsolute),
            ("", NotLocal::NotAbsolute),
            ("//evil.example", NotLocal::SchemeRelative),
            ("/\\evil.example", NotLocal::Backslash),
            ("/\t/evil.example", NotLocal::ControlOrSpace),
            ("/\r\nSet-Cookie:x", NotLocal::ControlOrSpace),
            ("/a b", NotLocal::ControlOrSpace),
            ("/\u{0}", NotLocal::ControlOrSpace),
        ] {
            assert_eq!(local_target(bad), Err(why), "{bad:?}");
        }
    }
}
