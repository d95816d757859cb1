//! A real dockerd for tests (Debian's `docker.io`; needs root). Each daemon
//! has its own short directory under /tmp (socket paths are limited to 108
//! bytes) holding its data root, exec root, pidfile, log and TLS files; it
//! listens on a unix socket and on 127.0.0.1 with `--tlsverify` (a CA, server
//! and client certificates generated here with rcgen). Daemons run with
//! `--bridge=none --iptables=false`: two daemons (or a system one) would fight
//! over docker0 and the iptables chains, and the tests need no container
//! networking (containers get loopback only).
//!
//! Each dockerd runs under a small `sh` watchdog in its own session: when the
//! test process is gone (exit, panic, kill, Ctrl-C) or `stop` asks, it stops
//! dockerd, unmounts what is left under the directory, and (when the test
//! process is gone) removes the directory. So no dockerd outlives a test
//! binary, though the shared daemon is a static that is never dropped.
//!
//! A restartable daemon ([`start_restartable`], with live-restore, so that
//! containers outlive it) can be taken down and brought back ([`TestDaemon::down`],
//! [`TestDaemon::up`]) or frozen ([`TestDaemon::pause`]) to play a node that
//! dies or stalls under load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// An image imported from Debian's busybox-static (`/bin/sh` and all busybox
/// applets in /bin); no registry is reachable from the tests.
pub const TEST_IMAGE: &str = "gpudock-test/busybox:latest";

const INSTALL: &str = "install docker.io busybox-static (see .ci/run)";

pub struct TestDaemon {
    /// `unix:///tmp/gdXXXX/docker.sock`
    pub unix_url: String,
    /// `tcp://127.0.0.1:PORT` (TLS, client certificate required)
    pub tcp_url: String,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    dir: PathBuf,
    watchdog: Option<Child>,
    /// Removes the directory on drop (private daemons); the shared one's is
    /// removed by its watchdog once the test process is gone.
    _tmp: Option<tempfile::TempDir>,
}

/// The daemon shared by the tests of one test binary, started on first use.
pub fn shared() -> &'static TestDaemon {
    static SHARED: OnceLock<Result<TestDaemon, String>> = OnceLock::new();
    let started = SHARED.get_or_init(|| {
        std::panic::catch_unwind(|| {
            let d = start(false, false);
            import_test_image(&d);
            d
        })
        .map_err(|e| panic_text(&*e))
    });
    match started {
        Ok(d) => d,
        Err(e) => panic!("the shared test dockerd did not start: {e}"),
    }
}

/// An independent daemon (own directory and ports) without the test image;
/// `stop` or drop stops it.
pub fn start_private() -> TestDaemon {
    start(true, false)
}

/// An independent daemon with the test image and live-restore on, that
/// can go down and come back (its containers keep running meanwhile).
/// Leaked, for a `Lab`; it stops when the test process ends (or [`TestDaemon::shut`]).
pub fn start_restartable() -> &'static TestDaemon {
    let d = start(true, true);
    import_test_image(&d);
    Box::leak(Box::new(d))
}

/// A client certificate and key signed by another CA than any daemon's.
pub fn foreign_client_pem() -> (String, String) {
    let ca = make_ca("gpudock foreign test CA");
    make_leaf(&ca, "intruder", &[], ExtendedKeyUsagePurpose::ClientAuth)
}

/// Runs the docker CLI against `d`'s unix socket (ignoring the caller's
/// DOCKER_* settings and ~/.docker).
pub fn docker_cli(d: &TestDaemon, args: &[&str]) -> Output {
    Command::new("docker")
        .arg("-H")
        .arg(&d.unix_url)
        .args(args)
        .env("DOCKER_CONFIG", d.dir.join("cli"))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}): {INSTALL}"))
}

impl TestDaemon {
    /// The daemon's directory (data root, log, TLS files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The end of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir)
    }

    /// Stops dockerd (cleanly, then forcibly after 30 s) and waits for it.
    pub fn stop(&mut self) {
        assert!(
            self.halt(),
            "dockerd in {} did not stop within 40 s",
            self.dir.display()
        );
    }

    /// Stops a restartable daemon for good (its containers too) and
    /// removes its directory; waits for that.
    pub fn shut(&self) {
        let _ = std::fs::write(self.dir.join("remove"), b"");
        let _ = std::fs::write(self.dir.join("stop"), b"");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops dockerd (a restartable daemon: see [`start_restartable`]) and
    /// waits until it is gone.
    pub fn down(&self) {
        assert!(self.dir.join("restartable").exists(), "not restartable");
        std::fs::write(self.dir.join("down"), b"").unwrap();
        let sock = self.dir.join("docker.sock");
        let deadline = Instant::now() + Duration::from_secs(40);
        while ping(&sock) || self.dir.join("docker.pid").exists() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not go down:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts dockerd again after [`Self::down`] and waits until it answers.
    pub fn up(&self) {
        std::fs::remove_file(self.dir.join("down")).unwrap();
        let sock = self.dir.join("docker.sock");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ping(&sock) {
            assert!(
                Instant::now() < deadline,
                "dockerd did not come back:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes dockerd (SIGSTOP): it accepts connections and answers
    /// nothing, like a daemon starved of CPU.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused dockerd run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = std::fs::read_to_string(self.dir.join("docker.pid")).unwrap();
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.trim())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} dockerd");
    }

    /// Asks the watchdog to stop dockerd and waits; false when it hung.
    fn halt(&mut self) -> bool {
        let Some(mut child) = self.watchdog.take() else {
            return true;
        };
        let _ = std::fs::write(self.dir.join("stop"), b"");
        let deadline = Instant::now() + Duration::from_secs(40);
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
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // No panic here (it may run while unwinding).
        self.halt();
    }
}

/// The watchdog: $1 dir, $2 test pid, then the dockerd command line. A
/// file `down` stops dockerd until it is removed (restartable daemons).
const WATCHDOG: &str = r#"
dir=$1; parent=$2; shift 2
"$@" >"$dir/dockerd.log" 2>&1 </dev/null &
d=$!
while kill -0 "$parent" 2>/dev/null && [ ! -e "$dir/stop" ]; do
  if [ -e "$dir/down" ]; then
    if kill -0 "$d" 2>/dev/null; then kill -TERM "$d"; wait "$d" 2>/dev/null; fi
  elif ! kill -0 "$d" 2>/dev/null; then
    [ -e "$dir/restartable" ] || break
    "$@" >>"$dir/dockerd.log" 2>&1 </dev/null &
    d=$!
  fi
  sleep 0.1
done
if [ -e "$dir/restartable" ]; then
  # Live-restore would leave the containers running: kill them first (with
  # dockerd started again if it is down).
  dk() { docker -H "unix://$dir/docker.sock" "$@"; }
  if ! kill -0 "$d" 2>/dev/null; then
    "$@" >>"$dir/dockerd.log" 2>&1 </dev/null &
    d=$!
  fi
  i=0
  while ! dk version >/dev/null 2>&1 && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  ids=$(dk ps -q 2>/dev/null)
  [ -z "$ids" ] || dk kill $ids >/dev/null 2>&1
fi
kill -TERM "$d" 2>/dev/null
i=0
while kill -0 "$d" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i+1)); done
if kill -0 "$d" 2>/dev/null; then
  kill -KILL "$d" 2>/dev/null
  [ -f "$dir/x/containerd/containerd.pid" ] && kill -TERM "$(cat "$dir/x/containerd/containerd.pid")" 2>/dev/null
fi
wait "$d" 2>/dev/null
for m in $(awk -v p="$dir/" 'index($2, p) == 1 || $2 == substr(p, 1, length(p) - 1) { print $2 }' /proc/mounts | sort -r); do
  umount -l "$m" 2>/dev/null
done
if [ -e "$dir/remove" ] || ! kill -0 "$parent" 2>/dev/null; then rm -rf "$dir"; fi
"#;

fn start(private: bool, restartable: bool) -> TestDaemon {
    if Command::new("dockerd").arg("--version").output().is_err() {
        panic!("dockerd is not installed: {INSTALL}");
    }
    let tmp = tempfile::Builder::new()
        .prefix("gd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let pki = write_pki(&dir);
    let config = if restartable {
        std::fs::write(dir.join("restartable"), b"").unwrap();
        r#"{"live-restore": true}"#
    } else {
        "{}"
    };
    std::fs::write(dir.join("daemon.json"), config).unwrap();
    // The TLS port is free when chosen but may be taken before dockerd
    // binds it (another process's ephemeral port): a few tries.
    let mut tries = 0;
    let mut d = loop {
        let port = free_port();
        let sock = dir.join("docker.sock");
        let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let args: Vec<String> = vec![
            "dockerd".into(),
            format!("--config-file={}", p("daemon.json")),
            format!("--data-root={}", p("data")),
            format!("--exec-root={}", p("x")),
            format!("--pidfile={}", p("docker.pid")),
            format!("--host=unix://{}", sock.display()),
            format!("--host=tcp://127.0.0.1:{port}"),
            "--tlsverify".into(),
            format!("--tlscacert={}", p("ca.pem")),
            format!("--tlscert={}", p("server.pem")),
            format!("--tlskey={}", p("server-key.pem")),
            "--bridge=none".into(),
            "--iptables=false".into(),
            "--ip-forward=false".into(),
            "--shutdown-timeout=3".into(),
            // Unique namespaces in case dockerd picks up a system containerd.
            format!("--containerd-namespace={name}"),
            format!("--containerd-plugins-namespace={name}p"),
        ];
        let watchdog = Command::new("setsid")
            .args(["sh", "-c", WATCHDOG, "watchdog"])
            .arg(&dir)
            .arg(std::process::id().to_string())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut d = TestDaemon {
            unix_url: format!("unix://{}", sock.display()),
            tcp_url: format!("tcp://127.0.0.1:{port}"),
            ca_pem: pki.ca.clone(),
            client_cert_pem: pki.client_cert.clone(),
            client_key_pem: pki.client_key.clone(),
            dir: dir.clone(),
            watchdog: Some(watchdog),
            _tmp: None,
        };
        tries += 1;
        match wait_ready(&mut d, &sock, port) {
            Ok(()) => break d,
            Err(e) if tries < 3 && e.contains("address already in use") => {
                eprintln!("test dockerd: port {port} was taken; trying another");
                // The failed try was stopped through this file.
                let _ = std::fs::remove_file(dir.join("stop"));
            }
            Err(e) => panic!("{e}"),
        }
    };
    d._tmp = Some(tmp);
    if !private && let Some(t) = d._tmp.take() {
        // The shared daemon's directory outlives this value (a static).
        let _ = t.keep();
    }
    d
}

/// Polls the unix socket's `/_ping` and the TLS port until both answer.
fn wait_ready(d: &mut TestDaemon, sock: &Path, port: u16) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        if ping(sock) && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            eprintln!(
                "test dockerd in {} ready after {:?}",
                d.dir.display(),
                started.elapsed()
            );
            return Ok(());
        }
        let exited = d
            .watchdog
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .is_some();
        if exited || Instant::now() > deadline {
            let log = d.log_tail();
            d.stop();
            let why = if exited {
                "exited"
            } else {
                "did not answer within 60 s"
            };
            let root = if is_root() {
                ""
            } else {
                " (dockerd needs root)"
            };
            return Err(format!(
                "test dockerd {why}{root}; its log ends with:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ping(sock: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

struct Pki {
    ca: String,
    client_cert: String,
    client_key: String,
}

/// Writes ca.pem, server.pem and server-key.pem for dockerd; returns the CA
/// and a client certificate and key (kept in memory only).
fn write_pki(dir: &Path) -> Pki {
    let ca = make_ca("gpudock test CA");
    let (server, server_key) = make_leaf(
        &ca,
        "test dockerd",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        make_leaf(&ca, "gpudock", &[], ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server).unwrap();
    std::fs::write(dir.join("server-key.pem"), server_key).unwrap();
    Pki {
        ca: ca.pem(),
        client_cert,
        client_key,
    }
}

fn make_ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name.push(DnType::CommonName, cn);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate signed by `ca` with the given SANs (IPs are recognized) and
/// extended key usage; returns (cert PEM, PKCS#8 key PEM).
fn make_leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Builds a rootfs of the static busybox (all applets linked into /bin) and
/// imports it as [`TEST_IMAGE`].
fn import_test_image(d: &TestDaemon) {
    let busybox = Path::new("/bin/busybox");
    let elf = std::fs::read(busybox)
        .unwrap_or_else(|e| panic!("cannot read /bin/busybox ({e}): {INSTALL}"));
    assert!(
        is_static_elf(&elf),
        "/bin/busybox is dynamically linked (the busybox package); {INSTALL}"
    );
    let root = d.dir.join("rootfs");
    for sub in ["bin", "etc", "root", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("bin/busybox"), &elf).unwrap();
    set_mode(&root.join("bin/busybox"), 0o755);
    set_mode(&root.join("tmp"), 0o1777);
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet.trim());
        if applet.trim().is_empty() || applet.contains('/') || link.exists() {
            continue;
        }
        std::os::unix::fs::symlink("busybox", link).unwrap();
    }
    assert!(root.join("bin/sh").exists(), "busybox has no sh applet");
    import_rootfs(d, &root, TEST_IMAGE);
}

/// Packs the folder `root` (owned by root:root) and imports it as image
/// `tag` (`/bin/sh` as its command), then removes the folder.
pub fn import_rootfs(d: &TestDaemon, root: &Path, tag: &str) {
    let tar = root.with_extension("tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar failed");
    let tar_s = tar.to_string_lossy().into_owned();
    let out = docker_cli(
        d,
        &[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            &tar_s,
            tag,
        ],
    );
    assert!(
        out.status.success(),
        "docker import of {tag} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(root);
    let _ = std::fs::remove_file(&tar);
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An x86-64/aarch64 ELF64 little-endian file without a PT_INTERP header.
fn is_static_elf(b: &[u8]) -> bool {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= b.len() && u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) != 3
    })
}
