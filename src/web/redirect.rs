//! Where a `next` parameter may send the browser: only to a path of this
//! site. Decided by parsing the target the way a browser parses a
//! `Location` (the WHATWG URL rules: tabs and line breaks dropped,
//! backslashes read as slashes, `//host` a host), never by string prefix.

use url::Url;

/// An origin no request has: relative targets are resolved against it and
/// must stay on it.
const BASE: &str = "https://gpudock.invalid/";

/// The same-origin path (with its query and fragment) that `next` names,
/// re-serialised by the parser (percent-encoded, so always a valid header
/// value); `/` for anything else: another host, another scheme, a relative
/// path, or what does not parse.
pub fn local_path(next: &str) -> String {
    let home = || "/".to_string();
    let Ok(base) = Url::parse(BASE) else {
        return home();
    };
    if !next.starts_with('/') {
        return home();
    }
    let Ok(target) = base.join(next) else {
        return home();
    };
    if target.origin() != base.origin() {
        return home();
    }
    let mut out = target.path().to_string();
    // An empty first segment would make the path itself `//host`.
    if out.starts_with("//") {
        return home();
    }
    if let Some(q) = target.query() {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = target.fragment() {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_followed() {
        for (next, want) in [
            ("/users?x=1", "/users?x=1"),
            ("/login?next=%2Fusers", "/login?next=%2Fusers"),
            ("/instances/3#logs", "/instances/3#logs"),
            ("/a/../b", "/b"),
            ("/%0a", "/%0a"),
            ("/\n", "/"),
            ("/x\r\ny", "/xy"),
            ("/\u{7f}", "/%7F"),
            ("/ü", "/%C3%BC"),
        ] {
            assert_eq!(local_path(next), want, "{next:?}");
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/.//evil.example",
            "/%2e//evil.example",
            "javascript:alert(1)",
            " /users",
            "",
            "users",
        ] {
            let got = local_path(bad);
            assert_eq!(got, "/", "{bad:?} gave {got}");
        }
        for next in ["/%0d%0a", "/\u{7f}\0\u{1b}", "/\u{202e}"] {
            assert!(axum::http::HeaderValue::from_str(&local_path(next)).is_ok());
        }
    }
}
