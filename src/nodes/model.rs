//! Compute nodes (算力节点): the type, what an API/page may see of it, and
//! input validation. Pure: sealing happens in `mod.rs`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::docker::{EndpointKind, check_cert_pem, check_key_pem, parse_endpoint};
use crate::error::{FieldError, FieldErrors};
use crate::ids::NodeId;
use crate::validate::{bool_field, int_field, multiline_text, optional_text, required_text};

/// A node's reachability as the health loop last saw it (`nodes.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unknown,
    Online,
    Unreachable,
}

crate::text_enum!(Status {
    Unknown => "unknown",
    Online => "online",
    Unreachable => "unreachable",
});

/// What a node's instances hold (`node_usage`, kept by the schema's
/// triggers in the transaction that reserves), as the node list shows it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Used {
    pub instances: i64,
    pub gpus: i64,
    pub cpu_cores: i64,
    pub memory_gb: i64,
}

impl Used {
    /// What is left of `total` after `used` (never below 0: an admin may
    /// lower a node's figures under what is placed on it). By reference:
    /// templates pass their fields so.
    pub fn free(&self, total: &i64, used: &i64) -> i64 {
        (total - used).max(0)
    }
}

/// A node as stored, minus the sealed values (only whether they exist).
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: NodeId,
    pub name: String,
    pub region: String,
    pub cpu_cores: i64,
    pub memory_gb: i64,
    pub system_disk_gb: i64,
    pub data_disk_gb: i64,
    pub public_ip: String,
    pub private_ip: String,
    pub ssh_port: i64,
    pub username: String,
    pub has_password: bool,
    pub gpu_name: String,
    pub gpu_count: i64,
    pub docker_endpoint: String,
    pub tls_enabled: bool,
    pub tls_ca_cert: String,
    pub tls_client_cert: String,
    pub has_client_key: bool,
    pub listed: bool,
    pub remark: String,
    pub status: Status,
    pub last_seen_at: Option<i64>,
    pub last_error: String,
    /// The last Test connection / health probe result (engine facts).
    pub last_report: Option<Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Node {
    /// A TCP endpoint without TLS: anyone reaching the port controls the host.
    pub fn exposed(&self) -> bool {
        !self.tls_enabled && self.docker_endpoint.starts_with("tcp://")
    }
}

/// Create/update body. Absent keys keep the old value. For `password` and
/// `tls_client_key`: absent or "" keeps the sealed value, `null` clears it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct NodeInput {
    pub name: Option<String>,
    pub region: Option<String>,
    pub cpu_cores: Option<Value>,
    pub memory_gb: Option<Value>,
    pub system_disk_gb: Option<Value>,
    pub data_disk_gb: Option<Value>,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub ssh_port: Option<Value>,
    pub username: Option<String>,
    #[serde(deserialize_with = "crate::validate::double_option")]
    pub password: Option<Option<String>>,
    pub gpu_name: Option<String>,
    pub gpu_count: Option<Value>,
    pub docker_endpoint: Option<String>,
    pub tls_enabled: Option<Value>,
    pub tls_ca_cert: Option<String>,
    pub tls_client_cert: Option<String>,
    #[serde(deserialize_with = "crate::validate::double_option")]
    pub tls_client_key: Option<Option<String>>,
    pub listed: Option<Value>,
    pub remark: Option<String>,
}

/// What happens to a sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChange {
    Keep,
    Clear,
    Set(String),
}

impl SecretChange {
    fn of(v: &Option<Option<String>>) -> Self {
        match v {
            None => SecretChange::Keep,
            Some(None) => SecretChange::Clear,
            Some(Some(s)) if s.is_empty() => SecretChange::Keep,
            Some(Some(s)) => SecretChange::Set(s.clone()),
        }
    }
}

/// The validated new plain fields of a node, plus the secret changes.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFields {
    pub name: String,
    pub region: String,
    pub cpu_cores: i64,
    pub memory_gb: i64,
    pub system_disk_gb: i64,
    pub data_disk_gb: i64,
    pub public_ip: String,
    pub private_ip: String,
    pub ssh_port: i64,
    pub username: String,
    pub gpu_name: String,
    pub gpu_count: i64,
    pub docker_endpoint: String,
    pub tls_enabled: bool,
    pub tls_ca_cert: String,
    pub tls_client_cert: String,
    pub listed: bool,
    pub remark: String,
}

pub struct Validated {
    pub fields: NodeFields,
    pub password: SecretChange,
    pub client_key: SecretChange,
}

impl NodeFields {
    pub fn empty() -> Self {
        Self {
            name: String::new(),
            region: String::new(),
            cpu_cores: 0,
            memory_gb: 0,
            system_disk_gb: 0,
            data_disk_gb: 0,
            public_ip: String::new(),
            private_ip: String::new(),
            ssh_port: 22,
            username: String::new(),
            gpu_name: String::new(),
            gpu_count: 0,
            docker_endpoint: String::new(),
            tls_enabled: true,
            tls_ca_cert: String::new(),
            tls_client_cert: String::new(),
            listed: true,
            remark: String::new(),
        }
    }

    pub fn of(n: &Node) -> Self {
        Self {
            name: n.name.clone(),
            region: n.region.clone(),
            cpu_cores: n.cpu_cores,
            memory_gb: n.memory_gb,
            system_disk_gb: n.system_disk_gb,
            data_disk_gb: n.data_disk_gb,
            public_ip: n.public_ip.clone(),
            private_ip: n.private_ip.clone(),
            ssh_port: n.ssh_port,
            username: n.username.clone(),
            gpu_name: n.gpu_name.clone(),
            gpu_count: n.gpu_count,
            docker_endpoint: n.docker_endpoint.clone(),
            tls_enabled: n.tls_enabled,
            tls_ca_cert: n.tls_ca_cert.clone(),
            tls_client_cert: n.tls_client_cert.clone(),
            listed: n.listed,
            remark: n.remark.clone(),
        }
    }
}

fn ip(errors: &mut FieldErrors, field: &'static str, v: String) -> String {
    if !v.is_empty() && v.parse::<IpAddr>().is_err() {
        errors.insert(field, FieldError::new("err.ip_format"));
    }
    v
}

/// Overlays `input` on `base` and checks every rule. `has_key` says whether a
/// sealed client key exists already (it then need not be sent again).
pub fn validate(
    base: NodeFields,
    input: &NodeInput,
    has_key: bool,
) -> Result<Validated, FieldErrors> {
    let mut e = FieldErrors::new();
    let t = |v: &Option<String>, old: String| v.clone().unwrap_or(old);
    let name = required_text(&mut e, "name", &t(&input.name, base.name), 64);
    let public_ip = required_text(
        &mut e,
        "public_ip",
        &t(&input.public_ip, base.public_ip),
        64,
    );
    let private_ip = required_text(
        &mut e,
        "private_ip",
        &t(&input.private_ip, base.private_ip),
        64,
    );
    let mut ssh_port = int_field(
        &mut e,
        "ssh_port",
        input.ssh_port.as_ref(),
        base.ssh_port,
        65_535,
    );
    if ssh_port == 0 {
        e.insert(
            "ssh_port",
            FieldError::with_detail("err.out_of_range", "1..65535"),
        );
        ssh_port = base.ssh_port;
    }
    let fields = NodeFields {
        region: optional_text(&mut e, "region", &t(&input.region, base.region), 100),
        cpu_cores: int_field(
            &mut e,
            "cpu_cores",
            input.cpu_cores.as_ref(),
            base.cpu_cores,
            crate::catalog::model::MAX_CPUS,
        ),
        memory_gb: int_field(
            &mut e,
            "memory_gb",
            input.memory_gb.as_ref(),
            base.memory_gb,
            crate::catalog::model::MAX_MEMORY_GB,
        ),
        system_disk_gb: int_field(
            &mut e,
            "system_disk_gb",
            input.system_disk_gb.as_ref(),
            base.system_disk_gb,
            crate::catalog::model::MAX_DISK_GB,
        ),
        data_disk_gb: int_field(
            &mut e,
            "data_disk_gb",
            input.data_disk_gb.as_ref(),
            base.data_disk_gb,
            crate::catalog::model::MAX_DISK_GB,
        ),
        public_ip: ip(&mut e, "public_ip", public_ip),
        private_ip: ip(&mut e, "private_ip", private_ip),
        ssh_port,
        username: optional_text(&mut e, "username", &t(&input.username, base.username), 64),
        gpu_name: optional_text(&mut e, "gpu_name", &t(&input.gpu_name, base.gpu_name), 100),
        gpu_count: int_field(
            &mut e,
            "gpu_count",
            input.gpu_count.as_ref(),
            base.gpu_count,
            crate::catalog::model::MAX_GPUS,
        ),
        docker_endpoint: optional_text(
            &mut e,
            "docker_endpoint",
            &t(&input.docker_endpoint, base.docker_endpoint),
            255,
        ),
        tls_enabled: bool_field(
            &mut e,
            "tls_enabled",
            input.tls_enabled.as_ref(),
            base.tls_enabled,
        ),
        tls_ca_cert: t(&input.tls_ca_cert, base.tls_ca_cert).trim().to_string(),
        tls_client_cert: t(&input.tls_client_cert, base.tls_client_cert)
            .trim()
            .to_string(),
        listed: bool_field(&mut e, "listed", input.listed.as_ref(), base.listed),
        remark: multiline_text(&mut e, "remark", &t(&input.remark, base.remark), 500),
        name,
    };
    let client_key = SecretChange::of(&input.tls_client_key);
    check_endpoint(&fields, &client_key, has_key, &mut e);
    let password = SecretChange::of(&input.password);
    if let SecretChange::Set(p) = &password
        && p.chars().count() > 256
    {
        e.insert("password", FieldError::with_detail("err.too_long", "256"));
    }
    if e.is_empty() {
        Ok(Validated {
            fields,
            password,
            client_key,
        })
    } else {
        Err(e)
    }
}

/// A tcp endpoint with TLS on needs a CA, a client certificate and a client
/// key that parse.
fn check_endpoint(f: &NodeFields, key: &SecretChange, has_key: bool, e: &mut FieldErrors) {
    if f.docker_endpoint.is_empty() {
        return;
    }
    let kind = match parse_endpoint(&f.docker_endpoint) {
        Ok(k) => k,
        Err(err) => {
            e.insert(
                "docker_endpoint",
                FieldError::with_detail("err.endpoint", err.to_string()),
            );
            return;
        }
    };
    if !(f.tls_enabled && matches!(kind, EndpointKind::Tcp { .. })) {
        return;
    }
    for (field, text) in [
        ("tls_ca_cert", &f.tls_ca_cert),
        ("tls_client_cert", &f.tls_client_cert),
    ] {
        if text.is_empty() {
            e.insert(field, FieldError::new("err.required_for_tls"));
        } else if let Err(why) = check_cert_pem(text) {
            e.insert(field, FieldError::with_detail("err.pem", why));
        }
    }
    match key {
        SecretChange::Set(k) => {
            if let Err(why) = check_key_pem(k) {
                e.insert("tls_client_key", FieldError::with_detail("err.pem", why));
            }
        }
        SecretChange::Keep if has_key => {}
        SecretChange::Keep | SecretChange::Clear => {
            e.insert("tls_client_key", FieldError::new("err.required_for_tls"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> NodeInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn required_fields_ips_and_port() {
        let e = validate(NodeFields::empty(), &NodeInput::default(), false)
            .err()
            .unwrap();
        assert!(
            e.contains_key("name") && e.contains_key("public_ip") && e.contains_key("private_ip")
        );
        let bad = input(
            json!({"name": "n", "public_ip": "1.2.3", "private_ip": "10.0.0.300", "ssh_port": 70000}),
        );
        let e = validate(NodeFields::empty(), &bad, false).err().unwrap();
        assert_eq!(e["public_ip"].key, "err.ip_format");
        assert_eq!(e["private_ip"].key, "err.ip_format");
        assert_eq!(e["ssh_port"].key, "err.out_of_range");
        let ok = input(json!({"name": "n", "public_ip": "203.0.113.5", "private_ip": "fd00::5"}));
        let v = validate(NodeFields::empty(), &ok, false).ok().unwrap();
        assert_eq!(
            (v.fields.ssh_port, v.fields.tls_enabled, v.fields.listed),
            (22, true, true)
        );
    }

    #[test]
    fn tls_on_tcp_needs_parsable_pems() {
        let base = input(
            json!({"name": "n", "public_ip": "1.2.3.4", "private_ip": "10.0.0.4", "docker_endpoint": "tcp://10.0.0.4:2376"}),
        );
        let e = validate(NodeFields::empty(), &base, false).err().unwrap();
        for f in ["tls_ca_cert", "tls_client_cert", "tls_client_key"] {
            assert_eq!(e[f].key, "err.required_for_tls", "{f}");
        }
        let mut garbage = base.clone();
        garbage.tls_ca_cert =
            Some("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----".into());
        garbage.tls_client_key = Some(Some("not a key".into()));
        let e = validate(NodeFields::empty(), &garbage, false)
            .err()
            .unwrap();
        assert_eq!(e["tls_ca_cert"].key, "err.pem");
        assert_eq!(e["tls_client_key"].key, "err.pem");
        // TLS off on tcp, or a unix socket: no certificates needed.
        let mut plain = base.clone();
        plain.tls_enabled = Some(json!(false));
        assert!(validate(NodeFields::empty(), &plain, false).is_ok());
        let mut unix = base;
        unix.docker_endpoint = Some("unix:///var/run/docker.sock".into());
        assert!(validate(NodeFields::empty(), &unix, false).is_ok());
    }

    #[test]
    fn bad_endpoints_are_named() {
        for bad in ["http://x", "tcp://", "unix://relative", "tcp://h:99999"] {
            let i = input(
                json!({"name": "n", "public_ip": "1.2.3.4", "private_ip": "10.0.0.4", "docker_endpoint": bad}),
            );
            let e = validate(NodeFields::empty(), &i, false).err().unwrap();
            assert_eq!(e["docker_endpoint"].key, "err.endpoint", "{bad}");
        }
    }

    #[test]
    fn secrets_keep_set_or_clear() {
        assert_eq!(SecretChange::of(&None), SecretChange::Keep);
        assert_eq!(
            SecretChange::of(&Some(Some(String::new()))),
            SecretChange::Keep
        );
        assert_eq!(SecretChange::of(&Some(None)), SecretChange::Clear);
        assert_eq!(
            SecretChange::of(&Some(Some("x".into()))),
            SecretChange::Set("x".into())
        );
    }
}
