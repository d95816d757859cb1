//! Values of an HTML form as pages hold them: what was submitted (to show it
//! again with its errors) or an entity's current values, as strings.

use std::collections::HashMap;

use serde_json::Value;

/// What a form shows: the submitted strings, or an entity's current values.
#[derive(Debug, Default, Clone)]
pub struct FormValues(HashMap<String, String>);

impl FormValues {
    /// The value of `key`; empty when absent.
    pub fn v(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }
    /// A checkbox: ticked when it came as a true word (`1`, `on`, ...).
    pub fn checked(&self, key: &str) -> bool {
        crate::validate::parse_bool(self.v(key)) == Some(true)
    }
    /// The value as the text field of an input struct.
    pub fn text(&self, key: &str) -> Option<String> {
        Some(self.v(key).to_string())
    }
    /// The value as a JSON string, for fields the validators parse.
    pub fn value(&self, key: &str) -> Option<Value> {
        Some(Value::String(self.v(key).to_string()))
    }
    /// A checkbox for the validators: unticked (absent or empty) is false,
    /// a ticked one's value goes as sent, so that a value that is no
    /// boolean is refused like in JSON.
    pub fn bool_value(&self, key: &str) -> Option<Value> {
        Some(match self.v(key) {
            "" => Value::Bool(false),
            sent => Value::String(sent.to_string()),
        })
    }
    pub fn from_map(map: HashMap<String, String>) -> Self {
        Self(map)
    }
    pub fn from_pairs(pairs: &[(&str, String)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }
}
