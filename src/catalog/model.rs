//! Images (镜像库) and product specs (产品规格): types, input validation and
//! the exact money rule. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{FieldError, FieldErrors};
use crate::validate::{bool_field, int_field, multiline_text, optional_text, required_text};

#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub description: String,
    pub source: String,
    pub listed: bool,
    pub remark: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    pub id: i64,
    pub name: String,
    pub gpu_model: String,
    pub gpu_count: i64,
    pub cpu_cores: i64,
    pub memory_gb: i64,
    pub system_disk_gb: i64,
    pub data_disk_gb: i64,
    /// Exact, in cents; shown as `price_per_hour`.
    #[serde(skip)]
    pub price_cents: i64,
    pub price_per_hour: f64,
    pub listed: bool,
    pub remark: String,
    /// The default lease length of its instances in days (none: open-ended).
    pub lease_days: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Spec {
    /// `12.50`-style text of the price.
    pub fn price_text(&self) -> String {
        format!("{}.{:02}", self.price_cents / 100, self.price_cents % 100)
    }
}

/// Checks an image reference against Docker's reference grammar
/// (`[registry[:port]/]path[:tag][@digest]`, lower-case repository).
pub fn check_image_reference(address: &str) -> Result<(), FieldError> {
    super::reference::parse(address)
        .map(|_| ())
        .map_err(|e| FieldError::with_detail("err.image_reference", e.to_string()))
}

/// A money amount with at most two decimals, as exact cents.
pub fn parse_cents(text: &str) -> Option<i64> {
    let t = text.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 2
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let cents = format!("{frac:0<2}").parse::<i64>().ok()?;
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

pub const MAX_PRICE_CENTS: i64 = 100_000_000; // 1,000,000.00 per hour

pub fn price_field(errors: &mut FieldErrors, v: Option<&Value>, default: i64) -> i64 {
    let text = match v {
        None | Some(Value::Null) => return default,
        Some(Value::String(s)) if s.trim().is_empty() => return default,
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => String::new(),
    };
    match parse_cents(&text) {
        Some(c) if c <= MAX_PRICE_CENTS => c,
        Some(_) => {
            errors.insert(
                "price_per_hour",
                FieldError::with_detail("err.out_of_range", "0..1000000"),
            );
            default
        }
        None => {
            errors.insert("price_per_hour", FieldError::new("err.price_format"));
            default
        }
    }
}

/// Request body of create and update: absent keys keep the old value (or
/// the default on create). Numbers may be JSON numbers or strings.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ImageInput {
    pub name: Option<String>,
    pub address: Option<String>,
    pub description: Option<String>,
    pub source: Option<String>,
    pub listed: Option<Value>,
    pub remark: Option<String>,
}

/// The validated new state of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFields {
    pub name: String,
    pub address: String,
    pub description: String,
    pub source: String,
    pub listed: bool,
    pub remark: String,
}

impl ImageFields {
    pub fn empty() -> Self {
        Self {
            name: String::new(),
            address: String::new(),
            description: String::new(),
            source: String::new(),
            listed: true,
            remark: String::new(),
        }
    }

    pub fn of(i: &Image) -> Self {
        Self {
            name: i.name.clone(),
            address: i.address.clone(),
            description: i.description.clone(),
            source: i.source.clone(),
            listed: i.listed,
            remark: i.remark.clone(),
        }
    }

    /// `base` overlaid with `input`, validated.
    pub fn merge(base: Self, input: &ImageInput) -> Result<Self, FieldErrors> {
        let mut e = FieldErrors::new();
        let pick = |v: &Option<String>, old: String| v.clone().unwrap_or(old);
        let name = required_text(&mut e, "name", &pick(&input.name, base.name), 100);
        let address = required_text(&mut e, "address", &pick(&input.address, base.address), 255);
        if !address.is_empty()
            && let Err(err) = check_image_reference(&address)
        {
            e.insert("address", err);
        }
        let out = Self {
            name,
            address,
            description: multiline_text(
                &mut e,
                "description",
                &pick(&input.description, base.description),
                2000,
            ),
            source: optional_text(&mut e, "source", &pick(&input.source, base.source), 255),
            listed: bool_field(&mut e, "listed", input.listed.as_ref(), base.listed),
            remark: multiline_text(&mut e, "remark", &pick(&input.remark, base.remark), 500),
        };
        if e.is_empty() { Ok(out) } else { Err(e) }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SpecInput {
    pub name: Option<String>,
    pub gpu_model: Option<String>,
    pub gpu_count: Option<Value>,
    pub cpu_cores: Option<Value>,
    pub memory_gb: Option<Value>,
    pub system_disk_gb: Option<Value>,
    pub data_disk_gb: Option<Value>,
    pub price_per_hour: Option<Value>,
    pub listed: Option<Value>,
    pub remark: Option<String>,
    /// Days; `0` or empty: open-ended.
    pub lease_days: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpecFields {
    pub name: String,
    pub gpu_model: String,
    pub gpu_count: i64,
    pub cpu_cores: i64,
    pub memory_gb: i64,
    pub system_disk_gb: i64,
    pub data_disk_gb: i64,
    pub price_cents: i64,
    pub listed: bool,
    pub remark: String,
    pub lease_days: Option<i64>,
}

/// Upper bounds: generous for one host, small enough to catch typos.
pub const MAX_GPUS: i64 = 64;
pub const MAX_CPUS: i64 = 1024;
pub const MAX_MEMORY_GB: i64 = 16_384;
pub const MAX_DISK_GB: i64 = 1_000_000;

impl SpecFields {
    pub fn empty() -> Self {
        Self {
            name: String::new(),
            gpu_model: String::new(),
            gpu_count: 1,
            cpu_cores: 0,
            memory_gb: 0,
            system_disk_gb: 0,
            data_disk_gb: 0,
            price_cents: 0,
            listed: true,
            remark: String::new(),
            lease_days: None,
        }
    }

    pub fn of(s: &Spec) -> Self {
        Self {
            name: s.name.clone(),
            gpu_model: s.gpu_model.clone(),
            gpu_count: s.gpu_count,
            cpu_cores: s.cpu_cores,
            memory_gb: s.memory_gb,
            system_disk_gb: s.system_disk_gb,
            data_disk_gb: s.data_disk_gb,
            price_cents: s.price_cents,
            listed: s.listed,
            remark: s.remark.clone(),
            lease_days: s.lease_days,
        }
    }

    pub fn merge(base: Self, i: &SpecInput) -> Result<Self, FieldErrors> {
        let mut e = FieldErrors::new();
        let name = required_text(&mut e, "name", &i.name.clone().unwrap_or(base.name), 100);
        let gpu_model = required_text(
            &mut e,
            "gpu_model",
            &i.gpu_model.clone().unwrap_or(base.gpu_model),
            100,
        );
        let out = Self {
            name,
            gpu_model,
            gpu_count: int_field(
                &mut e,
                "gpu_count",
                i.gpu_count.as_ref(),
                base.gpu_count,
                MAX_GPUS,
            ),
            cpu_cores: int_field(
                &mut e,
                "cpu_cores",
                i.cpu_cores.as_ref(),
                base.cpu_cores,
                MAX_CPUS,
            ),
            memory_gb: int_field(
                &mut e,
                "memory_gb",
                i.memory_gb.as_ref(),
                base.memory_gb,
                MAX_MEMORY_GB,
            ),
            system_disk_gb: int_field(
                &mut e,
                "system_disk_gb",
                i.system_disk_gb.as_ref(),
                base.system_disk_gb,
                MAX_DISK_GB,
            ),
            data_disk_gb: int_field(
                &mut e,
                "data_disk_gb",
                i.data_disk_gb.as_ref(),
                base.data_disk_gb,
                MAX_DISK_GB,
            ),
            price_cents: price_field(&mut e, i.price_per_hour.as_ref(), base.price_cents),
            listed: bool_field(&mut e, "listed", i.listed.as_ref(), base.listed),
            remark: multiline_text(
                &mut e,
                "remark",
                &i.remark.clone().unwrap_or(base.remark),
                500,
            ),
            lease_days: match i.lease_days.as_ref() {
                None => base.lease_days,
                Some(v) => {
                    Some(int_field(&mut e, "lease_days", Some(v), 0, 3650)).filter(|d| *d > 0)
                }
            },
        };
        if e.is_empty() { Ok(out) } else { Err(e) }
    }

    pub fn price_text(&self) -> String {
        format!("{}.{:02}", self.price_cents / 100, self.price_cents % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_references_follow_dockers_grammar() {
        for ok in [
            "ubuntu",
            "nvidia/cuda:12.4.0-devel-ubuntu22.04",
            "registry.local:5000/ai/pytorch:2.3",
            "ghcr.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_image_reference(ok).is_ok(), "{ok}");
        }
        for bad in ["bad image", "a:", "://x", "Upper/Case", "x@sha256:short"] {
            assert!(check_image_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_is_exact_with_two_decimals() {
        assert_eq!(parse_cents("12.5"), Some(1250));
        assert_eq!(parse_cents("0.07"), Some(7));
        assert_eq!(parse_cents("3"), Some(300));
        for bad in ["1.234", "-1", "abc", "", ".5", "1e3"] {
            assert_eq!(parse_cents(bad), None, "{bad}");
        }
        let mut e = FieldErrors::new();
        assert_eq!(price_field(&mut e, Some(&json!(2.5)), 0), 250);
        assert_eq!(price_field(&mut e, Some(&json!("19.99")), 0), 1999);
        assert!(e.is_empty());
        price_field(&mut e, Some(&json!(0.125)), 0);
        assert!(e.contains_key("price_per_hour"));
    }

    #[test]
    fn spec_numbers_are_bounded_and_named() {
        let input = SpecInput {
            name: Some("4090x2".into()),
            gpu_model: Some("RTX 4090".into()),
            gpu_count: Some(json!(-1)),
            cpu_cores: Some(json!("x")),
            memory_gb: Some(json!(99_999)),
            ..Default::default()
        };
        let e = SpecFields::merge(SpecFields::empty(), &input).unwrap_err();
        assert_eq!(e["gpu_count"].key, "err.out_of_range");
        assert_eq!(e["cpu_cores"].key, "err.not_integer");
        assert_eq!(e["memory_gb"].key, "err.out_of_range");
        let ok = SpecInput {
            name: Some("4090x2".into()),
            gpu_model: Some("RTX 4090".into()),
            gpu_count: Some(json!("2")),
            price_per_hour: Some(json!("3.50")),
            ..Default::default()
        };
        let f = SpecFields::merge(SpecFields::empty(), &ok).unwrap();
        assert_eq!((f.gpu_count, f.price_cents, f.listed), (2, 350, true));
    }

    #[test]
    fn required_fields_are_named() {
        let e = ImageFields::merge(ImageFields::empty(), &ImageInput::default()).unwrap_err();
        assert!(e.contains_key("name") && e.contains_key("address"));
        let e = SpecFields::merge(SpecFields::empty(), &SpecInput::default()).unwrap_err();
        assert!(e.contains_key("name") && e.contains_key("gpu_model"));
    }
}
