//! A real OpenSSH server for tests, standing in for a compute node's SSH: a
//! container on the test dockerd (tests/common/dockerd.rs) whose image is
//! imported from this host's own files — sshd, ssh-keygen, the shadow tools
//! (useradd, usermod, userdel, chpasswd), pkill, PAM's pam_unix for
//! chpasswd, their shared libraries — plus busybox for a shell. Users the
//! tests create live in the container's /etc/passwd, never on this machine.
//!
//! The container uses the host's network (the test daemons have no bridge)
//! and its sshd listens on 127.0.0.1 at a free port. sshd runs with
//! `UsePAM no` (passwords checked against /etc/shadow, locked and expired
//! accounts refused); `ssh-keygen -A` gives every container fresh host keys,
//! so a replaced container is a node whose host key changed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::dockerd::{self, TestDaemon, docker_cli, free_port, set_mode};

pub const SSHD_IMAGE: &str = "gpudock-test/sshd:latest";
const INSTALL: &str = "install openssh-server openssh-client procps (see .ci/run)";

/// Programs copied into the image (with their libraries).
const PROGRAMS: &[&str] = &[
    "/usr/sbin/sshd",
    "/usr/bin/ssh-keygen",
    "/usr/sbin/useradd",
    "/usr/sbin/usermod",
    "/usr/sbin/userdel",
    "/usr/sbin/chpasswd",
    "/usr/bin/pkill",
];
const PAM_MODULES: &[&str] = &["pam_unix.so", "pam_deny.so", "pam_permit.so"];

/// A running sshd container.
pub struct SshNode {
    pub port: u16,
    pub root_password: String,
    /// `ops`: an ordinary user without sudo (for "permission denied").
    pub ops_password: String,
    pub container: String,
    d: &'static TestDaemon,
}

/// Builds (once per test binary) and imports the image on the shared daemon.
pub fn image() -> &'static TestDaemon {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let d = dockerd::shared();
    let r = BUILT.get_or_init(|| {
        std::panic::catch_unwind(|| build_image(d)).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panic".into())
        })
    });
    if let Err(e) = r {
        panic!("the sshd test image could not be built: {e}");
    }
    d
}

fn random_password(tag: &str) -> String {
    let n: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!("{tag}-{:x}-Zq9!", n ^ u64::from(std::process::id()))
}

/// The container's start: the `ops` user and both passwords (from the
/// environment: test values only), fresh host keys, sshd in the foreground.
const ENTRY: &str = r#"set -e
useradd -m -u 990 -s /bin/sh ops
printf 'root:%s\nops:%s\n' "$ROOTPW" "$OPSPW" | chpasswd
ssh-keygen -A >/dev/null
exec /usr/sbin/sshd -D -e -p "$PORT"
"#;

impl SshNode {
    /// Starts a fresh node (new host keys) on a free port.
    pub fn start() -> SshNode {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> SshNode {
        let d = image();
        let (root_password, ops_password) = (random_password("Root"), random_password("Ops"));
        let out = docker_cli(
            d,
            &[
                "run",
                "-d",
                "--network",
                "host",
                "-e",
                &format!("ROOTPW={root_password}"),
                "-e",
                &format!("OPSPW={ops_password}"),
                "-e",
                &format!("PORT={port}"),
                SSHD_IMAGE,
                "sh",
                "-c",
                ENTRY,
            ],
        );
        assert!(
            out.status.success(),
            "docker run sshd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let node = SshNode {
            port,
            root_password,
            ops_password,
            container,
            d,
        };
        node.wait_ready();
        node
    }

    /// Polls until the port answers with an SSH banner.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 8];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-2.0") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd on port {} did not answer; its log:\n{}",
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the container by a fresh one on the same port: same address,
    /// new host keys (and no users but root and ops).
    pub fn replace(self) -> SshNode {
        let port = self.port;
        drop(self);
        Self::start_on(port)
    }

    /// Runs `sh -c script` in the container (as root, not over SSH).
    pub fn sh(&self, script: &str) -> Output {
        docker_cli(self.d, &["exec", &self.container, "sh", "-c", script])
    }

    /// Whether the container has the OS user `name`.
    pub fn has_user(&self, name: &str) -> bool {
        self.sh(&format!("grep -q '^{name}:' /etc/passwd"))
            .status
            .success()
    }

    pub fn logs(&self) -> String {
        let out = docker_cli(self.d, &["logs", &self.container]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for SshNode {
    fn drop(&mut self) {
        let _ = docker_cli(self.d, &["rm", "-f", &self.container]);
    }
}

/// Runs the real OpenSSH client with `sshpass`: `command` as `user` with
/// `password`; host keys are not remembered (each test node is new).
pub fn ssh(port: u16, user: &str, password: &str, command: &str) -> Output {
    ssh_command(port, user, password, command)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sshpass/ssh ({e}): {INSTALL}"))
}

/// `ssh` left running (stdout piped), e.g. an open session.
pub fn ssh_spawn(port: u16, user: &str, password: &str, command: &str) -> Child {
    ssh_command(port, user, password, command)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sshpass/ssh ({e}): {INSTALL}"))
}

/// Reads the child's stdout until a line equal to `line` (bounded: the
/// session's own end stops the read).
pub fn wait_for_line(child: &mut Child, line: &str) {
    let out = child.stdout.as_mut().unwrap();
    let mut seen = String::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 {
        if byte[0] == b'\n' {
            if seen == line {
                return;
            }
            seen.clear();
        } else {
            seen.push(char::from(byte[0]));
        }
    }
    panic!("the session ended before printing {line:?}");
}

/// Whether the child exits within `limit` (killed otherwise).
pub fn exits_within(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn ssh_command(port: u16, user: &str, password: &str, command: &str) -> Command {
    let mut c = Command::new("sshpass");
    c.arg("-e")
        .env("SSHPASS", password)
        .args([
            "ssh",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "ConnectTimeout=10",
            "-p",
        ])
        .arg(port.to_string())
        .arg(format!("{user}@127.0.0.1"))
        .arg(command);
    c
}

// ---- the image ----

fn build_image(d: &TestDaemon) {
    let root = d.dir().join("sshd-rootfs");
    let _ = std::fs::remove_dir_all(&root);
    for sub in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "etc/ssh",
        "etc/pam.d",
        "etc/skel",
        "etc/default",
        "home",
        "root",
        "tmp",
        "run/sshd",
        "var/mail",
        "var/log",
        "proc",
        "sys",
        "dev",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for (link, to) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(to, root.join(link)).unwrap();
    }
    set_mode(&root.join("tmp"), 0o1777);
    let mut files: Vec<PathBuf> = PROGRAMS.iter().map(PathBuf::from).collect();
    for p in PROGRAMS {
        assert!(Path::new(p).exists(), "{p} is missing: {INSTALL}");
    }
    files.extend(pam_modules());
    let mut copied = BTreeSet::new();
    for f in files.clone() {
        copy_into(&root, &f, &mut copied);
        for lib in libraries(&f) {
            copy_into(&root, &lib, &mut copied);
        }
    }
    install_busybox(&root);
    write_config(&root);
    dockerd::import_rootfs(d, &root, SSHD_IMAGE);
}

/// pam_unix and friends from this host's PAM module folder.
fn pam_modules() -> Vec<PathBuf> {
    let dir = std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("security"))
        .find(|d| d.join("pam_unix.so").exists())
        .unwrap_or_else(|| {
            panic!("no pam_unix.so under /usr/lib/*/security: install libpam-modules")
        });
    PAM_MODULES.iter().map(|m| dir.join(m)).collect()
}

/// The shared libraries `ldd` names for `file` (the loader included).
fn libraries(file: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// Copies `path` into `root` at its real location (directories resolved),
/// keeping a symlink as a symlink and copying what it points at too.
fn copy_into(root: &Path, path: &Path, done: &mut BTreeSet<PathBuf>) {
    let parent = std::fs::canonicalize(path.parent().unwrap()).unwrap();
    let real = parent.join(path.file_name().unwrap());
    if !done.insert(real.clone()) {
        return;
    }
    let dest = root.join(real.strip_prefix("/").unwrap());
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let meta = std::fs::symlink_metadata(&real).unwrap();
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&real).unwrap();
        std::os::unix::fs::symlink(&target, &dest).unwrap();
        copy_into(root, &parent.join(target), done);
    } else {
        std::fs::copy(&real, &dest).unwrap();
    }
}

/// busybox for /bin/sh and the small tools (id, grep, cat ...).
fn install_busybox(root: &Path) {
    let bin = root.join("usr/bin");
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .unwrap_or_else(|e| panic!("/bin/busybox ({e}): install busybox-static"));
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines().map(str::trim) {
        let taken = bin.join(applet).exists() || root.join("usr/sbin").join(applet).exists();
        if applet.is_empty() || applet.contains('/') || taken {
            continue;
        }
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
}

fn write_config(root: &Path) {
    let w = |p: &str, text: &str| std::fs::write(root.join(p), text).unwrap();
    w(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    );
    w(
        "etc/shadow",
        "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
    );
    set_mode(&root.join("etc/shadow"), 0o640);
    w(
        "etc/group",
        "root:x:0:\nsudo:x:27:\nusers:x:100:\nnogroup:x:65534:\n",
    );
    w(
        "etc/gshadow",
        "root:*::\nsudo:*::\nusers:*::\nnogroup:*::\n",
    );
    w(
        "etc/nsswitch.conf",
        "passwd: files\ngroup: files\nshadow: files\ngshadow: files\nhosts: files\n",
    );
    w("etc/default/useradd", "SHELL=/bin/sh\n");
    w(
        "etc/login.defs",
        "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\nUSERGROUPS_ENAB yes\n\
         CREATE_HOME yes\nENCRYPT_METHOD YESCRYPT\n",
    );
    w("etc/shells", "/bin/sh\n/usr/bin/sh\n");
    w(
        "etc/pam.d/common-password",
        "password [success=1 default=ignore] pam_unix.so obscure yescrypt\n\
         password requisite pam_deny.so\npassword required pam_permit.so\n",
    );
    w("etc/pam.d/chpasswd", "@include common-password\n");
    w(
        "etc/pam.d/other",
        "auth required pam_deny.so\naccount required pam_deny.so\n\
         password required pam_deny.so\nsession required pam_deny.so\n",
    );
    w(
        "etc/ssh/sshd_config",
        "ListenAddress 127.0.0.1\nPermitRootLogin yes\nPasswordAuthentication yes\n\
         KbdInteractiveAuthentication no\nUsePAM no\nPrintMotd no\n",
    );
}
