//! How gpudock names itself in what it shows users (links, `ssh` command
//! lines, connection summaries): the configured `[server] public_host` when
//! set, otherwise the address the browser used — the request URI's
//! authority (HTTP/2 `:authority`), else the `Host` header. Every page or
//! answer that shows gpudock's address asks [`PublicOrigin`], nothing else.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri, header};

use crate::app::App;
use crate::config::Config;

/// gpudock's public address for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    /// `https://host[:port]`, no trailing slash.
    pub base_url: String,
    /// The host alone (an IPv6 address without brackets), for `ssh` lines.
    pub ssh_host: String,
    /// The jumpbox's port.
    pub ssh_port: u16,
}

impl PublicOrigin {
    /// `base_url` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// Splits an optional `scheme://` from what follows.
fn split_scheme(s: &str) -> (Option<&str>, &str) {
    match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, s),
    }
}

/// Checks a `public_host` setting: empty, or `host`, `host:port`, with an
/// optional `http://` / `https://`; no path, user or spaces.
pub fn check_public_host(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Ok(());
    }
    let (scheme, rest) = split_scheme(s);
    if scheme.is_some_and(|sc| sc != "http" && sc != "https") {
        return Err("the scheme, when given, must be http:// or https://");
    }
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) || rest.contains(char::is_whitespace)
    {
        return Err("must be a host name or IP, optionally with :port (no path)");
    }
    let auth: Authority = rest
        .parse()
        .map_err(|_| "must be a host name or IP, optionally with :port")?;
    if let Some((_, port)) = auth.as_str().rsplit_once(':')
        && !port.contains(']')
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err("the port after ':' must be a number from 1 to 65535");
    }
    Ok(())
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

fn ssh_host_of(auth: &Authority) -> String {
    auth.host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// The public origin for a request whose URI is `uri` with `headers`.
pub fn resolve(config: &Config, uri: &Uri, headers: &HeaderMap) -> PublicOrigin {
    let ssh_port = config.ssh_listen.port();
    let own_scheme = if config.tls.enabled { "https" } else { "http" };
    let configured = config.server.public_host.trim();
    if !configured.is_empty() {
        let (given, rest) = split_scheme(configured);
        let scheme = given.unwrap_or(own_scheme);
        if let Ok(auth) = rest.parse::<Authority>() {
            // With a scheme (a proxy in front), its default port; without
            // one, gpudock's own.
            let port = auth.port_u16().unwrap_or(if given.is_some() {
                default_port(scheme)
            } else {
                config.listen.port()
            });
            let base_url = if port == default_port(scheme) {
                format!("{scheme}://{}", auth.host())
            } else {
                format!("{scheme}://{}:{port}", auth.host())
            };
            return PublicOrigin {
                base_url,
                ssh_host: ssh_host_of(&auth),
                ssh_port,
            };
        }
    }
    let seen = uri.authority().cloned().or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
    });
    let auth = seen.unwrap_or_else(|| {
        Authority::from_maybe_shared(format!("localhost:{}", config.listen.port()))
            .unwrap_or_else(|_| Authority::from_static("localhost"))
    });
    PublicOrigin {
        base_url: format!("{own_scheme}://{auth}"),
        ssh_host: ssh_host_of(&auth),
        ssh_port,
    }
}

impl FromRequestParts<App> for PublicOrigin {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        Ok(resolve(&app.config, &parts.uri, &parts.headers))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn config(public_host: &str) -> Config {
        let mut c = Config::default();
        c.server.public_host = public_host.into();
        c
    }

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, h.parse().unwrap());
        m
    }

    #[test]
    fn the_configured_name_wins_over_what_the_browser_used() {
        let uri: Uri = "/instances/3".parse().unwrap();
        let o = resolve(&config("gpu.example.com"), &uri, &host("10.0.0.5:8443"));
        assert_eq!(o.base_url, "https://gpu.example.com:8443");
        assert_eq!((o.ssh_host.as_str(), o.ssh_port), ("gpu.example.com", 2026));
        let o = resolve(&config("gpu.example.com:443"), &uri, &host("x"));
        assert_eq!(o.base_url, "https://gpu.example.com");
        let o = resolve(&config("https://lab.example.org"), &uri, &host("x"));
        assert_eq!(o.base_url, "https://lab.example.org");
        assert_eq!(o.url("/a"), "https://lab.example.org/a");
        let o = resolve(&config("[fd00::7]:9443"), &uri, &host("x"));
        assert_eq!(
            (o.base_url.as_str(), o.ssh_host.as_str()),
            ("https://[fd00::7]:9443", "fd00::7")
        );
    }

    #[test]
    fn otherwise_the_http2_authority_then_the_host_header() {
        let c = config("");
        let h2: Uri = "https://203.0.113.9:8443/instances/1".parse().unwrap();
        let o = resolve(&c, &h2, &HeaderMap::new());
        assert_eq!(o.base_url, "https://203.0.113.9:8443");
        assert_eq!(o.ssh_host, "203.0.113.9");
        let o = resolve(&c, &h2, &host("ignored.example"));
        assert_eq!(o.ssh_host, "203.0.113.9", "the URI's authority comes first");
        let h1: Uri = "/instances/1".parse().unwrap();
        let o = resolve(&c, &h1, &host("[::1]:8443"));
        assert_eq!(
            (o.base_url.as_str(), o.ssh_host.as_str()),
            ("https://[::1]:8443", "::1")
        );
        let o = resolve(&c, &h1, &HeaderMap::new());
        assert_eq!(o.base_url, "https://localhost:8443");
        let mut plain = config("");
        plain.tls.enabled = false;
        assert_eq!(
            resolve(&plain, &h1, &host("lab:8080")).base_url,
            "http://lab:8080"
        );
    }

    #[test]
    fn public_host_settings_are_checked() {
        for ok in [
            "",
            "gpu.example.com",
            "gpu.example.com:443",
            "10.0.0.5",
            "[fd00::7]:8443",
            "https://x.org",
        ] {
            assert!(check_public_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://x", "x/y", "user@x", "a b", "x:", "https://", "x:99999",
        ] {
            assert!(check_public_host(bad).is_err(), "{bad}");
        }
    }
}
