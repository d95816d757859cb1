//! Datasets' types and rules, free of I/O: names (a mount point and an SSH
//! login part, so a plain word), owners, and the list of datasets a new
//! instance asks for.

use serde::Serialize;
use serde_json::Value;

use crate::error::{FieldError, FieldErrors};
use crate::ids::NodeId;

/// A dataset as users see it.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub id: i64,
    pub name: String,
    pub node_id: NodeId,
    pub node_name: String,
    /// The owning tenant (a user's dataset: the user's tenant).
    pub tenant_id: Option<i64>,
    /// The owning user; `None`: the tenant's dataset.
    pub user_id: Option<i64>,
    /// The tenant's or the user's name.
    pub owner: String,
    pub description: String,
    /// Bytes in the volume when last measured.
    pub size_bytes: i64,
    /// When it was measured (`None`: changed since, measured soon).
    pub size_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Where instances see it.
    pub mount_path: String,
    #[serde(skip)]
    pub volume_name: String,
}

impl Dataset {
    pub fn is_tenants(&self) -> bool {
        self.user_id.is_none()
    }
}

/// Where a dataset is mounted in instances.
pub fn mount_path(name: &str) -> String {
    format!("/datasets/{name}")
}

/// Where a dataset's volume is in its transfer container.
pub const TRANSFER_MOUNT: &str = "/dataset";

/// A dataset's name: 1 to 64 letters, digits, `.`, `_` or `-`, starting
/// with a letter or digit (no `/`, no NUL, no spaces: it is a mount point
/// and part of an SSH login).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Who owns a new dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    /// The creator.
    User,
    /// The creator's tenant (or, for an admin, the tenant named).
    Tenant,
}

impl OwnerKind {
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "" | "user" => Some(OwnerKind::User),
            "tenant" => Some(OwnerKind::Tenant),
            _ => None,
        }
    }
}

/// A list of dataset ids: a JSON array of numbers, or a text of numbers
/// separated by commas (a form); empty or absent: none. Duplicates go.
pub fn ids_field(errors: &mut FieldErrors, field: &'static str, v: Option<&Value>) -> Vec<i64> {
    let mut bad = false;
    let mut ids: Vec<i64> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| {
                match i {
                    Value::Number(n) => n.as_i64().filter(|n| *n > 0),
                    Value::String(s) => s.trim().parse().ok().filter(|n: &i64| *n > 0),
                    _ => None,
                }
                .or_else(|| {
                    bad = true;
                    None
                })
            })
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                p.parse().ok().filter(|n: &i64| *n > 0).or_else(|| {
                    bad = true;
                    None
                })
            })
            .collect(),
        Some(_) => {
            bad = true;
            Vec::new()
        }
    };
    if bad {
        errors.insert(field, FieldError::new("err.not_integer_list"));
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_plain_words() {
        for ok in ["imagenet", "coco-2017", "a", "ds_1.v2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "a\0b",
            "数据",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(mount_path("coco"), "/datasets/coco");
    }

    #[test]
    fn id_lists_come_as_arrays_or_text() {
        let mut e = FieldErrors::new();
        assert_eq!(ids_field(&mut e, "d", Some(&json!([3, 1, 3]))), [1, 3]);
        assert_eq!(ids_field(&mut e, "d", Some(&json!("2, 5,"))), [2, 5]);
        assert_eq!(ids_field(&mut e, "d", None), Vec::<i64>::new());
        assert_eq!(ids_field(&mut e, "d", Some(&json!(""))), Vec::<i64>::new());
        assert!(e.is_empty());
        ids_field(&mut e, "d", Some(&json!(["x"])));
        assert_eq!(e["d"].key, "err.not_integer_list");
        let mut e = FieldErrors::new();
        ids_field(&mut e, "d", Some(&json!({"a": 1})));
        assert!(e.contains_key("d"));
        assert_eq!(OwnerKind::parse("tenant"), Some(OwnerKind::Tenant));
        assert_eq!(OwnerKind::parse("nobody"), None);
    }
}
