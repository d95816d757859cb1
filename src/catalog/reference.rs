//! Docker image references (`[registry[:port]/]path[:tag][@digest]`): the
//! grammar of distribution/reference, parsed by hand instead of a regex so the
//! catalog needs no OCI crate for one check.

/// Longest repository (path, with `library/` for Docker Hub names) accepted.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Why a reference is refused; the text is shown to the admin as the detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid checksum digest format")]
    DigestInvalidFormat,
    #[error("invalid checksum digest length")]
    DigestInvalidLength,
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    #[error("invalid reference format")]
    ReferenceInvalidFormat,
}

/// A parsed reference. `registry` is `docker.io` when the name has none, and
/// the repository of a one-component Docker Hub name gets `library/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference<'a> {
    pub registry: &'a str,
    pub repository: String,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// Parses `s` against Docker's reference grammar. The repository must be
/// lower case (a registry host may not be).
pub fn parse(s: &str) -> Result<Reference<'_>, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::NameEmpty);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    let (name, tag) = split_tag(rest);
    let invalid = ReferenceError::ReferenceInvalidFormat;
    if !valid_name(name) || !tag.is_none_or(valid_tag) || !digest.is_none_or(valid_digest_syntax) {
        return Err(invalid);
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    if let Some(d) = digest {
        check_digest_length(d)?;
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ReferenceError::NameContainsUppercase);
    }
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// A tag follows the last `:` that comes after the last `/` (a registry
/// port's `:` is always followed by a path).
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    }
}

/// `[domain/]component(/component)*`: valid when every part is a path
/// component, or when the first part is a domain and the rest components.
fn valid_name(name: &str) -> bool {
    let mut parts = name.split('/');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let rest_ok = rest.iter().all(|p| valid_component(p));
    rest_ok && (valid_component(first) || (!rest.is_empty() && valid_domain(first)))
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn valid_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host(.host)*[:port]`, a host being alphanumerics with inner `-`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|x| x.is_ascii_digit()));
    host.split('.').all(label_ok) && port_ok
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
}

/// `algorithm:hex{32,}`, the algorithm being letter-led alphanumeric parts
/// joined by `-_+.`.
fn valid_digest_syntax(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let part_ok = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    };
    alg.split(['-', '_', '+', '.']).all(part_ok)
        && hex.len() >= 32
        && hex.bytes().all(|x| x.is_ascii_hexdigit())
}

fn check_digest_length(d: &str) -> Result<(), ReferenceError> {
    let want = match d.split_once(':') {
        None => return Err(ReferenceError::DigestInvalidFormat),
        Some(("sha256", h)) => (h, 64),
        Some(("sha384", h)) => (h, 96),
        Some(("sha512", h)) => (h, 128),
        Some(_) => return Err(ReferenceError::DigestUnsupported),
    };
    if want.0.len() == want.1 {
        Ok(())
    } else {
        Err(ReferenceError::DigestInvalidLength)
    }
}

/// Docker Hub's rule: a first part without `.` or `:` (and not `localhost`)
/// is a path, not a registry; one-component Hub names live in `library/`.
fn split_domain(name: &str) -> (&str, String) {
    let (mut domain, remainder) = match name.split_once('/') {
        Some((l, r)) if l.contains('.') || l.contains(':') || l == "localhost" => (l, r),
        _ => ("docker.io", name),
    };
    if domain == "index.docker.io" {
        domain = "docker.io";
    }
    let repository = if domain == "docker.io" && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder.to_string()
    };
    (domain, repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = parse(s).unwrap();
        let own = |o: Option<&str>| o.map(str::to_string);
        (r.registry.into(), r.repository, own(r.tag), own(r.digest))
    }

    #[test]
    fn splits_like_distribution_reference() {
        let s = |x: &str| x.to_string();
        let cases = [
            ("busybox", "docker.io", "library/busybox", None),
            ("test.com:tag", "docker.io", "library/test.com", Some("tag")),
            (
                "test.com:5000",
                "docker.io",
                "library/test.com",
                Some("5000"),
            ),
            ("test.com/repo:tag", "test.com", "repo", Some("tag")),
            ("test:5000/repo", "test:5000", "repo", None),
            ("test:5000/repo:tag", "test:5000", "repo", Some("tag")),
            ("localhost/a/b", "localhost", "a/b", None),
            ("index.docker.io/x", "docker.io", "library/x", None),
            (
                "nvidia/cuda:12.4.0-devel",
                "docker.io",
                "nvidia/cuda",
                Some("12.4.0-devel"),
            ),
        ];
        for (input, reg, repo, tag) in cases {
            let want = (s(reg), s(repo), tag.map(s), None);
            assert_eq!(parts(input), want, "{input}");
        }
        let with_digest = format!("test:5000/repo:tag@{SHA}");
        assert_eq!(
            parts(&with_digest),
            (s("test:5000"), s("repo"), Some(s("tag")), Some(s(SHA)))
        );
    }

    #[test]
    fn accepts_the_grammar() {
        let long_tag = format!("a:{}", "t".repeat(128));
        let sep = "a.b_c__d---e/f-g";
        for ok in [
            "ubuntu",
            "a",
            "0",
            sep,
            "Registry.Example-1.com:443/ai/x",
            &long_tag,
            "x:_tag.1-2",
            &format!("x@{SHA}"),
            &format!("x@sha512:{}", "a".repeat(128)),
            &format!("x@sha384:{}", "A".repeat(96)),
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_with_the_reason() {
        use ReferenceError::*;
        let too_long_tag = format!("a:{}", "t".repeat(129));
        let long_name = format!("x/{}", "a".repeat(254));
        let cases: Vec<(String, ReferenceError)> = vec![
            ("".into(), NameEmpty),
            ("bad image".into(), ReferenceInvalidFormat),
            ("a:".into(), ReferenceInvalidFormat),
            ("://x".into(), ReferenceInvalidFormat),
            ("Upper".into(), ReferenceInvalidFormat),
            ("a/Upper".into(), ReferenceInvalidFormat),
            ("Upper/case".into(), NameContainsUppercase),
            ("a..b".into(), ReferenceInvalidFormat),
            ("a___b".into(), ReferenceInvalidFormat),
            ("a-".into(), ReferenceInvalidFormat),
            ("a//b".into(), ReferenceInvalidFormat),
            ("-h.com/a".into(), ReferenceInvalidFormat),
            ("h.com:/a".into(), ReferenceInvalidFormat),
            ("h.com:x1/a".into(), ReferenceInvalidFormat),
            ("a:.tag".into(), ReferenceInvalidFormat),
            ("a:版本".into(), ReferenceInvalidFormat),
            (too_long_tag, ReferenceInvalidFormat),
            (long_name, NameTooLong),
            ("x@sha256:short".into(), ReferenceInvalidFormat),
            (format!("x@sha256:{}", "f".repeat(63)), DigestInvalidLength),
            (format!("x@md5:{}", "f".repeat(32)), DigestUnsupported),
            (format!("x@1sha:{}", "f".repeat(32)), ReferenceInvalidFormat),
            (
                format!("x@sha256:{}g", "f".repeat(63)),
                ReferenceInvalidFormat,
            ),
            (format!("x@{SHA}@{SHA}"), ReferenceInvalidFormat),
        ];
        for (bad, want) in cases {
            assert_eq!(parse(&bad), Err(want), "{bad}");
        }
    }
}
