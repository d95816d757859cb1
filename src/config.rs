//! Typed configuration: built-in defaults, then an optional TOML file, then the
//! command line / `GPUDOCK_*` environment (applied by `cli`). Validated at load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration, passed around as `Arc<Config>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// HTTPS (or, when `tls.enabled = false`, plain HTTP) listen address.
    pub listen: SocketAddr,
    /// SSH jumpbox listen address.
    pub ssh_listen: SocketAddr,
    /// The HTTPS proxy to web apps in instances: its first (or only) port.
    pub proxy_listen: SocketAddr,
    /// Where the database, the age identity and the TLS pair live.
    pub data_dir: PathBuf,
    pub tls: TlsConfig,
    pub security: SecurityConfig,
    pub nodes: NodesConfig,
    pub instances: InstancesConfig,
    pub sessions: SessionsConfig,
    pub forwarding: ForwardingConfig,
    pub proxy: ProxyConfig,
    pub metrics: MetricsConfig,
    pub server: ServerConfig,
    pub accounts: AccountsConfig,
    pub files: FilesConfig,
    pub datasets: DatasetsConfig,
    pub leases: LeasesConfig,
}

/// Leases (租期): how often the checker runs and how long data is kept
/// after a lease ends (缓冲期) before the reclaim.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LeasesConfig {
    /// How often the lease checker looks at lease ends (reminders, stop at
    /// the end, reclaim after the buffer).
    pub check_interval_secs: u64,
    /// Days the stopped instance and its data volume are kept after the
    /// lease end before they are reclaimed.
    pub buffer_days: u32,
}

impl Default for LeasesConfig {
    fn default() -> Self {
        Self {
            check_interval_secs: 60,
            buffer_days: 3,
        }
    }
}

/// Telemetry: collection, the three storage tiers, the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Seconds between two collections of every node, GPU and instance.
    pub interval_secs: u64,
    pub raw_retention_hours: u64,
    pub hourly_retention_days: u64,
    pub daily_retention_days: u64,
    /// The open hour of raw samples is written this often (at most this
    /// much is lost if the process dies).
    pub flush_interval_secs: u64,
    /// One scrape of an agent or exporter may take this long.
    pub scrape_timeout_secs: u64,
    /// and answer this many bytes at most.
    pub scrape_max_bytes: u64,
    /// A GPU is idle when its utilisation stayed under this for `idle_minutes`.
    pub idle_util_percent: f64,
    pub idle_minutes: u64,
    /// A GPU at or above this temperature (°C) counts as hot.
    pub hot_temp_c: f64,
    /// Source addresses (IPs or CIDRs) that may read GET /metrics without a token.
    pub prometheus_allow: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            interval_secs: 15,
            raw_retention_hours: 48,
            hourly_retention_days: 90,
            daily_retention_days: 730,
            flush_interval_secs: 60,
            scrape_timeout_secs: 5,
            scrape_max_bytes: 8 << 20,
            idle_util_percent: 5.0,
            idle_minutes: 30,
            hot_temp_c: 85.0,
            prometheus_allow: Vec::new(),
        }
    }
}

impl MetricsConfig {
    /// `prometheus_allow` parsed (a bare address is a /32 or /128 network).
    pub fn allowed_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.prometheus_allow
            .iter()
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("`{s}` is not an IP address or CIDR network"))
            })
            .collect()
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let at_least_1 = [
            ("metrics.interval_secs", self.interval_secs),
            ("metrics.raw_retention_hours", self.raw_retention_hours),
            ("metrics.hourly_retention_days", self.hourly_retention_days),
            ("metrics.daily_retention_days", self.daily_retention_days),
            ("metrics.flush_interval_secs", self.flush_interval_secs),
            ("metrics.idle_minutes", self.idle_minutes),
        ];
        if let Some((f, _)) = at_least_1.iter().find(|(_, v)| *v == 0) {
            return Err((f, "must be at least 1".into()));
        }
        if !(1..=120).contains(&self.scrape_timeout_secs) {
            return Err((
                "metrics.scrape_timeout_secs",
                "must be between 1 and 120".into(),
            ));
        }
        if self.scrape_max_bytes < 65_536 {
            return Err(("metrics.scrape_max_bytes", "must be at least 65536".into()));
        }
        self.allowed_networks()
            .map(|_| ())
            .map_err(|e| ("metrics.prometheus_allow", e))
    }
}

/// How gpudock names itself in what it shows users (links, SSH lines,
/// prices).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// The public host name (or IP), optionally with `:port` for the web
    /// address; empty: the address the browser used.
    pub public_host: String,
    /// The currency sign or code shown before prices (e.g. "¥", "US$").
    pub currency: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            public_host: String::new(),
            currency: "¥".into(),
        }
    }
}

/// Account opening (开户申请) and cloud users.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AccountsConfig {
    /// Pending requests older than this many days expire.
    pub pending_expiry_days: u32,
    /// Expired requests are deleted this many days after they expired.
    pub expired_retention_days: u32,
    /// Open the account as soon as a request is approved.
    pub process_on_approval: bool,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            pending_expiry_days: 14,
            expired_retention_days: 30,
            process_on_approval: false,
        }
    }
}

/// SSH port forwarding through the jumpbox (`ssh -L` to a port of an
/// instance).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ForwardingConfig {
    /// The global switch: tunnels are counted and limited like sessions,
    /// but what passes through them is not recorded.
    pub enabled: bool,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The HTTPS proxy that serves web apps of instances (Jupyter, TensorBoard)
/// on origins of their own, never the appliance's.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    pub enabled: bool,
    /// Without `base_domain`: each web service gets a port of its own, from
    /// `proxy_listen`'s port up to `ports` ports (one origin per app).
    pub ports: u16,
    /// With a wildcard DNS name and certificate: services are
    /// `https://<port>-<instance id>.<base_domain>` on `proxy_listen`.
    pub base_domain: String,
    /// The certificate (for `*.<base_domain>`) and key the proxy serves in
    /// domain mode; without a base domain, the appliance's own pair.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Where the proxy sends a browser that is not signed in to an app
    /// (gpudock's address, e.g. `https://gpu.example.com:8443`); empty: the
    /// proxy's host name (the base domain in domain mode) with `listen`'s port.
    pub appliance_url: String,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ports: 16,
            base_domain: String::new(),
            cert: None,
            key: None,
            appliance_url: String::new(),
        }
    }
}

/// File transfers (SFTP, scp, the web file browser).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FilesConfig {
    /// The largest file one web upload may carry, in bytes (SFTP and scp
    /// stream without a limit).
    pub max_upload_bytes: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 10 << 30,
        }
    }
}

/// Datasets (数据集): Docker volumes filled through a transfer container.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatasetsConfig {
    /// The image of the small container that holds a dataset's volume
    /// while files move in and out (it needs `sh` and the usual tools:
    /// busybox or coreutils). Empty: an image of the catalog that the node
    /// already has.
    pub transfer_image: String,
    /// A transfer container unused for this long is removed.
    pub transfer_idle_secs: u64,
}

impl Default for DatasetsConfig {
    fn default() -> Self {
        Self {
            transfer_image: String::new(),
            transfer_idle_secs: 300,
        }
    }
}

/// Remote sessions (web terminal and SSH jumpbox).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SessionsConfig {
    /// A session with no byte either way for this long ends (idle_timeout).
    pub idle_timeout_secs: u64,
    /// A session ends after this long whatever happens; 0: no limit.
    pub max_duration_secs: u64,
    /// Sessions one user may hold at once; 0: no limit.
    pub max_per_user: usize,
    /// Record what users type too (output is always recorded). Off by
    /// default: typed passwords would land in the recordings.
    pub record_input: bool,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 1800,
            max_duration_secs: 0,
            max_per_user: 5,
            record_input: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct InstancesConfig {
    /// How often each node's containers are compared with the instances
    /// (besides following its event stream).
    pub reconcile_interval_secs: u64,
    /// Seconds a container gets to stop (SIGTERM) before it is killed.
    pub stop_timeout_secs: u32,
}

impl Default for InstancesConfig {
    fn default() -> Self {
        Self {
            reconcile_interval_secs: 30,
            stop_timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NodesConfig {
    /// How often the health loop probes each node's daemon.
    pub health_interval_secs: u64,
    /// How long a probe (connect + version + info) may take.
    pub probe_timeout_secs: u64,
    /// This host's Docker socket, offered as the node `local`.
    pub local_socket: PathBuf,
    /// How long each step of SSH to a node (connect, sign in, one command)
    /// may take.
    pub ssh_timeout_secs: u64,
}

impl Default for NodesConfig {
    fn default() -> Self {
        Self {
            health_interval_secs: 15,
            probe_timeout_secs: 5,
            local_socket: PathBuf::from("/var/run/docker.sock"),
            ssh_timeout_secs: 15,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// TLS is on unless the file says `enabled = false` explicitly.
    pub enabled: bool,
    /// A PEM certificate chain; with `key`, replaces the self-signed pair.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    /// Consecutive failed logins that lock an account.
    pub lockout_threshold: u32,
    /// How long a locked account stays locked.
    pub lockout_minutes: u32,
    /// A browser session ends after this much inactivity.
    pub session_idle_minutes: u32,
    /// Lowest accepted zxcvbn score (0..=4).
    pub min_password_score: u8,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Failed sign-ins one source address may make in a row (web, API and
    /// SSH together) before it must wait; 0 turns the limit off.
    pub sign_in_burst: u32,
    /// How many more it may make per minute after that.
    pub sign_in_per_minute: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            ssh_listen: SocketAddr::from(([0, 0, 0, 0], 2026)),
            proxy_listen: SocketAddr::from(([0, 0, 0, 0], 8444)),
            data_dir: PathBuf::from("/var/lib/gpudock"),
            tls: TlsConfig::default(),
            security: SecurityConfig::default(),
            nodes: NodesConfig::default(),
            instances: InstancesConfig::default(),
            sessions: SessionsConfig::default(),
            forwarding: ForwardingConfig::default(),
            proxy: ProxyConfig::default(),
            metrics: MetricsConfig::default(),
            server: ServerConfig::default(),
            accounts: AccountsConfig::default(),
            files: FilesConfig::default(),
            datasets: DatasetsConfig::default(),
            leases: LeasesConfig::default(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cert: None,
            key: None,
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        // argon2id with OWASP's second recommended set (19 MiB, t=2, p=1).
        Self {
            lockout_threshold: 5,
            lockout_minutes: 30,
            session_idle_minutes: 480,
            min_password_score: 3,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            sign_in_burst: 20,
            sign_in_per_minute: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config: {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// A loaded config plus the keys the file had that gpudock does not know.
pub struct Loaded {
    pub config: Config,
    pub unknown_keys: Vec<String>,
}

impl Config {
    /// Defaults, overlaid with the file at `path` when one is given.
    pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
        let Some(path) = path else {
            return Ok(Loaded {
                config: Config::default(),
                unknown_keys: Vec::new(),
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses TOML text, collecting unknown keys instead of failing on them.
    pub fn parse(text: &str) -> Result<Loaded, toml::de::Error> {
        let mut unknown_keys = Vec::new();
        let de = toml::Deserializer::parse(text)?;
        let config: Config = serde_ignored::deserialize(de, |p| unknown_keys.push(p.to_string()))?;
        Ok(Loaded {
            config,
            unknown_keys,
        })
    }

    /// Checks cross-field rules; every error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid(
                "tls.cert/tls.key",
                "give both a certificate and a key, or neither",
            );
        }
        let s = &self.security;
        if s.lockout_threshold == 0 {
            return invalid("security.lockout_threshold", "must be at least 1");
        }
        if s.lockout_minutes == 0 {
            return invalid("security.lockout_minutes", "must be at least 1");
        }
        if s.session_idle_minutes == 0 {
            return invalid("security.session_idle_minutes", "must be at least 1");
        }
        if s.min_password_score > 4 {
            return invalid("security.min_password_score", "must be between 0 and 4");
        }
        if argon2::Params::new(
            s.argon2_memory_kib,
            s.argon2_iterations,
            s.argon2_parallelism,
            None,
        )
        .is_err()
        {
            return invalid(
                "security.argon2_*",
                "not valid argon2 parameters (memory >= 8 x parallelism KiB, iterations >= 1)",
            );
        }
        if self.nodes.health_interval_secs == 0 {
            return invalid("nodes.health_interval_secs", "must be at least 1");
        }
        if !(1..=120).contains(&self.nodes.probe_timeout_secs) {
            return invalid("nodes.probe_timeout_secs", "must be between 1 and 120");
        }
        if self.leases.check_interval_secs == 0 {
            return invalid("leases.check_interval_secs", "must be at least 1");
        }
        if self.instances.reconcile_interval_secs == 0 {
            return invalid("instances.reconcile_interval_secs", "must be at least 1");
        }
        if !(1..=600).contains(&self.instances.stop_timeout_secs) {
            return invalid("instances.stop_timeout_secs", "must be between 1 and 600");
        }
        if self.sessions.idle_timeout_secs == 0 {
            return invalid("sessions.idle_timeout_secs", "must be at least 1");
        }
        if let Err((field, message)) = self.metrics.validate() {
            return Err(ConfigError::Invalid { field, message });
        }
        if !(1..=300).contains(&self.nodes.ssh_timeout_secs) {
            return invalid("nodes.ssh_timeout_secs", "must be between 1 and 300");
        }
        if let Err(why) = crate::web::public::check_public_host(&self.server.public_host) {
            return invalid("server.public_host", why);
        }
        if self.accounts.pending_expiry_days == 0 {
            return invalid("accounts.pending_expiry_days", "must be at least 1");
        }
        if self.files.max_upload_bytes == 0 {
            return invalid("files.max_upload_bytes", "must be at least 1");
        }
        if self.datasets.transfer_idle_secs < 60 {
            return invalid("datasets.transfer_idle_secs", "must be at least 60");
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        self.validate_proxy()
    }

    fn validate_proxy(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        let p = &self.proxy;
        if p.cert.is_some() != p.key.is_some() {
            return invalid(
                "proxy.cert/proxy.key",
                "give both a certificate and a key, or neither",
            );
        }
        if !(1..=1000).contains(&p.ports) {
            return invalid("proxy.ports", "must be between 1 and 1000");
        }
        let first = self.proxy_listen.port();
        if first != 0 && u32::from(first) + u32::from(p.ports) - 1 > 65535 {
            return invalid(
                "proxy.ports",
                "proxy_listen's port plus the number of ports passes 65535",
            );
        }
        if !p.appliance_url.is_empty()
            && url::Url::parse(&p.appliance_url).map_or(true, |u| {
                !matches!(u.scheme(), "http" | "https") || u.host().is_none()
            })
        {
            return invalid(
                "proxy.appliance_url",
                "must be an http(s) address such as https://gpu.example.com:8443",
            );
        }
        if !p.base_domain.is_empty() {
            if !crate::validate::is_dns_name(&p.base_domain) {
                return invalid(
                    "proxy.base_domain",
                    "must be a DNS name such as apps.example.com",
                );
            }
            if p.cert.is_none() {
                return invalid(
                    "proxy.cert/proxy.key",
                    "a base domain needs a certificate for *.<base_domain> and its key",
                );
            }
        }
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("gpudock.db")
    }

    /// Where session recordings (asciicast v2) are written.
    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_tls_is_on() {
        let c = Config::default();
        assert!(c.tls.enabled);
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(c.ssh_listen.port(), 2026);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn file_overrides_and_unknown_keys_are_reported() {
        let loaded = Config::parse(
            "listen = \"127.0.0.1:9000\"\nbogus = 1\n[security]\nlockout_threshold = 3\ntypo_key = true\n",
        )
        .unwrap();
        assert_eq!(loaded.config.listen.port(), 9000);
        assert_eq!(loaded.config.security.lockout_threshold, 3);
        assert_eq!(loaded.config.security.lockout_minutes, 30);
        assert_eq!(loaded.unknown_keys, vec!["bogus", "security.typo_key"]);
    }

    const SHIPPED: &str = include_str!("../packaging/gpudock.toml");

    /// The shipped file with every `#key = value` line uncommented.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The names of the option lines `key = value` (sorted), and of the
    /// fields of `Config` that have a value by default (from its Debug form).
    fn option_names(toml_text: &str) -> (Vec<String>, Vec<String>) {
        let mut in_file: Vec<String> = toml_text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_string()))
            .collect();
        let debug = format!("{:#?}", Config::default());
        let mut fields: Vec<String> = debug
            .lines()
            .filter_map(|l| l.trim().split_once(": "))
            .filter(|(_, v)| !v.ends_with('{') && *v != "None,")
            .map(|(k, _)| k.to_string())
            .collect();
        in_file.sort();
        fields.sort();
        (in_file, fields)
    }

    #[test]
    fn the_shipped_file_sets_nothing_and_lists_every_option_with_its_default() {
        for line in SHIPPED.lines().map(str::trim) {
            let header = line.starts_with('[') && line.ends_with(']');
            assert!(
                line.is_empty() || line.starts_with('#') || header,
                "every option is commented in packaging/gpudock.toml: {line}"
            );
        }
        let loaded = Config::parse(SHIPPED).unwrap();
        assert_eq!(
            format!("{:?}", loaded.config),
            format!("{:?}", Config::default())
        );
        let text = uncommented(SHIPPED);
        let (in_file, fields) = option_names(&text);
        assert_eq!(in_file, fields, "packaging/gpudock.toml lists every option");
        let loaded = Config::parse(&text).unwrap();
        assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
        assert_eq!(
            format!("{:?}", loaded.config),
            format!("{:?}", Config::default()),
            "uncommented, packaging/gpudock.toml gives exactly the defaults"
        );
    }

    #[test]
    fn proxy_settings_are_checked() {
        let mut c = Config::default();
        c.proxy.ports = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("proxy.ports")
        );
        let mut c = Config::default();
        c.proxy_listen.set_port(65530);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("proxy.ports")
        );
        let mut c = Config::default();
        c.proxy.base_domain = "apps.example.com".into();
        assert!(c.validate().unwrap_err().to_string().contains("proxy.cert"));
        c.proxy.cert = Some("/c.pem".into());
        c.proxy.key = Some("/k.pem".into());
        assert!(c.validate().is_ok());
        c.proxy.base_domain = "not a name".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("proxy.base_domain")
        );
    }

    #[test]
    fn half_a_tls_pair_is_rejected() {
        let mut c = Config::default();
        c.tls.cert = Some("/x.pem".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("tls.cert/tls.key"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let loaded = Config::parse("[security]\nlockout_threshold = 0\n").unwrap();
        let err = loaded.config.validate().unwrap_err().to_string();
        assert!(err.contains("security.lockout_threshold"), "{err}");
        assert!(Config::parse("listen = \"nope\"").is_err());
    }
}
