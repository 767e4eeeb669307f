//! The demo app's page: what the echo upstream answers a browser
//! (`Accept: text/html`). It shows who the user is exactly as the app learns
//! it, from the identity headers the gateway added, and offers the rest of
//! the journey: a public page, a route the user may lack the role for, and
//! logout.

use http::request::Parts;
use percent_encoding::percent_decode_str;

use crate::html::escape;

/// Where the logout form goes: the gateway's `/logout`, returning to the
/// app's root, which sends a signed-out browser on to the sign-in page.
pub const LOGOUT_ACTION: &str = "/logout?return_to=%2F";

/// The page for one request.
pub fn render(parts: &Parts) -> String {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let who = match header("x-iid-profile-id") {
        Some(profile) => {
            let list = |name: &str| {
                header(name)
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| "none".to_owned(), |v| v.replace(',', ", "))
            };
            format!(
                r#"<dl>
<dt>Profile id</dt><dd id="profile-id">{profile}</dd>
<dt>Roles</dt><dd id="roles">{roles}</dd>
<dt>Permissions</dt><dd id="permissions">{permissions}</dd>
<dt>Locale</dt><dd id="locale">{locale}</dd>
</dl>
"#,
                profile = escape(&profile),
                roles = escape(&list("x-iid-roles")),
                permissions = escape(&list("x-iid-permissions")),
                locale = escape(&header("x-iid-locale").unwrap_or_else(|| "not given".into())),
            )
        }
        None => "<p id=\"anonymous\">No identity headers: this route is public, so the gateway \
                 forwarded the request without looking at a session.</p>\n"
            .to_owned(),
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = percent_decode_str(target).decode_utf8_lossy();
    format!(
        r#"<!doctype html>
<html lang="en" dir="ltr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo app · sessiongate</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1b1f24; }}
main {{ max-width: 44rem; margin: 2rem auto; padding: 1.5rem 2rem; background: #fff; border-radius: 8px; box-shadow: 0 1px 3px #0003; }}
.note {{ color: #57606a; }}
h2 {{ font-size: 1.1rem; margin-top: 1.5rem; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }}
dt {{ color: #57606a; }} dd {{ margin: 0; overflow-wrap: anywhere; }}
button {{ font: inherit; padding: .45rem 1rem; border-radius: 6px; border: 1px solid #cf222e; background: #fff; color: #cf222e; cursor: pointer; }}
button:focus-visible, a:focus-visible {{ outline: 3px solid #fb8500; outline-offset: 2px; }}
</style>
</head>
<body>
<main>
<h1>Demo app</h1>
<p class="note">This page is the echo upstream behind sessiongate. It knows you only from the
identity headers the gateway added to the request.</p>
<h2>Who you are</h2>
{who}<h2>You asked for</h2>
<p><code id="request-target">{target}</code></p>
<h2>Try</h2>
<ul>
<li><a id="public-link" href="/public/hello">A public page</a>: no session needed.</li>
<li><a id="admin-link" href="/admin/">The admin area</a>: establishment admins only; anyone else gets the gateway's 403 page.</li>
</ul>
<form method="post" action="{LOGOUT_ACTION}">
<button id="logout" type="submit">Log out</button>
</form>
</main>
</body>
</html>
"#,
        target = escape(&target),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn shows_the_identity_headers_escaped_and_the_decoded_target() {
        let page = render(&parts(
            "/reports?month=2026-11&q=%D8%AA%3Cb%3E",
            &[
                ("x-iid-profile-id", "518"),
                ("x-iid-roles", "IID-INVESTOR,<script>"),
                ("x-iid-permissions", "P1,P2"),
                ("x-iid-locale", "ar"),
            ],
        ));
        assert!(page.contains(r#"<dd id="profile-id">518</dd>"#), "{page}");
        assert!(page.contains(r#"<dd id="roles">IID-INVESTOR, &lt;script&gt;</dd>"#));
        assert!(page.contains(r#"<dd id="permissions">P1, P2</dd>"#));
        assert!(page.contains(r#"<dd id="locale">ar</dd>"#));
        assert!(
            page.contains("/reports?month=2026-11&amp;q=ت&lt;b&gt;"),
            "{page}"
        );
        assert!(page.contains(r#"<form method="post" action="/logout?return_to=%2F">"#));
    }

    #[test]
    fn a_public_route_has_no_identity() {
        let page = render(&parts("/public/hello", &[]));
        assert!(page.contains(r#"<p id="anonymous">"#), "{page}");
        assert!(!page.contains("profile-id"));
    }
}
