//! What browsers get from the gateway itself. A person who meets a 401
//! (without `login_url`), 403, 502, 503 or 504 gets a small HTML page instead
//! of JSON, chosen by `Accept`, in the language `Accept-Language` prefers.
//! Status, message and headers come from the one response table in
//! [`crate::error`]; the page adds only the request id, so support can find
//! the request, and never internal detail. API clients keep the JSON.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_LANGUAGE, CONTENT_LANGUAGE, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::error::{GatewayError, Spec};

/// The page loads nothing: no scripts, images or frames, only its own styles.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What a request said about the answer it can use, read once per request
/// (two header lookups) so the error path needs nothing else from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefs {
    /// A browser: `Accept` names `text/html`.
    pub html: bool,
    /// `Accept-Language`'s first choice is Arabic.
    pub arabic: bool,
}

impl Prefs {
    /// Reads `Accept` and, for browsers only, `Accept-Language`.
    pub fn of(headers: &HeaderMap) -> Prefs {
        let html = wants_html(headers);
        Prefs {
            html,
            arabic: html && prefers_arabic(headers),
        }
    }
}

/// Whether the client is a browser: its `Accept` names `text/html`. The same
/// test decides the login redirect, so one client is never judged twice.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/html")))
}

/// Whether the language with the highest `q` in `Accept-Language` is Arabic
/// (`ar`, `ar-AE`, ...). The first of equal weights wins, as browsers list
/// their choices in order.
fn prefers_arabic(headers: &HeaderMap) -> bool {
    let mut best: Option<(f32, bool)> = None;
    for value in headers.get_all(ACCEPT_LANGUAGE) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            if tag.is_empty() {
                continue;
            }
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .map(|q| q.trim().parse::<f32>().unwrap_or(-1.0))
                .next()
                .unwrap_or(1.0);
            // q=0 means "not acceptable"; an unparseable weight is ignored.
            if q <= 0.0 || best.is_some_and(|(b, _)| q <= b) {
                continue;
            }
            let primary = tag.split('-').next().unwrap_or_default();
            best = Some((q, primary.eq_ignore_ascii_case("ar")));
        }
    }
    best.is_some_and(|(_, arabic)| arabic)
}

/// The answer for `err`: an HTML page for a browser when it is an error a
/// person can meet, else [`GatewayError::to_response`]'s JSON. Both carry
/// the same status and headers (`Retry-After`, `Cache-Control`).
pub fn error_response(
    err: &GatewayError,
    prefs: Prefs,
    request_id: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    let mut resp = err.to_response();
    let spec = err.spec();
    if !prefs.html || !has_page(spec.status) {
        return resp;
    }
    let id = request_id.and_then(|v| v.to_str().ok());
    *resp.body_mut() = Full::new(Bytes::from(page(&spec, prefs.arabic, id)));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        CONTENT_LANGUAGE,
        HeaderValue::from_static(if prefs.arabic { "ar" } else { "en" }),
    );
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CSP),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The statuses a person in a browser can meet on a well-formed request;
/// 400, 404, 413 and 431 answer requests a browser does not make by itself.
fn has_page(status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403 | 502 | 503 | 504)
}

fn page(spec: &Spec, arabic: bool, request_id: Option<&str>) -> String {
    let (lang, dir, message, status_label, id_label) = if arabic {
        ("ar", "rtl", spec.ar, "رمز الحالة", "رقم الطلب")
    } else {
        ("en", "ltr", spec.en, "Status", "Request id")
    };
    let message = escape(message);
    let status = spec.status.as_u16();
    let id = match request_id {
        Some(id) => format!(
            "<p>{id_label}: <code id=\"request-id\">{}</code></p>\n",
            escape(id)
        ),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="{lang}" dir="{dir}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} · {message}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1b1f24; }}
main {{ max-width: 36rem; margin: 4rem auto; padding: 1.5rem 2rem; background: #fff; border-radius: 8px; box-shadow: 0 1px 3px #0003; }}
h1 {{ font-size: 1.4rem; }}
.status {{ color: #6a737d; margin: 0; }}
</style>
</head>
<body>
<main>
<p class="status">{status_label} {status}</p>
<h1 id="message">{message}</h1>
{id}</main>
</body>
</html>
"#
    )
}

/// `s` with `& < > " '` escaped, safe in HTML text and quoted attributes.
/// Borrows when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::IdpError;
    use http::header::RETRY_AFTER;
    use http_body_util::BodyExt;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const BROWSER: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

    async fn body(resp: Response<Full<Bytes>>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert!(matches!(escape("plain text"), Cow::Borrowed(_)));
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn arabic_is_the_first_choice_of_accept_language() {
        let arabic = |al: &'static str| {
            Prefs::of(&headers(&[("accept", BROWSER), ("accept-language", al)])).arabic
        };
        assert!(arabic("ar"));
        assert!(arabic("ar-AE,ar;q=0.9,en;q=0.8"));
        assert!(arabic("AR-ae"));
        assert!(arabic("en;q=0.5, ar;q=0.9"));
        assert!(!arabic("en-US,en;q=0.9,ar;q=0.8"));
        assert!(!arabic("en, ar"), "equal weights: the first listed wins");
        assert!(!arabic("ar;q=0, en"));
        assert!(!arabic("arn"), "Mapudungun is not Arabic");
        assert!(!arabic("*"));
        assert!(!Prefs::of(&headers(&[("accept-language", "ar")])).arabic);
    }

    #[tokio::test]
    async fn browsers_get_a_page_with_the_message_and_request_id_and_no_detail() {
        let prefs = Prefs::of(&headers(&[("accept", BROWSER)]));
        assert!(prefs.html);
        let id = HeaderValue::from_static("<id&\"1\">");
        let err = GatewayError::UpstreamUnreachable("10.1.2.3:8080: connection refused".into());
        let resp = error_response(&err, prefs, Some(&id));
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let page = body(resp).await;
        assert!(page.contains("Application is unreachable"), "{page}");
        assert!(page.contains("&lt;id&amp;&quot;1&quot;&gt;"), "{page}");
        assert!(
            !page.contains("10.1.2.3") && !page.contains("refused"),
            "{page}"
        );
        assert!(page.contains(r#"<html lang="en" dir="ltr">"#), "{page}");
    }

    #[tokio::test]
    async fn arabic_pages_are_right_to_left_and_503_keeps_retry_after() {
        let prefs = Prefs::of(&headers(&[("accept", BROWSER), ("accept-language", "ar")]));
        let resp = error_response(&GatewayError::Idp(IdpError::Timeout), prefs, None);
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[RETRY_AFTER], "5");
        assert_eq!(resp.headers()[CONTENT_LANGUAGE], "ar");
        let page = body(resp).await;
        assert!(page.contains(r#"<html lang="ar" dir="rtl">"#), "{page}");
        assert!(page.contains("خدمة الهوية"), "{page}");
        assert!(!page.contains("request-id"), "no id, no line: {page}");
    }

    #[tokio::test]
    async fn api_clients_and_non_page_statuses_keep_json() {
        let json = "application/json; charset=utf-8";
        for accept in [None, Some("application/json"), Some("*/*")] {
            let h = match accept {
                Some(a) => headers(&[("accept", a)]),
                None => HeaderMap::new(),
            };
            let resp = error_response(&GatewayError::Forbidden("x"), Prefs::of(&h), None);
            assert_eq!(resp.headers()[CONTENT_TYPE], json, "{accept:?}");
        }
        let browser = Prefs::of(&headers(&[("accept", BROWSER)]));
        for err in [
            GatewayError::BadRequest("path"),
            GatewayError::NoRoute,
            GatewayError::BodyTooLarge,
            GatewayError::HeadersTooLarge,
        ] {
            let resp = error_response(&err, browser, None);
            assert_eq!(resp.headers()[CONTENT_TYPE], json, "{err}");
        }
        for err in [
            GatewayError::NoSession,
            GatewayError::InvalidSession,
            GatewayError::Forbidden("x"),
            GatewayError::Idp(IdpError::BadAnswer("x".into())),
            GatewayError::Idp(IdpError::Unavailable("x".into())),
            GatewayError::UpstreamUnreachable("x".into()),
            GatewayError::UpstreamTimeout,
        ] {
            let resp = error_response(&err, browser, None);
            assert_eq!(
                resp.headers()[CONTENT_TYPE],
                "text/html; charset=utf-8",
                "{err}"
            );
        }
    }
}
