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

/// `Some(None)` for an explicit JSON null, `None` when the key is absent.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}
