//! The IdP's sign-in page, played by the emulator, so the browser journey
//! (login redirect, sign-in, back to the app, logout) runs on one machine.
//!
//! - `GET /login?return_to=PATH`: an HTML page listing the users (name,
//!   locale, roles), one button each; the Arabic-locale user reads right to left.
//! - `POST /login` (form: `profileId`, `return_to`): creates a child session,
//!   as `create` does, sets the gateway's session cookies (HttpOnly,
//!   `SameSite=Lax`, `Path=/`, `Secure` for an https app) and sends the
//!   browser to `{app_origin}{return_to}` (303).
//!
//! `return_to` must be a path on the app origin ([`crate::path::local_target`],
//! the gateway's own rule). Anything else is logged and replaced by `/`.
//! Cookies ignore ports, so the app must be served from the emulator's host
//! (`127.0.0.1` for both in the demo and the tests).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderValue, Response, StatusCode, Uri};
use http_body_util::Full;
use percent_encoding::{percent_decode_str, utf8_percent_encode, CONTROLS};

use super::state::Emulator;
use super::users::User;
use crate::html::escape;
use crate::path::local_target;

/// The page loads nothing from anywhere and cannot be framed.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// Why `--app-origin` is not usable.
#[derive(Debug, thiserror::Error)]
#[error("app origin {0:?} must be http://host[:port] or https://host[:port], without path, query or user info")]
pub struct InvalidAppOrigin(String);

/// The app's origin, `scheme://host[:port]`: where signed-in browsers go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppOrigin {
    /// `scheme://authority`, no trailing slash, so `{origin}{path}` is a URL.
    origin: String,
    /// The host alone, to warn when cookies set here cannot reach the app.
    host: String,
    /// https: cookies get `Secure`.
    secure: bool,
}

impl AppOrigin {
    /// Parses `http(s)://host[:port]` (a trailing `/` is allowed).
    pub fn parse(s: &str) -> Result<AppOrigin, InvalidAppOrigin> {
        let bad = || InvalidAppOrigin(s.to_owned());
        let uri: Uri = s.parse().map_err(|_| bad())?;
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let authority = uri.authority().ok_or_else(bad)?;
        // `user@host` would make `{origin}{path}` name another host than it seems to.
        if authority.as_str().contains('@')
            || authority.host().is_empty()
            || !matches!(uri.path(), "" | "/")
            || uri.query().is_some()
        {
            return Err(bad());
        }
        let scheme = if secure { "https" } else { "http" };
        Ok(AppOrigin {
            origin: format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()),
            host: authority.host().to_ascii_lowercase(),
            secure,
        })
    }

    /// `scheme://host[:port]`.
    pub fn as_str(&self) -> &str {
        &self.origin
    }
}

/// What the sign-in page needs beyond the IdP: where the app is and which
/// cookies the gateway in front of it reads.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// Where browsers go after signing in.
    pub app_origin: AppOrigin,
    /// The gateway's `session.id_cookie`.
    pub id_cookie: String,
    /// The gateway's `session.token_cookie`; empty: not set.
    pub token_cookie: String,
}

/// `GET /login`: the page, with `return_to` carried in the form.
pub(crate) fn page(emu: &Emulator, sign_in: &SignIn, query: Option<&str>) -> Response<Full<Bytes>> {
    let return_to = field(query.unwrap_or_default(), "return_to").unwrap_or_default();
    let target = checked_target(&return_to, false);
    let shown = percent_decode_str(&target).decode_utf8_lossy();
    let users: String = emu.roster().iter().map(|u| user_item(u)).collect();
    let body = format!(
        r#"<!doctype html>
<html lang="en" dir="ltr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · IID emulator</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1b1f24; }}
main {{ max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }}
.note {{ color: #57606a; }}
ul {{ list-style: none; padding: 0; display: grid; gap: .75rem; }}
li {{ background: #fff; border-radius: 8px; box-shadow: 0 1px 3px #0003; padding: 1rem 1.25rem; }}
h2 {{ font-size: 1.1rem; margin: 0 0 .5rem; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0 0 .75rem; }}
dt {{ color: #57606a; }} dd {{ margin: 0; }}
button {{ font: inherit; padding: .45rem 1rem; border-radius: 6px; border: 1px solid #1f6feb; background: #1f6feb; color: #fff; cursor: pointer; }}
button:focus-visible {{ outline: 3px solid #fb8500; outline-offset: 2px; }}
</style>
</head>
<body>
<main>
<h1>Sign in</h1>
<p class="note">IID emulator, for development only. Choose a user; no password is asked.
Signing in creates a child session and returns you to <code id="return-to">{origin}{shown}</code>.</p>
<form method="post" action="/login">
<input type="hidden" name="return_to" value="{return_to}">
<ul aria-label="Users">
{users}</ul>
</form>
</main>
</body>
</html>
"#,
        origin = escape(sign_in.app_origin.as_str()),
        shown = escape(&shown),
        return_to = escape(&return_to),
    );
    html(StatusCode::OK, body)
}

/// One user: name, profile, locale and roles, and the button that signs in
/// as them. The Arabic-locale user is written in Arabic, right to left.
fn user_item(user: &User) -> String {
    let arabic = user.locale.eq_ignore_ascii_case("ar");
    let profile = user.key().unwrap_or_default();
    let (name_en, name_ar) = (&user.profile.name_en, &user.profile.name_ar);
    let name = if arabic {
        name_ar.as_ref().or(name_en.as_ref())
    } else {
        name_en.as_ref().or(name_ar.as_ref())
    };
    let name = name
        .cloned()
        .unwrap_or_else(|| format!("Profile {profile}"));
    let roles: Vec<&str> = user
        .user_roles
        .iter()
        .filter_map(|r| r.code.as_deref())
        .collect();
    let (lang, dir, l_profile, l_locale, l_roles, none, action) = if arabic {
        (
            "ar",
            "rtl",
            "الملف",
            "اللغة",
            "الأدوار",
            "لا يوجد",
            "تسجيل الدخول باسم",
        )
    } else {
        (
            "en",
            "ltr",
            "Profile",
            "Locale",
            "Roles",
            "none",
            "Sign in as",
        )
    };
    let roles = if roles.is_empty() {
        none.to_owned()
    } else {
        roles.join(", ")
    };
    let (profile, name) = (escape(&profile), escape(&name));
    format!(
        r#"<li lang="{lang}" dir="{dir}" data-profile="{profile}">
<h2>{name}</h2>
<dl>
<dt>{l_profile}</dt><dd><bdi>{profile}</bdi></dd>
<dt>{l_locale}</dt><dd><bdi>{locale}</bdi></dd>
<dt>{l_roles}</dt><dd><bdi>{roles}</bdi></dd>
</dl>
<button type="submit" name="profileId" value="{profile}">{action} {name}</button>
</li>
"#,
        locale = escape(&user.locale),
        roles = escape(&roles),
    )
}

/// `POST /login`: a session for the chosen user, its cookies, and the way back.
pub(crate) fn submit(
    emu: &Emulator,
    sign_in: &SignIn,
    host: Option<&HeaderValue>,
    form: &[u8],
) -> Response<Full<Bytes>> {
    let form = String::from_utf8_lossy(form);
    let return_to = field(&form, "return_to").unwrap_or_default();
    let Some(profile) = field(&form, "profileId") else {
        return text(StatusCode::BAD_REQUEST, "choose a user (profileId)\n");
    };
    let Some(session) = emu.create_session(&profile, None) else {
        return text(StatusCode::NOT_FOUND, "no such user\n");
    };
    emu.count(super::state::Endpoint::Create);
    let app = &sign_in.app_origin;
    let here = host
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    if here.is_some_and(|h| !h.host().eq_ignore_ascii_case(&app.host)) {
        tracing::warn!(
            app = app.as_str(),
            "the sign-in page is served from another host than the app: the browser will not send it the cookies"
        );
    }
    let target = checked_target(&return_to, true);
    let location = format!("{}{}", app.as_str(), utf8_percent_encode(&target, CONTROLS));
    let mut resp = html(StatusCode::SEE_OTHER, String::new());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(LOCATION, v);
    }
    let secure = if app.secure { "; Secure" } else { "" };
    for (name, value) in [
        (&sign_in.id_cookie, &session.session_id),
        (&sign_in.token_cookie, &session.session_token),
    ] {
        if name.is_empty() {
            continue;
        }
        let cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(SET_COOKIE, v);
        }
    }
    resp
}

/// `return_to` when it is a path on the app origin, else `/`; a rejection is
/// logged (why, not the value: a query may carry tokens) when `log` is set.
fn checked_target(return_to: &str, log: bool) -> Cow<'_, str> {
    if return_to.is_empty() {
        return Cow::Borrowed("/");
    }
    match local_target(return_to) {
        Ok(()) => Cow::Borrowed(return_to),
        Err(why) => {
            if log {
                tracing::warn!(
                    reason = "return_to_rejected",
                    why = why.as_str(),
                    "sign-in return_to is not a path on the app origin; sending the browser to /"
                );
            }
            Cow::Borrowed("/")
        }
    }
}

/// The first `name=value` of a query string or urlencoded form, decoded
/// (`+` is a space); `None` when absent or not UTF-8.
fn field(encoded: &str, name: &str) -> Option<String> {
    encoded
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| {
            let v = v.replace('+', " ");
            percent_decode_str(&v)
                .decode_utf8()
                .ok()
                .map(Cow::into_owned)
        })
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(
        http::header::HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CSP),
    );
    resp
}

/// A plain-text answer for what the page itself never sends.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_origins_are_scheme_and_authority_only() {
        let o = AppOrigin::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((o.as_str(), o.secure), ("http://127.0.0.1:8080", false));
        let o = AppOrigin::parse("https://App.Example/").unwrap();
        assert_eq!((o.as_str(), o.secure), ("https://app.example", true));
        assert_eq!(o.host, "app.example");
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://u@evil.example",
            "http://x/app",
            "http://x/?a=1",
            "/relative",
            "",
        ] {
            assert!(AppOrigin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_are_decoded_once() {
        let q = "a=1&return_to=%2Freports%3Fq%3D%25D8%25AA&x&name=a+b";
        assert_eq!(field(q, "return_to").as_deref(), Some("/reports?q=%D8%AA"));
        assert_eq!(field(q, "name").as_deref(), Some("a b"));
        assert_eq!(field(q, "x").as_deref(), Some(""));
        assert_eq!(field(q, "missing"), None);
        assert_eq!(field("v=%FF", "v"), None);
    }
}
