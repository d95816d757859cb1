//! SSH public keys: the stored type, and the pure rules that turn a pasted
//! `.pub` line into a canonical key and its fingerprint. No I/O.

use russh::keys::ssh_key::public::KeyData;
use russh::keys::{HashAlg, PublicKey};
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, FieldErrors};
use crate::validate::optional_text;

/// A registered key, as the API and the pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshKey {
    pub id: i64,
    pub name: String,
    /// The OpenSSH key type: `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ...
    pub algorithm: String,
    /// `SHA256:<base64>`, as `ssh-keygen -l -E sha256` prints it.
    pub fingerprint: String,
    /// Canonical `type base64`, without the comment.
    pub public_key: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Body of `POST /api/v1/ssh-keys` and of the add form.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct KeyInput {
    /// Optional; defaults to the key's comment, else its type.
    pub name: Option<String>,
    /// One line of a `.pub` file: `type base64 [comment]`.
    pub public_key: Option<String>,
}

/// A validated key, ready to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub algorithm: String,
    pub public_key: String,
    pub fingerprint: String,
}

pub const MAX_NAME: usize = 64;
/// Far above a 16384-bit RSA key (OpenSSH's largest, ~2.8 KB).
pub const MAX_KEY_TEXT: usize = 8192;
pub const MIN_RSA_BITS: u32 = 2048;

impl NewKey {
    /// Validates `input`: every problem is reported on `name` or `public_key`.
    pub fn from_input(input: &KeyInput) -> Result<Self, FieldErrors> {
        let mut e = FieldErrors::new();
        let given = optional_text(
            &mut e,
            "name",
            input.name.as_deref().unwrap_or(""),
            MAX_NAME,
        );
        let parsed = match parse_public_key(input.public_key.as_deref().unwrap_or("")) {
            Ok(p) => Some(p),
            Err(err) => {
                e.insert("public_key", err);
                None
            }
        };
        match parsed {
            Some(p) if e.is_empty() => Ok(Self {
                name: if given.is_empty() {
                    default_name(&p)
                } else {
                    given
                },
                algorithm: p.algorithm,
                public_key: p.public_key,
                fingerprint: p.fingerprint,
            }),
            _ => Err(e),
        }
    }
}

/// The key's comment, else its type; cut to `MAX_NAME` characters, without
/// the control characters a name may not hold.
fn default_name(p: &ParsedKey) -> String {
    let comment: String = p
        .comment
        .chars()
        .filter(|&c| !crate::escape::hidden(c))
        .collect();
    let name = if comment.trim().is_empty() {
        &p.algorithm
    } else {
        comment.trim()
    };
    name.chars().take(MAX_NAME).collect()
}

/// What one `.pub` line holds, canonicalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub algorithm: String,
    pub public_key: String,
    pub fingerprint: String,
    pub comment: String,
}

/// The key types accepted for sign-in.
pub const ACCEPTED_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// Parses one OpenSSH public key line (`type base64 [comment]`) and checks
/// that it is a key we accept: Ed25519, ECDSA on a NIST curve, or RSA of at
/// least `MIN_RSA_BITS`. The error says what is wrong, to show on the field.
pub fn parse_public_key(text: &str) -> Result<ParsedKey, FieldError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(FieldError::new("err.required"));
    }
    if text.chars().count() > MAX_KEY_TEXT {
        return Err(FieldError::with_detail(
            "err.too_long",
            MAX_KEY_TEXT.to_string(),
        ));
    }
    if text.contains("PRIVATE KEY") || text.starts_with("PuTTY-User-Key-File") {
        return Err(FieldError::new("err.ssh_private_key"));
    }
    if text.lines().filter(|l| !l.trim().is_empty()).count() > 1 {
        return Err(FieldError::new("err.ssh_one_line"));
    }
    let mut fields = text.split_whitespace();
    let (Some(kind), Some(data)) = (fields.next(), fields.next()) else {
        return Err(FieldError::new("err.ssh_not_openssh"));
    };
    let comment = fields.collect::<Vec<_>>().join(" ");
    if !ACCEPTED_TYPES.contains(&kind) {
        // Every SSH key blob starts with a small length, "AAAA" in base64: then
        // this is a key line of a type we do not take, else no key line at all.
        return Err(if data.starts_with("AAAA") && looks_like_type(kind) {
            FieldError::with_detail("err.ssh_unsupported_type", kind)
        } else {
            FieldError::new("err.ssh_not_openssh")
        });
    }
    let key = PublicKey::from_openssh(&format!("{kind} {data}"))
        .map_err(|_| FieldError::new("err.ssh_bad_key_data"))?;
    check_key_data(key.key_data())?;
    let public_key = PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .map_err(|_| FieldError::new("err.ssh_bad_key_data"))?;
    Ok(ParsedKey {
        algorithm: key.algorithm().as_str().to_string(),
        public_key,
        fingerprint: fingerprint(&key),
        comment,
    })
}

/// An algorithm name as SSH writes them (`ssh-dss`, `sk-ssh-ed25519@openssh.com`).
fn looks_like_type(kind: &str) -> bool {
    kind.contains('-')
        && kind.len() <= 64
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-@.".contains(c))
}

/// Refuses key material we do not accept (the type name was checked before,
/// and matches the data, so only the RSA size is left to check in practice).
fn check_key_data(data: &KeyData) -> Result<(), FieldError> {
    match data {
        KeyData::Ed25519(_) | KeyData::Ecdsa(_) => Ok(()),
        KeyData::Rsa(rsa) => {
            let bits = rsa_bits(rsa.n().as_positive_bytes().unwrap_or(&[]));
            if bits < MIN_RSA_BITS {
                Err(FieldError::with_detail(
                    "err.ssh_rsa_too_short",
                    bits.to_string(),
                ))
            } else {
                Ok(())
            }
        }
        other => Err(FieldError::with_detail(
            "err.ssh_unsupported_type",
            other.algorithm().as_str().to_string(),
        )),
    }
}

/// The exact bit length of a big-endian modulus without leading zero bytes.
fn rsa_bits(n: &[u8]) -> u32 {
    match n.first() {
        Some(first) => (n.len() as u32) * 8 - first.leading_zeros(),
        None => 0,
    }
}

/// `SHA256:<base64 without padding>`, the form `ssh-keygen -l` prints and
/// the key's identity at sign-in.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::public::{Ed25519PublicKey, SkEd25519};

    // Generated with `ssh-keygen -t ... -C alice@laptop`; the fingerprints
    // are what `ssh-keygen -lf key.pub -E sha256` printed for them.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxyqIkbU6P9Q6WWGgeIrLB42f9mxW3bvZ6SXEb1UcAI alice@laptop";
    const ED25519_FP: &str = "SHA256:SZPNGXyKjld0R1U3/kVWDcXBxma1EB9N+L+ZEqsrlO4";
    const ECDSA384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBE5Ec7DdbQsWqtPGSZtrUEZcAbRgwC8EE/CNXqL2EkTDZcjqyRoNP0utNcwOzqnvYDy9F3syoRXO7VJCMa4HRZKaKt8RyIjQ7ZA5DClcMbxUSaG+ZA6ANuhEpf4w/FzQeg== bob@ws";
    const ECDSA384_FP: &str = "SHA256:FGMrG3JNlANCf3iLJw/FLimc1EDyn5Bf0kQAgJzUMAA";
    const RSA1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC0FYcvQw8n+Xb+53G+1+TsukAJh4vY3/hLH9YPXMLqDldSoPKi+CQMOZm4xRkohg6v47DhXlMIgrovKt1iFyEu3pOzCXAq2PyrlgoV812hgAGTvqw/zVW/qKQBOt3/psSrE621+aVUbs/PSUM2u6xkSX3p35NXAHAgd6CLhQpviQ== root@vm";

    fn err_key(text: &str) -> &'static str {
        parse_public_key(text).unwrap_err().key
    }

    #[test]
    fn an_ed25519_line_is_canonicalised_and_fingerprinted() {
        let p = parse_public_key(&format!("  {ED25519}\r\n")).unwrap();
        assert_eq!(p.algorithm, "ssh-ed25519");
        assert_eq!(p.fingerprint, ED25519_FP);
        assert_eq!(p.comment, "alice@laptop");
        assert_eq!(p.public_key, ED25519.strip_suffix(" alice@laptop").unwrap());
        // Another comment, or none, is the same key.
        let bare = parse_public_key(&p.public_key).unwrap();
        assert_eq!(
            (bare.fingerprint, bare.comment),
            (p.fingerprint, String::new())
        );
    }

    #[test]
    fn ecdsa_is_accepted_and_short_rsa_is_not() {
        let p = parse_public_key(ECDSA384).unwrap();
        assert_eq!(
            (p.algorithm.as_str(), p.fingerprint.as_str()),
            ("ecdsa-sha2-nistp384", ECDSA384_FP)
        );
        let e = parse_public_key(RSA1024).unwrap_err();
        assert_eq!(
            (e.key, e.detail.as_deref()),
            ("err.ssh_rsa_too_short", Some("1024"))
        );
    }

    #[test]
    fn names_default_to_the_comment_then_the_type() {
        let input = |name: &str, key: &str| KeyInput {
            name: Some(name.into()),
            public_key: Some(key.into()),
        };
        let k = NewKey::from_input(&input("", ED25519)).unwrap();
        assert_eq!(k.name, "alice@laptop");
        let k = NewKey::from_input(&input("  work  ", ED25519)).unwrap();
        assert_eq!(k.name, "work");
        let bare = ED25519.strip_suffix(" alice@laptop").unwrap();
        let k = NewKey::from_input(&input("", bare)).unwrap();
        assert_eq!(k.name, "ssh-ed25519");
        let long = format!("{bare} {}", "c".repeat(100));
        assert_eq!(
            NewKey::from_input(&input("", &long)).unwrap().name.len(),
            MAX_NAME
        );
        let e = NewKey::from_input(&input(&"n".repeat(65), ED25519)).unwrap_err();
        assert_eq!(e["name"].key, "err.too_long");
        let e = NewKey::from_input(&KeyInput::default()).unwrap_err();
        assert_eq!(e["public_key"].key, "err.required");
    }

    #[test]
    fn each_bad_input_says_what_is_wrong() {
        assert_eq!(err_key("hello world"), "err.ssh_not_openssh");
        assert_eq!(err_key("ssh-ed25519"), "err.ssh_not_openssh");
        assert_eq!(
            err_key("from=\"10.0.0.1\" ssh-ed25519 AAAA"),
            "err.ssh_not_openssh"
        );
        let truncated = &ED25519[..60];
        assert_eq!(err_key(truncated), "err.ssh_bad_key_data");
        assert_eq!(
            err_key("ssh-ed25519 AAAA!!!notbase64"),
            "err.ssh_bad_key_data"
        );
        // The type must match the data.
        let data = ED25519.split(' ').nth(1).unwrap();
        assert_eq!(err_key(&format!("ssh-rsa {data}")), "err.ssh_bad_key_data");
        assert_eq!(
            err_key(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
            ),
            "err.ssh_private_key"
        );
        assert_eq!(
            err_key(&format!("{ED25519}\n{ED25519}")),
            "err.ssh_one_line"
        );
        assert_eq!(err_key(&"A".repeat(MAX_KEY_TEXT + 1)), "err.too_long");
        let dss = parse_public_key("ssh-dss AAAAB3NzaC1kc3MAAACBAP== x").unwrap_err();
        assert_eq!(
            (dss.key, dss.detail.as_deref()),
            ("err.ssh_unsupported_type", Some("ssh-dss"))
        );
    }

    #[test]
    fn security_keys_are_not_supported() {
        let sk = PublicKey::from(SkEd25519::new(Ed25519PublicKey([7; 32]), "ssh:"));
        let line = sk.to_openssh().unwrap();
        assert!(
            line.starts_with("sk-ssh-ed25519@openssh.com AAAA"),
            "{line}"
        );
        let e = parse_public_key(&line).unwrap_err();
        assert_eq!(
            (e.key, e.detail.as_deref()),
            (
                "err.ssh_unsupported_type",
                Some("sk-ssh-ed25519@openssh.com")
            )
        );
    }

    #[test]
    fn rsa_size_is_counted_in_exact_bits() {
        assert_eq!(rsa_bits(&[]), 0);
        assert_eq!(rsa_bits(&[0x80; 256]), 2048);
        assert_eq!(rsa_bits(&[0x7f; 256]), 2047);
        assert_eq!(rsa_bits(&[0x01, 0, 0]), 17);
    }
}
