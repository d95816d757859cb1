//! Field parsers shared by every form and JSON body: trimmed texts with a
//! length limit, bounded integers and booleans that arrive as JSON values or
//! form strings. Each records a translatable error under the field's name.

use serde_json::Value;

use crate::error::{FieldError, FieldErrors};

/// A required, trimmed text of at most `max` characters.
pub fn required_text(
    errors: &mut FieldErrors,
    field: &'static str,
    value: &str,
    max: usize,
) -> String {
    let v = value.trim();
    if v.is_empty() {
        errors.insert(field, FieldError::new("err.required"));
    } else if v.chars().count() > max {
        errors.insert(
            field,
            FieldError::with_detail("err.too_long", max.to_string()),
        );
    }
    v.to_string()
}

/// An optional text of at most `max` characters (trimmed).
pub fn optional_text(
    errors: &mut FieldErrors,
    field: &'static str,
    value: &str,
    max: usize,
) -> String {
    let v = value.trim();
    if v.chars().count() > max {
        errors.insert(
            field,
            FieldError::with_detail("err.too_long", max.to_string()),
        );
    }
    v.to_string()
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

/// A boolean given as JSON bool or a form value ("1", "true", "on").
pub fn bool_field(v: Option<&Value>, default: bool) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "1" | "true" | "on" | "yes"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => default,
    }
}

/// An optional e-mail address (trimmed): one `@` with text on both sides, a
/// dot in the domain, no spaces, at most 254 characters.
pub fn email_field(errors: &mut FieldErrors, field: &'static str, value: &str) -> String {
    let v = value.trim();
    if v.is_empty() {
        return String::new();
    }
    let ok = v.len() <= 254
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;:\"'".contains(c))
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
    v.to_string()
}

/// An optional phone number (trimmed): digits with `+`, spaces, `-`, `(`,
/// `)`, at most 32 characters and at least 5 digits.
pub fn phone_field(errors: &mut FieldErrors, field: &'static str, value: &str) -> String {
    let v = value.trim();
    if v.is_empty() {
        return String::new();
    }
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let ok = v.chars().count() <= 32
        && digits >= 5
        && v.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c));
    if !ok {
        errors.insert(field, FieldError::new("err.delivery.phone_format"));
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(e.contains_key("email"), "{bad}");
        }
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
    }
}
