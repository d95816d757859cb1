//! Field parsers shared by every form and JSON body: trimmed texts with a
//! length limit, bounded integers and booleans that arrive as JSON values or
//! form strings. Each records a translatable error under the field's name.
//!
//! Texts refuse control characters (ESC, BEL, CR, LF, DEL, C1 controls) and
//! the Unicode controls that reorder or hide text: names are printed on
//! terminals (the jumpbox menu), in logs and spreadsheets, where such
//! characters are commands rather than text. Only multi-line texts
//! ([`multiline_text`]) may hold line breaks and tabs.

use serde_json::Value;

use crate::error::{FieldError, FieldErrors};

/// Whether `c` may not appear in a text; `multiline` allows line breaks
/// and tabs.
fn forbidden(c: char, multiline: bool) -> bool {
    if multiline && matches!(c, '\n' | '\r' | '\t') {
        return false;
    }
    crate::escape::hidden(c)
}

/// The one text check: trimmed, at most `max` characters, no control
/// characters; `required` texts may not be empty.
fn text(
    errors: &mut FieldErrors,
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
    multiline: bool,
) -> String {
    let v = value.trim();
    if required && v.is_empty() {
        errors.insert(field, FieldError::new("err.required"));
    } else if v.chars().count() > max {
        errors.insert(
            field,
            FieldError::with_detail("err.too_long", max.to_string()),
        );
    } else if let Some(c) = v.chars().find(|&c| forbidden(c, multiline)) {
        errors.insert(
            field,
            FieldError::with_detail("err.control_char", format!("U+{:04X}", u32::from(c))),
        );
    }
    v.to_string()
}

/// A required, trimmed single-line text of at most `max` characters: every
/// name field (users, tenants, images, specs, nodes, instances, keys,
/// tokens) is one.
pub fn required_text(
    errors: &mut FieldErrors,
    field: &'static str,
    value: &str,
    max: usize,
) -> String {
    text(errors, field, value, max, true, false)
}

/// An optional single-line text of at most `max` characters (trimmed).
pub fn optional_text(
    errors: &mut FieldErrors,
    field: &'static str,
    value: &str,
    max: usize,
) -> String {
    text(errors, field, value, max, false, false)
}

/// An optional text that may span lines (descriptions, remarks).
pub fn multiline_text(
    errors: &mut FieldErrors,
    field: &'static str,
    value: &str,
    max: usize,
) -> String {
    text(errors, field, value, max, false, true)
}

/// An integer field given as a JSON number or a form string, within bounds;
/// `None` (absent or empty) keeps `default`.
pub fn int_field(
    errors: &mut FieldErrors,
    field: &'static str,
    v: Option<&Value>,
    default: i64,
    max: i64,
) -> i64 {
    let parsed = match v {
        None | Some(Value::Null) => return default,
        Some(Value::String(s)) if s.trim().is_empty() => return default,
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        Some(_) => None,
    };
    match parsed {
        Some(n) if (0..=max).contains(&n) => n,
        Some(_) => {
            errors.insert(
                field,
                FieldError::with_detail("err.out_of_range", format!("0..{max}")),
            );
            default
        }
        None => {
            errors.insert(field, FieldError::new("err.not_integer"));
            default
        }
    }
}

/// The words a boolean may be written as (forms send `on`; query strings
/// and hand-written JSON use the others); anything else is no boolean.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// A boolean given as a JSON bool, 0 or 1, or one of [`parse_bool`]'s
/// words; absent or null keeps `default`. Any other value is an error on
/// `field` (never silently false).
pub fn bool_field(
    errors: &mut FieldErrors,
    field: &'static str,
    v: Option<&Value>,
    default: bool,
) -> bool {
    let parsed = match v {
        None | Some(Value::Null) => return default,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => parse_bool(s),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Some(Value::Array(_) | Value::Object(_)) => None,
    };
    parsed.unwrap_or_else(|| {
        errors.insert(field, FieldError::new("err.not_boolean"));
        default
    })
}

/// A DNS name of letters, digits and hyphens (labels of 1 to 63, no hyphen
/// at either end, 253 at most in all), such as `apps.example.com`.
pub fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `Some(None)` for an explicit JSON null, `None` when the key is absent.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// An optional e-mail address (trimmed): one `@` with text on both sides, a
/// dot in the domain, no spaces or control characters, at most 254
/// characters.
pub fn email_field(errors: &mut FieldErrors, field: &'static str, value: &str) -> String {
    let before = errors.len();
    let v = optional_text(errors, field, value, 254);
    if v.is_empty() || errors.len() > before {
        return v;
    }
    let ok = !v
        .chars()
        .any(|c| c.is_whitespace() || "<>,;:\"'".contains(c))
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !ok {
        errors.insert(field, FieldError::new("err.delivery.email_format"));
    }
    v
}

/// An optional phone number (trimmed): digits with `+`, spaces, `-`, `(`,
/// `)`, at most 32 characters and at least 5 digits.
pub fn phone_field(errors: &mut FieldErrors, field: &'static str, value: &str) -> String {
    let before = errors.len();
    let v = optional_text(errors, field, value, 32);
    if v.is_empty() || errors.len() > before {
        return v;
    }
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let ok = digits >= 5 && v.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c));
    if !ok {
        errors.insert(field, FieldError::new("err.delivery.phone_format"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn texts_refuse_control_characters_and_multiline_ones_allow_line_breaks() {
        let mut e = FieldErrors::new();
        assert_eq!(required_text(&mut e, "name", "  train ", 10), "train");
        assert_eq!(
            optional_text(&mut e, "region", "华东 一区", 10),
            "华东 一区"
        );
        let remark = multiline_text(&mut e, "remark", "line one\r\n\tline two", 100);
        assert_eq!(remark, "line one\r\n\tline two");
        assert!(e.is_empty(), "{e:?}");
        for bad in [
            "evil\x1b[2Jname",
            "bell\x07",
            "two\nlines",
            "cr\rname",
            "tab\tname",
            "del\x7f",
            "nul\0x",
            "c1\u{9b}31m",
            "rtl\u{202e}gpj.exe",
            "zero\u{200b}width",
        ] {
            let mut e = FieldErrors::new();
            required_text(&mut e, "name", bad, 100);
            assert_eq!(e["name"].key, "err.control_char", "{bad:?}");
        }
        let mut e = FieldErrors::new();
        multiline_text(&mut e, "remark", "ok\n\x1b]0;title\x07", 100);
        assert_eq!(e["remark"].key, "err.control_char");
        assert_eq!(e["remark"].detail.as_deref(), Some("U+001B"));
    }

    #[test]
    fn dns_names() {
        for ok in ["apps.example.com", "localhost", "a-1.b2"] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in [
            "", "a..b", "-a.com", "a-.com", "a b.com", "*.x.com", "ä.com",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn booleans_accept_only_boolean_values() {
        let mut e = FieldErrors::new();
        for (v, want) in [
            (json!(true), true),
            (json!(false), false),
            (json!(1), true),
            (json!(0), false),
            (json!("on"), true),
            (json!("TRUE"), true),
            (json!("no"), false),
            (json!("0"), false),
        ] {
            assert_eq!(bool_field(&mut e, "listed", Some(&v), !want), want, "{v}");
        }
        assert!(bool_field(&mut e, "listed", None, true));
        assert!(!bool_field(&mut e, "listed", Some(&Value::Null), false));
        assert!(e.is_empty(), "{e:?}");
        for bad in [
            json!("maybe"),
            json!("enabled"),
            json!(2),
            json!(""),
            json!([true]),
        ] {
            let mut e = FieldErrors::new();
            assert!(bool_field(&mut e, "tls_enabled", Some(&bad), true));
            assert_eq!(e["tls_enabled"].key, "err.not_boolean", "{bad}");
        }
    }

    #[test]
    fn emails_and_phones() {
        let mut e = FieldErrors::new();
        for ok in ["", "a@b.cn", " li.lei@lab.example.com "] {
            email_field(&mut e, "email", ok);
        }
        assert!(e.is_empty(), "{e:?}");
        for bad in [
            "a", "a@b", "@b.cn", "a b@c.cn", "a@b@c.cn", "a@.cn", "<a@b.cn>",
        ] {
            let mut e = FieldErrors::new();
            email_field(&mut e, "email", bad);
            assert_eq!(e["email"].key, "err.delivery.email_format", "{bad}");
        }
        let mut e = FieldErrors::new();
        email_field(&mut e, "email", "a\u{202e}@b.cn");
        assert_eq!(e["email"].key, "err.control_char");
        let mut e = FieldErrors::new();
        for ok in ["", "+86 138-0013-8000", "(010) 6552 9988"] {
            phone_field(&mut e, "phone", ok);
        }
        assert!(e.is_empty(), "{e:?}");
        for bad in ["12", "call me", "+86 138 0013 8000 ext. 5"] {
            let mut e = FieldErrors::new();
            phone_field(&mut e, "phone", bad);
            assert!(e.contains_key("phone"), "{bad}");
        }
        let mut e = FieldErrors::new();
        phone_field(&mut e, "phone", "138\x1b0013");
        assert_eq!(e["phone"].key, "err.control_char");
    }
}
