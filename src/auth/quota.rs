//! Tenant quotas (配额) as input: the four `quota_*` fields of a tenant
//! patch (API and form), checked and laid over the quotas in force.

use serde_json::Value;

use super::model::{Quota, Tenant};
use crate::error::{FieldError, FieldErrors};

/// The quota fields, in the order [`patch`] takes and [`apply`] lays them.
pub const FIELDS: [&str; 4] = [
    "quota_gpus",
    "quota_instances",
    "quota_cpu_cores",
    "quota_memory_gb",
];

/// One quota field: `None` when absent (unchanged), `Some(None)` for `null`
/// (unlimited), `Some(Some(n))` for a whole number n ≥ 0; anything else is
/// a field error.
fn field(
    errors: &mut FieldErrors,
    name: &'static str,
    v: &Option<Option<Value>>,
) -> Option<Option<i64>> {
    match v.as_ref()? {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) if n >= 0 => Some(Some(n)),
            Some(_) => {
                errors.insert(name, FieldError::with_detail("err.out_of_range", "≥ 0"));
                None
            }
            None => {
                errors.insert(name, FieldError::new("err.not_integer"));
                None
            }
        },
        Some(_) => {
            errors.insert(name, FieldError::new("err.not_integer"));
            None
        }
    }
}

/// The patch's quota fields (in [`FIELDS`] order); `None` when it names none.
pub fn patch(
    errors: &mut FieldErrors,
    given: [&Option<Option<Value>>; 4],
) -> Option<[Option<Option<i64>>; 4]> {
    let named = given.iter().any(|v| v.is_some());
    let mut out = [None; 4];
    for ((slot, name), v) in out.iter_mut().zip(FIELDS).zip(given) {
        *slot = field(errors, name, v);
    }
    named.then_some(out)
}

/// `q` laid over `before`: absent fields keep theirs.
pub fn apply(before: Quota, q: [Option<Option<i64>>; 4]) -> Quota {
    Quota {
        quota_gpus: q[0].unwrap_or(before.quota_gpus),
        quota_instances: q[1].unwrap_or(before.quota_instances),
        quota_cpu_cores: q[2].unwrap_or(before.quota_cpu_cores),
        quota_memory_gb: q[3].unwrap_or(before.quota_memory_gb),
    }
}

/// A form's quota input: absent stays absent, blank is unlimited, digits are
/// a number; anything else is passed on as text (refused as not a number).
pub fn from_form(v: Option<&str>) -> Option<Option<Value>> {
    let v = v?.trim();
    Some(if v.is_empty() {
        None
    } else {
        Some(
            v.parse::<i64>()
                .map_or_else(|_| Value::from(v), Value::from),
        )
    })
}

/// A quota as a form shows it: blank for unlimited.
pub fn to_form(q: Option<i64>) -> String {
    q.map(|n| n.to_string()).unwrap_or_default()
}

/// The quota table of a tenant's page.
pub fn rows(t: &Tenant) -> Vec<(&'static str, String, i64)> {
    let (q, u) = (t.quota, t.usage);
    let to = to_form;
    vec![
        ("tenants.quota_gpus", to(q.quota_gpus), u.gpus),
        (
            "tenants.quota_instances",
            to(q.quota_instances),
            u.instances,
        ),
        (
            "tenants.quota_cpu_cores",
            to(q.quota_cpu_cores),
            u.cpu_cores,
        ),
        (
            "tenants.quota_memory_gb",
            to(q.quota_memory_gb),
            u.memory_gb,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quota_fields_parse_and_refuse_by_name() {
        let mut e = FieldErrors::new();
        let (four, null, absent) = (Some(Some(json!(4))), Some(None), None);
        let got = patch(&mut e, [&four, &null, &absent, &Some(Some(json!(0)))]);
        assert!(e.is_empty());
        assert_eq!(got, Some([Some(Some(4)), Some(None), None, Some(Some(0))]));
        let q = apply(
            Quota {
                quota_instances: Some(9),
                quota_cpu_cores: Some(7),
                ..Quota::default()
            },
            got.unwrap(),
        );
        assert_eq!(
            (
                q.quota_gpus,
                q.quota_instances,
                q.quota_cpu_cores,
                q.quota_memory_gb
            ),
            (Some(4), None, Some(7), Some(0))
        );
        assert_eq!(patch(&mut e, [&None, &None, &None, &None]), None);
        let bad = [
            Some(Some(json!(-1))),
            Some(Some(json!(1.5))),
            Some(Some(json!("3"))),
            Some(Some(json!(true))),
        ];
        patch(&mut e, [&bad[0], &bad[1], &bad[2], &bad[3]]);
        assert_eq!(
            e.keys().copied().collect::<Vec<_>>(),
            [
                "quota_cpu_cores",
                "quota_gpus",
                "quota_instances",
                "quota_memory_gb"
            ]
        );
        assert_eq!(e["quota_gpus"].key, "err.out_of_range");
        assert_eq!(e["quota_instances"].key, "err.not_integer");
        assert_eq!(from_form(Some(" ")), Some(None));
        assert_eq!(from_form(Some("12")), Some(Some(json!(12))));
        assert_eq!(from_form(Some("x")), Some(Some(json!("x"))));
        assert_eq!(from_form(None), None);
    }
}
