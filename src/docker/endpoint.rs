//! Endpoint URL syntax: `unix:///absolute/path` or `tcp://host:port`.

use std::path::PathBuf;

use super::DockerError;

/// What an endpoint URL names, once its syntax has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointKind {
    /// A local socket; the path is absolute.
    Unix(PathBuf),
    /// A TCP address; `host` is a name or an IP literal without brackets.
    Tcp { host: String, port: u16 },
}

/// The longest socket path the kernel accepts (`sun_path` is 108 bytes,
/// one of which is the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

const EXPECTED: &str = "expected unix:///path/to/docker.sock or tcp://host:port";

/// Checks the syntax of an endpoint URL; touches no network or file.
pub fn parse_endpoint(url: &str) -> Result<EndpointKind, DockerError> {
    let url = url.trim();
    let bad = |why: String| Err(DockerError::BadEndpoint(why));
    if let Some(path) = url.strip_prefix("unix://") {
        return parse_unix(path);
    }
    if let Some(rest) = url.strip_prefix("tcp://") {
        return parse_tcp(rest);
    }
    if url.is_empty() {
        return bad(format!("the endpoint is empty ({EXPECTED})"));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return bad(format!(
            "{url}: write tcp://host:port (TLS is used when certificates are given)"
        ));
    }
    if url.starts_with('/') {
        return bad(format!("{url}: write unix://{url} for a local socket"));
    }
    bad(format!("{url}: {EXPECTED}"))
}

fn parse_unix(path: &str) -> Result<EndpointKind, DockerError> {
    let bad = |why: String| Err(DockerError::BadEndpoint(why));
    if path.is_empty() {
        return bad("unix:// needs a socket path, e.g. unix:///var/run/docker.sock".into());
    }
    if !path.starts_with('/') {
        return bad(format!(
            "unix://{path}: the socket path must be absolute (unix:///{path})"
        ));
    }
    if path.contains('\0') {
        return bad("the socket path contains a NUL byte".into());
    }
    if path.len() > MAX_SOCKET_PATH {
        return bad(format!(
            "the socket path is {} bytes long; the system allows at most {MAX_SOCKET_PATH}",
            path.len()
        ));
    }
    Ok(EndpointKind::Unix(PathBuf::from(path)))
}

fn parse_tcp(rest: &str) -> Result<EndpointKind, DockerError> {
    let bad = |why: String| Err(DockerError::BadEndpoint(why));
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return bad(format!("tcp://{rest}: only host:port may follow tcp://"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return bad(format!("tcp://{rest}: missing ']' after the IPv6 address"));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return bad(format!("tcp://{rest}: [{host}] is not an IPv6 address"));
        }
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return bad(format!(
                    "tcp://{rest}: write an IPv6 address in brackets, e.g. tcp://[::1]:2376"
                ));
            }
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return bad(format!("tcp://{rest}: the host is missing"));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '@') {
        return bad(format!("tcp://{rest}: {host:?} is not a host name"));
    }
    let Some(port) = port.filter(|p| !p.is_empty()) else {
        return bad(format!(
            "tcp://{rest}: the port is missing (dockerd's TLS port is usually 2376)"
        ));
    };
    match port.parse::<u16>() {
        Ok(p) if p >= 1 => Ok(EndpointKind::Tcp {
            host: host.to_string(),
            port: p,
        }),
        _ => bad(format!(
            "tcp://{rest}: the port must be a number from 1 to 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn err(url: &str) -> String {
        match parse_endpoint(url) {
            Err(DockerError::BadEndpoint(m)) => m,
            other => panic!("{url}: expected BadEndpoint, got {other:?}"),
        }
    }

    #[test]
    fn unix_paths() {
        assert_eq!(
            parse_endpoint("unix:///var/run/docker.sock").unwrap(),
            EndpointKind::Unix(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(
            parse_endpoint("  unix:///run/d.sock\n").unwrap(),
            EndpointKind::Unix(PathBuf::from("/run/d.sock"))
        );
        assert!(err("unix://var/run/docker.sock").contains("must be absolute"));
        assert!(err("unix://").contains("needs a socket path"));
        assert!(err(&format!("unix:///{}", "a".repeat(120))).contains("at most 107"));
        assert!(err("/var/run/docker.sock").contains("unix:///var/run/docker.sock"));
    }

    #[test]
    fn tcp_addresses() {
        assert_eq!(
            parse_endpoint("tcp://10.0.0.5:2376").unwrap(),
            EndpointKind::Tcp {
                host: "10.0.0.5".into(),
                port: 2376
            }
        );
        assert_eq!(
            parse_endpoint("tcp://gpu-01.lab:2375/").unwrap(),
            EndpointKind::Tcp {
                host: "gpu-01.lab".into(),
                port: 2375
            }
        );
        assert_eq!(
            parse_endpoint("tcp://[::1]:2376").unwrap(),
            EndpointKind::Tcp {
                host: "::1".into(),
                port: 2376
            }
        );
        assert_eq!(
            parse_endpoint("tcp://h:65535").unwrap(),
            EndpointKind::Tcp {
                host: "h".into(),
                port: 65535
            }
        );
    }

    #[test]
    fn tcp_mistakes_say_what_to_fix() {
        assert!(err("tcp://host").contains("port is missing"));
        assert!(err("tcp://host:").contains("port is missing"));
        assert!(err("tcp://:2376").contains("host is missing"));
        assert!(err("tcp://host:0").contains("1 to 65535"));
        assert!(err("tcp://host:65536").contains("1 to 65535"));
        assert!(err("tcp://host:abc").contains("1 to 65535"));
        assert!(err("tcp://host:2376/v1.41").contains("only host:port"));
        assert!(err("tcp://::1:2376").contains("in brackets"));
        assert!(err("tcp://[::1:2376").contains("missing ']'"));
        assert!(err("tcp://[nothex]:2376").contains("not an IPv6 address"));
        assert!(err("tcp://user@host:2376").contains("not a host name"));
        assert!(err("https://host:2376").contains("tcp://host:port"));
        assert!(err("").contains("empty"));
        assert!(err("ssh://host").contains("expected unix://"));
    }
}
