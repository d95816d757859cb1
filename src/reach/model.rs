//! The rules of reaching an instance's ports, free of I/O: which ports an
//! admin allows to be forwarded (`22,6006,8888,9000-9100`), which target a
//! tunnel may name (the instance itself only), the names of web services
//! and their presets.

use std::fmt;

/// The ports of an instance that may be forwarded: all of them, or a list
/// of ports and ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRule {
    All,
    Only(Vec<(u16, u16)>),
}

impl PortRule {
    /// Parses `""` (all ports) or `22, 8888, 9000-9100`; the error says
    /// what is wrong, for the form field.
    pub fn parse(text: &str) -> Result<PortRule, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("all") {
            return Ok(PortRule::All);
        }
        let mut ranges = Vec::new();
        for part in text.split([',', ' ']).filter(|p| !p.trim().is_empty()) {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (port(a)?, port(b)?),
                None => (port(part)?, port(part)?),
            };
            if lo > hi {
                return Err(format!("{part}: the range runs backwards"));
            }
            ranges.push((lo, hi));
        }
        if ranges.len() > 100 {
            return Err("at most 100 ports or ranges".into());
        }
        ranges.sort_unstable();
        ranges.dedup();
        Ok(PortRule::Only(ranges))
    }

    pub fn allows(&self, port: u16) -> bool {
        match self {
            PortRule::All => true,
            PortRule::Only(r) => r.iter().any(|(lo, hi)| (*lo..=*hi).contains(&port)),
        }
    }
}

fn port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{}: not a port (1 to 65535)", s.trim())),
    }
}

impl fmt::Display for PortRule {
    /// `""` for all ports, else the canonical list (`22,9000-9100`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRule::All => Ok(()),
            PortRule::Only(r) => {
                let parts: Vec<String> = r
                    .iter()
                    .map(|(lo, hi)| {
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo}-{hi}")
                        }
                    })
                    .collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// Whether `host`, the target a tunnel names (`ssh -L 8888:HOST:8888`),
/// is the instance itself: its loopback names, or (`by_name`) the
/// instance's own name or id. Anything else (the node, another container,
/// any other address) is refused.
pub fn names_the_instance(host: &str, name: &str, id: i64) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h == "127.0.0.1"
        || h == "::1"
        || h == name
        || h == id.to_string()
}

/// Ports offered when turning web access on: Jupyter and TensorBoard.
pub const PRESETS: &[(u16, &str)] = &[(8888, "Jupyter"), (6006, "TensorBoard")];

/// The name a web service gets when none is given: its preset's, or
/// `port N`.
pub fn default_name(port: u16) -> String {
    PRESETS
        .iter()
        .find(|(p, _)| *p == port)
        .map_or_else(|| format!("port {port}"), |(_, n)| (*n).to_string())
}

/// The host name of a service in domain mode: `<port>-<instance id>` under
/// the base domain (ids are never reused, so an origin never passes to
/// another instance).
pub fn domain_host(port: u16, instance: i64, base: &str) -> String {
    format!("{port}-{instance}.{base}")
}

/// The (port, instance id) a host name of domain mode names, if any.
pub fn parse_domain_host(host: &str, base: &str) -> Option<(u16, i64)> {
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let label = host
        .to_ascii_lowercase()
        .strip_suffix(&format!(".{}", base.to_ascii_lowercase()))?
        .to_string();
    let (port, id) = label.split_once('-')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let id: i64 = id.parse().ok().filter(|i| *i > 0)?;
    (format!("{port}-{id}") == label).then_some((port, id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn port_rules_parse_allow_and_print() {
        assert_eq!(PortRule::parse(" ").unwrap(), PortRule::All);
        assert!(PortRule::All.allows(1));
        let r = PortRule::parse("8888, 22 9000-9100,22").unwrap();
        assert_eq!(r.to_string(), "22,8888,9000-9100");
        assert!(r.allows(22) && r.allows(9050) && r.allows(8888));
        assert!(!r.allows(23) && !r.allows(9101));
        for bad in ["0", "70000", "a", "9100-9000", "22-"] {
            assert!(PortRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_instance_itself_is_a_target() {
        for ok in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "::1",
            "[::1]",
            "alpha",
            "7",
        ] {
            assert!(names_the_instance(ok, "alpha", 7), "{ok}");
        }
        for bad in [
            "127.0.0.2",
            "10.0.0.1",
            "beta",
            "8",
            "0.0.0.0",
            "alpha.local",
            "",
            "172.17.0.1",
        ] {
            assert!(!names_the_instance(bad, "alpha", 7), "{bad}");
        }
    }

    #[test]
    fn domain_hosts_round_trip() {
        let h = domain_host(8888, 12, "apps.example.com");
        assert_eq!(h, "8888-12.apps.example.com");
        assert_eq!(parse_domain_host(&h, "apps.example.com"), Some((8888, 12)));
        assert_eq!(
            parse_domain_host("8888-12.APPS.example.com:8444", "apps.example.com"),
            Some((8888, 12))
        );
        for bad in [
            "apps.example.com",
            "x.8888-12.apps.example.com",
            "8888-012.apps.example.com",
            "0-1.apps.example.com",
            "8888-12.other.com",
        ] {
            assert_eq!(parse_domain_host(bad, "apps.example.com"), None, "{bad}");
        }
        assert_eq!(default_name(8888), "Jupyter");
        assert_eq!(default_name(5000), "port 5000");
    }
}
