//! CSRF protection for the sign-in form without a server-side session: a
//! signed double-submit cookie. The form's token and the cookie carry the
//! same value, `<issued>.<nonce>.<mac>`, signed with a key derived from the
//! appliance identity; a post must bring both, equal, signed and fresh.
//! Nothing is stored, so anonymous visitors leave no session rows.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::app::App;

/// `__Host-`: the browser takes it only from this host, over HTTPS, for `/`.
pub const COOKIE: &str = "__Host-gpudock_login";
const PURPOSE: &str = "login-csrf";

/// A fresh token for a sign-in form, and the `Set-Cookie` of its twin.
pub fn issue(app: &App) -> (String, HeaderValue) {
    let issued = crate::db::now();
    let nonce = super::guard::random_token();
    let signed = format!("{issued}.{nonce}");
    let mac = B64.encode(app.sealer.sign(PURPOSE, signed.as_bytes()));
    let token = format!("{signed}.{mac}");
    let max_age = lifetime(app);
    let cookie =
        format!("{COOKIE}={token}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict");
    // The token is base64url and digits: always a valid header value.
    let value = HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static(""));
    (token, value)
}

/// A sign-in form may be left open as long as a session may stay idle.
fn lifetime(app: &App) -> i64 {
    i64::from(app.config.security.session_idle_minutes) * 60
}

/// Whether `sent` (the form's token or the `X-CSRF-Token` header) matches
/// the request's cookie and is one of ours, not expired.
pub fn check(app: &App, headers: &HeaderMap, sent: &str) -> bool {
    let Some(cookie) = cookie_value(headers) else {
        return false;
    };
    if !super::guard::tokens_match(&cookie, sent) {
        return false;
    }
    let mut parts = sent.splitn(3, '.');
    let (Some(issued), Some(nonce), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(mac) = B64.decode(mac) else {
        return false;
    };
    let fresh = issued
        .parse::<i64>()
        .is_ok_and(|t| (0..=lifetime(app)).contains(&(crate::db::now() - t)));
    fresh
        && app
            .sealer
            .verify(PURPOSE, format!("{issued}.{nonce}").as_bytes(), &mac)
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(str::to_string)
}
