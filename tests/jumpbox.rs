//! The SSH jumpbox with the real OpenSSH client (`ssh`, `sshpass`,
//! `ssh-keygen`) against the real server and dockerd: password and key
//! login, the lockout, the menu (exact format, only the user's instances),
//! a shell in the chosen container, direct `user+instance` login, command
//! mode with its exit status and separate stderr, another user's instance
//! unreachable by name, no process left behind, the idle timeout, an
//! admin's force-terminate, the per-user limit, recordings, the host key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
/// SFTP, scp, the web file API and datasets (issue 16).
mod files;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::dockerd::{self, TestDaemon, docker_cli};
use common::lab::{FAST_STOP, Lab, small_spec};
use common::ws::{Term, session_cookie};
use common::{Server, code, get, make_tenant, make_user, patch, post, send};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

const ALICE_PW: &str = "Velvet-Canyon-Harbor-58!";
const BOB_PW: &str = "Saffron-Glacier-Pilot-36!";
const INSTALL: &str = "install openssh-client and sshpass (see .ci/run)";

/// `ssh` (through `sshpass` when a password is given) to the jumpbox.
fn ssh(
    port: u16,
    login: &str,
    password: Option<&str>,
    key: Option<&std::path::Path>,
    extra: &[&str],
) -> Command {
    ssh_logging("ERROR", port, login, password, key, extra)
}

/// [`ssh`] with the client's log level (`INFO` shows why a forwarded
/// channel was refused: `channel N: open failed: …`).
fn ssh_logging(
    level: &str,
    port: u16,
    login: &str,
    password: Option<&str>,
    key: Option<&std::path::Path>,
    extra: &[&str],
) -> Command {
    let mut c = match password {
        Some(pw) => {
            let mut c = Command::new("sshpass");
            c.args(["-p", pw, "ssh"]);
            c
        }
        None => Command::new("ssh"),
    };
    c.args(["-p", &port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            &format!("LogLevel={level}"),
        ])
        .args(["-o", "ConnectTimeout=10", "-o", "NumberOfPasswordPrompts=1"]);
    match key {
        Some(k) => {
            c.args([
                "-o",
                "PreferredAuthentications=publickey",
                "-o",
                "IdentitiesOnly=yes",
                "-i",
            ])
            .arg(k);
        }
        None => {
            c.args([
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "PubkeyAuthentication=no",
            ]);
        }
    }
    c.args(extra).arg(format!("{login}@127.0.0.1"));
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `c`, writing `input` and then closing stdin (unless `keep_open`),
/// with a deadline.
async fn run(c: &mut Command, input: &str, within: Duration) -> Ran {
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ssh ({e}): {INSTALL}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .expect("ssh did not finish in time")
        .unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An interactive client: its output collected as it comes, and the
/// terminal's cursor-position query (`ESC[6n`, which busybox's shell sends
/// at its prompt) answered as a terminal would.
struct Talk {
    child: Child,
    stdin: Option<tokio::process::ChildStdin>,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    answered: usize,
}

impl Talk {
    async fn start(c: &mut Command) -> Talk {
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ssh ({e}): {INSTALL}"));
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Talk {
            child,
            stdin,
            out,
            answered: 0,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    async fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Waits until the output holds `needle` (counting from `after`
    /// occurrences of it), answering terminal queries meanwhile.
    async fn expect(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text();
            let queries = text.matches("\x1b[6n").count();
            while self.answered < queries {
                self.send("\x1b[1;1R").await;
                self.answered += 1;
            }
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {within:?} in:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Talk::expect`] for `needle` after the last `mark`; the text after it.
    async fn expect_after(&mut self, mark: &str, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.expect(mark, within).await;
            let after = text.rsplit(mark).next().unwrap_or("").to_string();
            if after.contains(needle) {
                return after;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} after {mark:?} within {within:?} in:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends the client; what it said.
    async fn kill(mut self) -> Ran {
        let _ = self.child.start_kill();
        self.finish(false, Duration::from_secs(10)).await
    }

    /// Waits for the client to end (stdin closed unless `keep_stdin`).
    async fn finish(mut self, keep_stdin: bool, within: Duration) -> Ran {
        if !keep_stdin {
            self.stdin = None;
        }
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the ssh client did not end in time")
            .unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut stderr).await;
        }
        // Let the reader catch the last bytes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ran {
            code: status.code(),
            stdout: self.text(),
            stderr,
        }
    }
}

/// A lab with tenant A: alice (instances alpha, beta), bob (bobinst).
struct Jump {
    lab: Lab,
    port: u16,
    alpha: Value,
    beta: Value,
    bobinst: Value,
    alice: reqwest::Client,
}

async fn jump(config: &str) -> Jump {
    jump_in(Lab::new(&format!("{FAST_STOP}{config}"), 16).await).await
}

/// The users and instances of [`jump`] in `lab`.
async fn jump_in(lab: Lab) -> Jump {
    let spec = lab.spec(small_spec("s")).await;
    let t = make_tenant(&lab.srv, &lab.admin, "JMP").await;
    let (_, alice) = make_user(
        &lab.srv,
        &lab.admin,
        "alice",
        "customer_member",
        Some(t),
        ALICE_PW,
    )
    .await;
    let (_, bob) = make_user(
        &lab.srv,
        &lab.admin,
        "bob",
        "customer_member",
        Some(t),
        BOB_PW,
    )
    .await;
    let mut made = Vec::new();
    for (c, name) in [(&alice, "alpha"), (&alice, "beta"), (&bob, "bobinst")] {
        let (s, i) = post(
            c,
            &lab.srv.url("/api/v1/instances"),
            lab.create_body(spec, name),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        made.push(i);
    }
    let port = lab.srv.ssh_port();
    let [alpha, beta, bobinst]: [Value; 3] = made.try_into().unwrap();
    Jump {
        lab,
        port,
        alpha,
        beta,
        bobinst,
        alice,
    }
}

fn short(i: &Value) -> String {
    i["container_id"].as_str().unwrap()[..12].to_string()
}

async fn sessions(j: &Jump, query: &str) -> Vec<Value> {
    let (s, b) = j.lab.get(&format!("/api/v1/sessions?{query}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array().unwrap().clone()
}

/// Polls until session `id`'s processes were swept; its record.
async fn swept_session(j: &Jump, id: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, b) = j.lab.get(&format!("/api/v1/sessions/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["swept_at"].is_i64() {
            return b;
        }
        assert!(Instant::now() < deadline, "session {id} never swept: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a process whose command line is `cmd` runs on this host (in any
/// container: they share the host's process table).
fn host_runs(cmd: &str) -> bool {
    let want: Vec<u8> = cmd.split(' ').flat_map(|w| w.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
}

/// A shell of alice's in alpha that has started `cmd` in the background,
/// once it runs.
async fn shell_running(j: &Jump, cmd: &str) -> Talk {
    let mut t = Talk::start(&mut ssh(
        j.port,
        "alice+alpha",
        Some(ALICE_PW),
        None,
        &["-tt"],
    ))
    .await;
    t.expect("# ", Duration::from_secs(20)).await;
    t.send(&format!("{cmd} &\r")).await;
    until(
        &format!("{cmd} runs"),
        Duration::from_secs(15),
        async || host_runs(cmd),
    )
    .await;
    t
}

/// Polls until `cond` holds; `what` names it in the failure.
async fn until(what: &str, within: Duration, mut cond: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !cond().await {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Polls until the newest session matching `query` has ended; that record.
async fn ended_session(j: &Jump, query: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = sessions(j, query).await;
        if let Some(s) = list.first()
            && s["ended_at"].is_i64()
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no ended session for {query}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn menu_shell_direct_target_commands_and_scoping() {
    let j = jump("").await;
    let p = j.port;

    // The menu lists exactly alice's running instances in the documented
    // format; choosing one gives a shell in that container.
    let mut t = Talk::start(&mut ssh(p, "alice", Some(ALICE_PW), None, &["-tt"])).await;
    let menu = t.expect("q to quit): ", Duration::from_secs(30)).await;
    let lines: Vec<&str> = menu.lines().map(str::trim).collect();
    assert!(lines.contains(&"序号 实例名称-容器ID-算力节点"), "{menu}");
    let want1 = format!("1 alpha-{}-n1", short(&j.alpha));
    let want2 = format!("2 beta-{}-n1", short(&j.beta));
    assert_eq!(&lines[1..3], [want1.as_str(), want2.as_str()], "{menu}");
    assert!(
        !menu.contains("bobinst"),
        "another user's instance in the menu: {menu}"
    );
    t.send("7\r").await;
    t.expect("no such number", Duration::from_secs(10)).await;
    t.send("2\r").await;
    t.expect("# ", Duration::from_secs(20)).await;
    t.send("hostname\r").await;
    let out = t
        .expect(&format!("{}\r\n", short(&j.beta)), Duration::from_secs(20))
        .await;
    assert!(!out.contains(&format!("{}\r\n", short(&j.alpha))), "{out}");
    // Leaving that shell returns to the menu; another pick, another shell.
    t.send("exit 5\r").await;
    let back = "exit 5; 返回菜单";
    let menu2 = t
        .expect_after(back, "q to quit): ", Duration::from_secs(20))
        .await;
    assert!(menu2.contains(&want1) && menu2.contains(&want2), "{menu2}");
    t.send("1\r").await;
    t.send("hostname\r").await;
    let alpha = format!("{}\r\n", short(&j.alpha));
    t.expect_after(back, &alpha, Duration::from_secs(20)).await;
    t.send("exit\r").await;
    t.expect("exit 0; 返回菜单", Duration::from_secs(20)).await;
    t.send("q\r").await;
    let r = t.finish(true, Duration::from_secs(20)).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let shells = sessions(&j, "username=alice").await;
    assert!(shells.len() >= 2, "each shell its own session: {shells:?}");

    // Direct target: no menu.
    let mut t = Talk::start(&mut ssh(p, "alice+alpha", Some(ALICE_PW), None, &["-tt"])).await;
    t.expect("# ", Duration::from_secs(20)).await;
    t.send("hostname\r").await;
    let out = t
        .expect(&format!("{}\r\n", short(&j.alpha)), Duration::from_secs(20))
        .await;
    assert!(!out.contains("序号"), "{out}");
    t.send("exit 4\r").await;
    let r = t.finish(true, Duration::from_secs(20)).await;
    assert_eq!(
        r.code,
        Some(4),
        "the shell's exit status comes back: {}",
        r.stderr
    );

    // Command mode: stdout and stderr apart, the exit status comes back.
    let r = run(
        ssh(p, "alice+alpha", Some(ALICE_PW), None, &[])
            .arg("echo to-out; echo to-err >&2; exit 3"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.code, Some(3), "{} / {}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "to-out\n");
    assert!(
        r.stderr.contains("to-err") && !r.stdout.contains("to-err"),
        "{}",
        r.stderr
    );
    // stdin goes through too.
    let r = run(
        ssh(p, "alice+alpha", Some(ALICE_PW), None, &[]).arg("wc -c"),
        "12345",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!((r.code, r.stdout.trim()), (Some(0), "5"));

    // A member cannot reach another user's instance by name (nor by id).
    for target in ["bobinst".to_string(), j.bobinst["id"].to_string()] {
        let r = run(
            ssh(p, &format!("alice+{target}"), Some(ALICE_PW), None, &[]).arg("hostname"),
            "",
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            r.code,
            Some(1),
            "alice reached {target}: {} {}",
            r.stdout,
            r.stderr
        );
        assert!(
            r.stderr.contains("no running instance named"),
            "{}",
            r.stderr
        );
        assert!(!r.stdout.contains(&short(&j.bobinst)));
    }
    // Both refusals are audited as denied, naming the target as typed.
    let (_, denied) = j
        .lab
        .get("/api/v1/audit?action=session.open&outcome=denied")
        .await;
    let ids: Vec<&str> = denied
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["resource_id"].as_str())
        .collect();
    assert!(
        ids.contains(&"bobinst") && ids.contains(&j.bobinst["id"].to_string().as_str()),
        "{denied}"
    );
    // Wrong password: refused (exit 255), audited.
    let r = run(
        ssh(p, "alice", Some("Not-The-Password-1"), None, &[]).arg("true"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert!(j.lab.audited("action=auth.login&outcome=failure").await >= 1);

    // Sessions were recorded as ssh sessions of alice, with their figures.
    let list = sessions(&j, "protocol=ssh&username=alice").await;
    assert!(list.len() >= 4, "{list:?}");
    assert!(
        list.iter()
            .all(|s| s["ended_at"].is_i64() || s["status"] == "active"),
        "{list:?}"
    );
    let cmd = list.iter().find(|s| s["command"] == "wc -c").unwrap();
    assert_eq!(cmd["bytes_in"], 5);
    assert_eq!(cmd["end_reason"], "user_close");
    assert_eq!(cmd["instance_name"], "alpha");
    assert_eq!(
        j.lab.audited("action=session.open&outcome=success").await,
        list.len()
    );
    // The owner's view (admin here) of the bob instance is untouched.
    let _ = &j.alice;
}

#[tokio::test]
async fn key_login_lockout_and_users_without_instances() {
    let j = jump("[security]\nlockout_threshold = 3\n").await;
    let p = j.port;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f"])
        .arg(&key)
        .output()
        .unwrap_or_else(|e| panic!("ssh-keygen ({e}): {INSTALL}"));
    assert!(out.status.success());
    // Before the key is registered it opens nothing.
    let r = run(
        ssh(p, "alice+alpha", None, Some(&key), &["-o", "BatchMode=yes"]).arg("hostname"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    let public = std::fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
    let (s, b) = post(
        &j.alice,
        &j.lab.srv.url("/api/v1/ssh-keys"),
        json!({"public_key": public}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let r = run(
        ssh(p, "alice+alpha", None, Some(&key), &["-o", "BatchMode=yes"]).arg("hostname"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        (r.code, r.stdout.trim()),
        (Some(0), short(&j.alpha).as_str()),
        "{}",
        r.stderr
    );
    // The key is alice's: it does not open bob's account.
    let r = run(
        ssh(p, "bob+bobinst", None, Some(&key), &["-o", "BatchMode=yes"]).arg("hostname"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.code, Some(255), "{}", r.stdout);

    // Three wrong passwords lock bob (same counter as the web); then even
    // the right password is refused, on SSH and on the web.
    for _ in 0..3 {
        let r = run(
            ssh(p, "bob", Some("Wrong-Password-77"), None, &[]).arg("true"),
            "",
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(r.code, Some(255));
    }
    let r = run(
        ssh(p, "bob+bobinst", Some(BOB_PW), None, &[]).arg("hostname"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.code, Some(255), "a locked user got in: {}", r.stdout);
    let (_, s, _) = j.lab.srv.login("bob", BOB_PW).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "locked, answered like a wrong password"
    );

    // A user with no instance is told so and disconnected.
    let t = make_tenant(&j.lab.srv, &j.lab.admin, "EMP").await;
    make_user(
        &j.lab.srv,
        &j.lab.admin,
        "dave",
        "customer_member",
        Some(t),
        BOB_PW,
    )
    .await;
    let r = run(
        &mut ssh(p, "dave", Some(BOB_PW), None, &["-tt"]),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        r.stdout.contains("no running instances") || r.stderr.contains("no running instances"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    assert_ne!(r.code, Some(0));
}

/// Processes a session started in the container.
fn ps(d: &TestDaemon, container: &str) -> String {
    let out = docker_cli(d, &["exec", container, "ps"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `ps` in the container shows none of `gone` (10 s).
async fn wait_gone(d: &TestDaemon, container: &str, gone: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = ps(d, container);
        if !gone.iter().any(|g| now.contains(g)) {
            return;
        }
        assert!(Instant::now() < deadline, "processes left behind:\n{now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `ps` in the container shows `running` (15 s).
async fn wait_running(d: &TestDaemon, container: &str, running: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ps(d, container).contains(running) {
        assert!(Instant::now() < deadline, "{running} never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn disconnects_leave_nothing_running_and_recordings_replay() {
    let j = jump("").await;
    let p = j.port;
    let cid = j.alpha["container_id"].as_str().unwrap().to_string();
    let mut t = Talk::start(&mut ssh(p, "alice+alpha", Some(ALICE_PW), None, &["-tt"])).await;
    t.expect("# ", Duration::from_secs(20)).await;
    t.send("echo rec-7b1e; sleep 7771 & sleep 8881\r").await;
    t.expect("rec-7b1e\r\n", Duration::from_secs(20)).await;
    wait_running(j.lab.d, &cid, "sleep 8881").await;
    let child = t.child;
    drop(child); // the client goes away (killed)
    wait_gone(j.lab.d, &cid, &["sleep 7771", "sleep 8881"]).await;
    // Killed, the client never closed its session: it was lost.
    let s = ended_session(&j, "username=alice&protocol=ssh").await;
    assert_eq!(s["end_reason"], "client_lost", "{s}");
    swept_session(&j, &s["id"]).await;
    // The recording replays what was typed (echoed by the terminal).
    let id = s["id"].as_i64().unwrap();
    let r = j
        .lab
        .admin
        .get(j.lab.srv.url(&format!("/api/v1/sessions/{id}/recording")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cast = r.text().await.unwrap();
    let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(cast.contains("rec-7b1e"), "{cast}");
    // Stored compressed: smaller than what was shown, gzip members.
    let path = j
        .lab
        .srv
        .data_dir()
        .join(format!("recordings/{id}.cast.gz"));
    let stored = std::fs::read(&path).unwrap();
    assert_eq!(&stored[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(
        stored.len() < cast.len(),
        "{} bytes stored for {}",
        stored.len(),
        cast.len()
    );
    // A recording from before compression (`<id>.cast`) still replays.
    let legacy = "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.5, \"o\", \"legacy-cast\"]\n";
    std::fs::write(path.with_file_name(format!("{id}.cast")), legacy).unwrap();
    let db = rusqlite::Connection::open(j.lab.srv.data_dir().join("gpudock.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let set = |file: String| {
        db.execute(
            "UPDATE remote_sessions SET recording = ?1 WHERE id = ?2",
            rusqlite::params![file, id],
        )
        .unwrap()
    };
    set(format!("{id}.cast"));
    let url = j.lab.srv.url(&format!("/api/v1/sessions/{id}/recording"));
    assert_eq!(common::text(&j.lab.admin, &url).await, legacy);
    set(format!("{id}.cast.gz"));
    // The download streams: its first bytes arrive while the file is still
    // being written (a FIFO here), so no recording is ever held in memory.
    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"version\": 2, \"width\": 80, \"height\": 24}\n")
            .unwrap();
        f.write_all(&gz.finish().unwrap()).unwrap();
        f.flush().unwrap();
        let _ = wait.recv_timeout(Duration::from_secs(30));
    });
    let url = j.lab.srv.url(&format!("/api/v1/sessions/{id}/recording"));
    let (mut r, first) = tokio::time::timeout(Duration::from_secs(5), async {
        let mut r = j.lab.admin.get(url).send().await.unwrap();
        let first = r.chunk().await.unwrap().unwrap();
        (r, first)
    })
    .await
    .expect("nothing came while the recording was still being written");
    assert!(first.starts_with(b"{\"version\": 2"), "{first:?}");
    done.send(()).unwrap();
    writer.join().unwrap();
    while r.chunk().await.unwrap().is_some() {}
    let page = common::text(&j.lab.admin, &j.lab.srv.url(&format!("/sessions/{id}"))).await;
    assert!(
        page.contains("asciinema-player.min.js")
            && page.contains(&format!("/api/v1/sessions/{id}/recording"))
    );
    // A member may not replay (nor list) sessions.
    let r = j
        .alice
        .get(j.lab.srv.url(&format!("/api/v1/sessions/{id}/recording")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(j.lab.audited("action=session.close").await >= 1);
}

#[tokio::test]
async fn idle_sessions_end_with_the_reason_idle_timeout() {
    let j = jump("[sessions]\nidle_timeout_secs = 3\n").await;
    let started = Instant::now();
    let t = Talk::start(&mut ssh(
        j.port,
        "alice+alpha",
        Some(ALICE_PW),
        None,
        &["-tt"],
    ))
    .await;
    let r = t.finish(true, Duration::from_secs(20)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "ended after {took:?}: {} {}",
        r.stdout,
        r.stderr
    );
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("idle timeout"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    let s = ended_session(&j, "username=alice").await;
    assert_eq!(
        (s["end_reason"].as_str(), s["status"].as_str()),
        (Some("idle_timeout"), Some("terminated"))
    );
    eprintln!("idle session (3 s limit) ended after {took:?}");

    // A user who sits at the menu obeys the same idle timeout (typing
    // restarts its clock).
    let mut t = Talk::start(&mut ssh(j.port, "alice", Some(ALICE_PW), None, &["-tt"])).await;
    t.expect("q to quit): ", Duration::from_secs(20)).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    t.send("9").await;
    let r = t.finish(true, Duration::from_secs(20)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "the menu ended after {took:?}"
    );
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("idle timeout"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    eprintln!("idle menu (3 s limit, a key after 2 s) ended after {took:?}");
}

#[tokio::test]
async fn force_terminate_and_the_per_user_limit() {
    let j = jump("[sessions]\nmax_per_user = 2\n").await;
    let p = j.port;
    let first = Talk::start(&mut ssh(p, "alice+alpha", Some(ALICE_PW), None, &["-tt"])).await;
    let second = Talk::start(&mut ssh(p, "alice+beta", Some(ALICE_PW), None, &["-tt"])).await;
    // Generous: each login hashes a password (argon2), and CI shares its
    // 2 cores with other suites; a slow machine must not fail this.
    let deadline = Instant::now() + Duration::from_secs(60);
    let live = loop {
        let l = sessions(&j, "status=live").await;
        if l.len() == 2 {
            break l;
        }
        assert!(Instant::now() < deadline, "sessions not live: {l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The admin's live page lists them, each with a Terminate button.
    let page = common::text(&j.lab.admin, &j.lab.srv.url("/sessions")).await;
    for s in &live {
        assert!(
            page.contains(&format!("id=\"terminate-{}\"", s["id"])),
            "{page}"
        );
    }

    // A third is refused, saying which limit.
    let r = run(
        ssh(p, "alice+alpha", Some(ALICE_PW), None, &[]).arg("true"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("max_per_user"), "{}", r.stderr);
    assert!(j.lab.audited("action=session.open&outcome=denied").await == 1);

    // The admin terminates one: its client is gone within a second or so.
    let id = live[0]["id"].as_i64().unwrap();
    let (victim, other) = if live[0]["instance_name"] == "beta" {
        (second, first)
    } else {
        (first, second)
    };
    let asked = Instant::now();
    let (admin, url) = (
        j.lab.admin.clone(),
        j.lab.srv.url(&format!("/api/v1/sessions/{id}/terminate")),
    );
    let call = tokio::spawn(async move { post(&admin, &url, json!({})).await });
    let r = victim.finish(true, Duration::from_secs(5)).await;
    let took = asked.elapsed();
    let (s, b) = call.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["end_reason"].as_str(), b["status"].as_str()),
        (Some("admin_force"), Some("terminated"))
    );
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("terminated by an administrator"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    eprintln!("force-terminate: client disconnected {took:?} after the request");
    // Members cannot terminate.
    let (s, _) = post(
        &j.alice,
        &j.lab.srv.url(&format!("/api/v1/sessions/{id}/terminate")),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    drop(other);
}

#[tokio::test]
async fn the_host_key_is_stable_across_restarts() {
    let srv = Server::start();
    let scan = |port: u16| {
        let out = std::process::Command::new("ssh-keyscan")
            .args(["-p", &port.to_string(), "-t", "ed25519", "127.0.0.1"])
            .output()
            .unwrap_or_else(|e| panic!("ssh-keyscan ({e}): {INSTALL}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.contains("ssh-ed25519"))
            .map(|l| l.split_whitespace().last().unwrap().to_string())
    };
    let before = scan(srv.ssh_port()).expect("no ed25519 host key offered");
    let srv = srv.restart("");
    let after = scan(srv.ssh_port()).unwrap();
    assert_eq!(before, after);
    let (s, _) = get(&srv.client(), &srv.url("/healthz")).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn sigterm_closes_open_sessions_before_the_database() {
    let j = jump("").await;
    let t = Talk::start(&mut ssh(
        j.port,
        "alice+alpha",
        Some(ALICE_PW),
        None,
        &["-tt"],
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while sessions(&j, "status=live").await.is_empty() {
        assert!(Instant::now() < deadline, "the session never opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Jump { lab, .. } = j;
    let Lab { srv, .. } = lab;
    let mut srv = srv;
    srv.stop();
    let r = t.finish(true, Duration::from_secs(15)).await;
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("shutting down"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    let logs = srv.logs();
    assert!(
        logs.contains("stopped: database checkpointed and closed"),
        "{logs}"
    );
    // Its record was closed by the stopping server, not swept at the next start.
    let srv = srv.restart("");
    let (c, s, _) = srv.login("admin", common::ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = get(&c, &srv.url("/api/v1/sessions")).await;
    let rec = &list[0];
    assert_eq!(
        (rec["end_reason"].as_str(), rec["end_detail"].as_str()),
        (Some("error"), Some("gpudock is shutting down")),
        "{rec}"
    );
}

/// `printf 'cmd\n' | ssh -tt user+inst@host`: the client's EOF reaches the
/// shell as ^D (as sshd passes it), after the command ran; its output
/// comes back whole and the shell's status with it.
#[tokio::test]
async fn a_command_piped_into_a_tty_session_keeps_its_output() {
    let j = jump("").await;
    for n in 1..=3 {
        let r = run(
            &mut ssh(j.port, "alice+alpha", Some(ALICE_PW), None, &["-tt"]),
            &format!("echo piped-$((6*{n}+1))\n"),
            Duration::from_secs(30),
        )
        .await;
        let want = format!("piped-{}", 6 * n + 1);
        assert!(
            r.stdout.contains(&want),
            "try {n}: no {want} in {:?} / {:?}",
            r.stdout,
            r.stderr
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    let s = ended_session(&j, "username=alice").await;
    assert_eq!(s["end_reason"], "user_close", "{s}");
}

/// The client's EOF can reach the terminal while it is not the shell's
/// (before the shell starts, or while a command it runs has it): the
/// terminal then turns the ^D into an end-of-file mark that the shell never
/// sees once it reads again. The session still ends when the client's
/// input has ended, after everything typed ran.
#[tokio::test]
async fn an_eof_while_a_command_runs_still_ends_a_tty_session() {
    let j = jump("").await;
    let mut child = ssh(j.port, "alice+alpha", Some(ALICE_PW), None, &["-tt"])
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ssh ({e}): {INSTALL}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"sleep 3; echo slept-$((40+2))\n")
        .await
        .unwrap();
    // The EOF comes while `sleep` has the terminal.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("ssh did not finish in time")
        .unwrap();
    let r = Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        r.stdout.contains("slept-42"),
        "no slept-42 in {:?} / {:?}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

/// After `kill -9` of gpudock, a restart ends what the open session left
/// running in the container (its record says when), removes a
/// reservation the killed process was creating together with what dockerd
/// made for it, and finishes a deletion it was in the middle of (the row
/// left `deleting`), however close the restart comes to the crash:
/// abandonment goes by the process's generation, not by comparing clocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_a_restart_sweeps_sessions_and_abandoned_creates() {
    let j = jump("").await;
    let t = shell_running(&j, "sleep 6661").await;
    let lab = &j.lab;
    let session = sessions(&j, "status=live").await[0]["id"].clone();
    // A create in flight, its image's pull never ending.
    let spec = j.alpha["spec_id"].as_i64().unwrap();
    let _create = lab.create_pulling_forever(spec, "abandoned").await;
    let beta = j.beta["id"].as_i64().unwrap();
    let beta_container = j.beta["container_id"].as_str().unwrap().to_string();

    let Jump { lab, .. } = j;
    let Lab { srv, d, node, .. } = lab;
    let mut srv = srv;
    srv.kill();
    drop(t);
    // What dockerd finished for the reservation, unseen by the dead process.
    let db = rusqlite::Connection::open(srv.data_dir().join("gpudock.db")).unwrap();
    let (id, container, volume): (i64, String, String) = db
        .query_row(
            "SELECT id, container_name, volume_name FROM instances WHERE status = 'creating'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let install = container.split('-').nth(1).unwrap().to_string();
    let out = docker_cli(
        d,
        &[
            "create",
            "--name",
            &container,
            "-v",
            &format!("{volume}:/data"),
            "--label",
            &format!("gpudock.install={install}"),
            "--label",
            &format!("gpudock.instance={id}"),
            "--label",
            &format!("gpudock.node={node}"),
            dockerd::TEST_IMAGE,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    // A restart within the same second as the crash (or a clock set back):
    // the reservation looks no older than the new process.
    db.execute(
        "UPDATE instances SET updated_at = updated_at + 3600 WHERE id = ?1",
        [id],
    )
    .unwrap();
    // The killed process had marked beta for deletion (as `delete` does
    // before it removes the container) and died before removing it.
    db.execute(
        "UPDATE instances SET status = 'deleting', updated_at = updated_at + 3600, \
         generation = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation') \
         WHERE id = ?1",
        [beta],
    )
    .unwrap();
    drop(db);
    assert!(
        host_runs("sleep 6661"),
        "kill -9 ended the session's processes"
    );

    let srv = srv.restart(FAST_STOP);
    let (admin, s, _) = srv.login("admin", common::ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    until(
        "the session's sleep is swept",
        Duration::from_secs(30),
        async || !host_runs("sleep 6661"),
    )
    .await;
    let rec_url = srv.url(&format!("/api/v1/sessions/{session}"));
    let admin2 = admin.clone();
    until(
        "the session is recorded swept",
        Duration::from_secs(10),
        async || get(&admin2, &rec_url).await.1["swept_at"].is_i64(),
    )
    .await;
    let (_, rec) = get(&admin, &rec_url).await;
    assert_eq!(rec["end_reason"], "error", "{rec}");
    let inst_url = srv.url(&format!("/api/v1/instances/{id}"));
    until(
        "the abandoned reservation is removed",
        Duration::from_secs(30),
        async || get(&admin, &inst_url).await.0 == StatusCode::NOT_FOUND,
    )
    .await;
    for (kind, name) in [("container", &container), ("volume", &volume)] {
        let out = docker_cli(d, &[kind, "inspect", name]);
        assert!(
            !out.status.success(),
            "the abandoned {kind} {name} is still there"
        );
    }
    let beta_url = srv.url(&format!("/api/v1/instances/{beta}"));
    until(
        "the interrupted deletion is finished",
        Duration::from_secs(30),
        async || get(&admin, &beta_url).await.0 == StatusCode::NOT_FOUND,
    )
    .await;
    let out = docker_cli(d, &["container", "inspect", &beta_container]);
    assert!(!out.status.success(), "beta's container is still there");
    let (_, a) = get(
        &admin,
        &srv.url("/api/v1/audit?action=instance.delete&outcome=success"),
    )
    .await;
    assert_eq!(a[0]["resource_id"], beta.to_string(), "{a}");
    assert_eq!(a[0]["actor_name"], "system", "{a}");
    let (_, a) = get(
        &admin,
        &srv.url("/api/v1/audit?action=instance.create&outcome=failure"),
    )
    .await;
    assert_eq!(a[0]["resource_id"], id.to_string(), "{a}");
    assert!(
        a[0]["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{a}"
    );
}

/// A node whose dockerd stalls (as under heavy load), then dies and comes
/// back, with live-restore keeping its containers running meanwhile:
/// - many parallel password logins wait out the stall instead of failing
///   after a fixed 5 s; records of sessions whose clients leave during the
///   stall close at once and are swept once the daemon answers;
/// - when it dies, the SSH user is told, the record says `node_lost`, the
///   instance shows `unknown`; when it is back the node is online again
///   within seconds, and what the session left running is swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_stalls_or_dies_and_comes_back() {
    let d = dockerd::start_restartable();
    let config =
        format!("{FAST_STOP}[sessions]\nmax_per_user = 0\n[nodes]\nhealth_interval_secs = 30\n");
    let j = jump_in(Lab::on(d, &config, 16).await).await;
    let cid = j.alpha["container_id"].as_str().unwrap().to_string();

    // Logins under a stalled daemon.
    const LOGINS: usize = 40;
    d.pause();
    let runs: Vec<_> = (0..LOGINS)
        .map(|i| {
            let mut c = ssh(j.port, "alice+alpha", Some(ALICE_PW), None, &[]);
            c.arg(format!("echo ok-{i}"));
            tokio::spawn(async move { run(&mut c, "", Duration::from_secs(120)).await })
        })
        .collect();
    // Every session is open and waits on the daemon; it stays stalled
    // longer than any fixed 5 s answer.
    until(
        "all sessions wait on the stalled daemon",
        Duration::from_secs(90),
        async || sessions(&j, "status=live&limit=1000").await.len() == LOGINS,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    d.resume();
    for (i, r) in runs.into_iter().enumerate() {
        let r = r.await.unwrap();
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (Some(0), format!("ok-{i}\n").as_str()),
            "login {i}: {}",
            r.stderr
        );
    }
    // Clients that leave while the daemon is stalled: their records close
    // without waiting for it, and are swept once it answers.
    let holders: Vec<_> = (0..3)
        .map(|n| {
            let mut c = ssh(j.port, "alice+alpha", Some(ALICE_PW), None, &[]);
            c.arg(format!("sleep 60{n}"));
            c.spawn().unwrap()
        })
        .collect();
    until(
        "3 sessions' sleeps run",
        Duration::from_secs(30),
        async || (0..3).all(|n| host_runs(&format!("sleep 60{n}"))),
    )
    .await;
    d.pause();
    drop(holders);
    until(
        "the records close during the stall",
        Duration::from_secs(20),
        async || sessions(&j, "status=live").await.is_empty(),
    )
    .await;
    let left = sessions(&j, "status=closed&limit=3").await;
    for s in &left {
        assert_eq!(s["end_reason"], "client_lost", "{s}");
        assert!(
            s["swept_at"].is_null(),
            "swept while the daemon was stalled: {s}"
        );
    }
    d.resume();
    for s in &left {
        swept_session(&j, &s["id"]).await;
    }
    assert!(
        !ps(j.lab.d, &cid).contains("sleep 60"),
        "{}",
        ps(j.lab.d, &cid)
    );

    // The daemon dies under an open shell.
    let t = shell_running(&j, "sleep 7777").await;
    d.down();
    let r = t.finish(true, Duration::from_secs(30)).await;
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("node stopped answering"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    let s = ended_session(&j, "username=alice&status=closed&limit=1").await;
    assert_eq!(
        (s["end_reason"].as_str(), &s["swept_at"]),
        (Some("node_lost"), &Value::Null),
        "{s}"
    );
    assert!(
        host_runs("sleep 7777"),
        "live-restore kept the container running"
    );
    let inst_url = format!("/api/v1/instances/{}", j.alpha["id"]);
    let lab = &j.lab;
    until(
        "the instance shows unknown",
        Duration::from_secs(20),
        async || lab.get(&inst_url).await.1["status"] == "unknown",
    )
    .await;
    d.up();
    let node_url = format!("/api/v1/nodes/{}", lab.node);
    let took = until(
        "the node is online again",
        Duration::from_secs(15),
        async || lab.get(&node_url).await.1["status"] == "online",
    )
    .await;
    eprintln!("node online {took:?} after its dockerd answered again (health interval 30 s)");
    until(
        "the instance shows running",
        Duration::from_secs(15),
        async || lab.get(&inst_url).await.1["status"] == "running",
    )
    .await;
    until(
        "the shell's sleep is swept",
        Duration::from_secs(30),
        async || !host_runs("sleep 7777"),
    )
    .await;
    swept_session(&j, &s["id"]).await;
    d.shut();
}

/// Whatever gpudock prints on a terminal shows control characters escaped:
/// a name written before names were checked cannot clear the screen or draw
/// a fake prompt (OpenSSH itself refuses such characters in a login name,
/// so the login's own text is covered by `escape`'s unit tests). A node's endpoint is told to who
/// may see nodes only; others get a reference to the log.
#[tokio::test]
async fn terminal_text_is_escaped_and_node_details_stay_with_admins() {
    let j = jump("").await;
    let p = j.port;
    // An instance name holding escape sequences (as the database may hold
    // from before): the menu shows it escaped.
    let db = rusqlite::Connection::open(j.lab.srv.data_dir().join("gpudock.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let evil = "evil\u{1b}[2J\u{1b}[Hroot@gpu:~# \u{7}";
    db.execute(
        "UPDATE instances SET name = ?1 WHERE id = ?2",
        rusqlite::params![evil, j.alpha["id"].as_i64().unwrap()],
    )
    .unwrap();
    let mut t = Talk::start(&mut ssh(p, "alice", Some(ALICE_PW), None, &["-tt"])).await;
    let menu = t.expect("q to quit): ", Duration::from_secs(30)).await;
    assert!(
        menu.contains("1 evil\\x1b[2J\\x1b[Hroot@gpu:~# \\x07-"),
        "{menu:?}"
    );
    assert!(
        !menu.contains('\u{1b}') && !menu.contains('\u{7}'),
        "{menu:?}"
    );
    t.send("q\r").await;
    t.finish(true, Duration::from_secs(20)).await;

    // The node's daemon becomes unreachable (its endpoint now names a port
    // nobody listens on): alice is told so without the endpoint, the admin
    // with it, on SSH and over HTTP.
    let node = j.lab.node;
    let (s, b) = common::patch(
        &j.lab.admin,
        &j.lab.srv.url(&format!("/api/v1/nodes/{node}")),
        json!({"docker_endpoint": "tcp://127.0.0.1:1", "tls_enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let beta = j.beta["id"].as_i64().unwrap();
    let r = run(
        ssh(p, &format!("alice+{beta}"), Some(ALICE_PW), None, &[]).arg("hostname"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("cannot reach the node"), "{}", r.stderr);
    assert!(r.stderr.contains("ref "), "{}", r.stderr);
    assert!(!r.stderr.contains("127.0.0.1:1"), "{}", r.stderr);
    eprintln!("a customer is told: {}", r.stderr.trim());
    let r = run(
        ssh(
            p,
            &format!("admin+{beta}"),
            Some(common::ADMIN_PASSWORD),
            None,
            &[],
        )
        .arg("hostname"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert!(r.stderr.contains("127.0.0.1:1"), "{}", r.stderr);
    let logs = format!("/api/v1/instances/{beta}/logs");
    let (s, b) = get(&j.alice, &j.lab.srv.url(&logs)).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    let text = b.to_string();
    assert!(
        !text.contains("127.0.0.1:1") && text.contains("ref "),
        "{b}"
    );
    let reference = b["error"]["message"]
        .as_str()
        .unwrap()
        .rsplit("ref ")
        .next()
        .unwrap()
        .to_string();
    // The server's log (read from its stderr as it comes) holds the detail.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !j
        .lab
        .srv
        .logs()
        .lines()
        .any(|l| l.contains(&reference) && l.contains("127.0.0.1:1"))
    {
        assert!(
            Instant::now() < deadline,
            "the log holds no detail under {reference}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, b) = j.lab.get(&logs).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert!(b.to_string().contains("127.0.0.1:1"), "{b}");
}

/// The per-address sign-in limit covers SSH: once the address used up its
/// failures (here on the API), even the right password is refused.
#[tokio::test]
async fn ssh_sign_ins_share_the_per_address_limit() {
    let srv = Server::start_with("[security]\nsign_in_burst = 2\nsign_in_per_minute = 1\n");
    srv.admin().await;
    let p = srv.ssh_port();
    let admin = || ssh(p, "admin", Some(common::ADMIN_PASSWORD), None, &[]);
    // Signed in: told there is nothing to run a command in (exit 1).
    let r = run(admin().arg("true"), "", Duration::from_secs(30)).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    for _ in 0..2 {
        let (_, s, _) = srv.login("admin", "wrong").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let r = run(admin().arg("true"), "", Duration::from_secs(30)).await;
    assert_eq!(r.code, Some(255), "signed in past the limit: {}", r.stderr);
    let (_, s, _) = srv.login("admin", common::ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

/// The web terminal's WebSocket upgrade as a browser sends it; the status.
async fn ws_status(srv: &Server, c: &reqwest::Client, inst: &Value) -> StatusCode {
    c.get(srv.url(&format!("/instances/{}/terminal/ws", inst["id"])))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("origin", srv.base.clone())
        .send()
        .await
        .unwrap()
        .status()
}

/// The record of a route in the permission matrix.
async fn perm_id(lab: &Lab, method: &str, path: &str) -> i64 {
    let (s, all) = lab.get("/api/v1/permissions").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    all.as_array()
        .unwrap()
        .iter()
        .find(|p| p["method"] == method && p["path_pattern"] == path)
        .unwrap_or_else(|| panic!("no record {method} {path}"))["id"]
        .as_i64()
        .unwrap()
}

/// One permission record decides shells on the web and on the jumpbox: with
/// the terminal permission revoked for members, `ssh member+inst 'cmd'`
/// and the menu are refused (and audited) like the web terminal. And no
/// role is hard-coded beside the matrix: an owner granted the terminate
/// permission terminates their tenant's sessions.
#[tokio::test]
async fn the_jumpbox_and_the_web_obey_the_same_permission_records() {
    let j = jump("").await;
    let (p, lab) = (j.port, &j.lab);
    let shell = perm_id(lab, "GET", "/instances/{id}/terminal/ws").await;
    let url = format!("/api/v1/permissions/customer_member/{shell}");
    let (s, b) = send(&lab.admin, "DELETE", &lab.srv.url(&url), Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    assert_eq!(
        ws_status(&lab.srv, &j.alice, &j.alpha).await,
        StatusCode::FORBIDDEN
    );
    let r = run(
        ssh(p, "alice+alpha", Some(ALICE_PW), None, &[]).arg("echo ran-$((40+2))"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.code, Some(1), "{} / {}", r.stdout, r.stderr);
    assert!(
        !r.stdout.contains("ran-42"),
        "the command ran: {}",
        r.stdout
    );
    assert!(r.stderr.contains("permission denied"), "{}", r.stderr);
    let r = run(
        &mut ssh(p, "alice", Some(ALICE_PW), None, &["-tt"]),
        "",
        Duration::from_secs(30),
    )
    .await;
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("permission denied") && !all.contains("序号"),
        "{all}"
    );
    let (_, denied) = lab
        .get("/api/v1/audit?action=permission.denied&limit=100")
        .await;
    assert!(
        denied
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resource_id"] == "shell"),
        "{denied}"
    );
    // Granted again: both work again.
    let (s, b) = send(&lab.admin, "PUT", &lab.srv.url(&url), Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let r = run(
        ssh(p, "alice+alpha", Some(ALICE_PW), None, &[]).arg("echo ran-$((40+2))"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        (r.code, r.stdout.trim()),
        (Some(0), "ran-42"),
        "{}",
        r.stderr
    );

    // Terminating follows the matrix too (scoped to the owner's tenant).
    let (_, me) = get(&j.alice, &lab.srv.url("/api/v1/me")).await;
    let tenant = me["user"]["tenant_id"].as_i64().unwrap();
    let (_, olga) = make_user(
        &lab.srv,
        &lab.admin,
        "olga",
        "customer_owner",
        Some(tenant),
        BOB_PW,
    )
    .await;
    let mut t = Talk::start(&mut ssh(p, "alice+alpha", Some(ALICE_PW), None, &["-tt"])).await;
    t.expect("# ", Duration::from_secs(20)).await;
    let live = sessions(&j, "status=live").await;
    let sid = live[0]["id"].as_i64().unwrap();
    let kill = lab.srv.url(&format!("/api/v1/sessions/{sid}/terminate"));
    let (s, _) = post(&olga, &kill, json!({})).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "owners lack the record by default"
    );
    let term = perm_id(lab, "POST", "/api/v1/sessions/{id}/terminate").await;
    let grant = lab
        .srv
        .url(&format!("/api/v1/permissions/customer_owner/{term}"));
    let (s, b) = send(&lab.admin, "PUT", &grant, Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = post(&olga, &kill, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["end_reason"], "admin_force", "{b}");
    t.finish(true, Duration::from_secs(10)).await;
    // Another tenant's session stays out of reach.
    let t2 = make_tenant(&lab.srv, &lab.admin, "OTHER").await;
    let (_, oscar) = make_user(
        &lab.srv,
        &lab.admin,
        "oscar",
        "customer_owner",
        Some(t2),
        BOB_PW,
    )
    .await;
    let (s, _) = post(&oscar, &kill, json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// What a user holds live on an instance: an SSH shell, a web terminal and
/// a followed log, the two shells each with a process running.
struct Held {
    ssh: Talk,
    term: Term,
    logs: tokio::task::JoinHandle<String>,
    container: String,
    marks: [String; 2],
}

async fn hold_all(
    lab: &Lab,
    port: u16,
    user: &str,
    pw: &str,
    web: &reqwest::Client,
    inst: &Value,
    n: u32,
) -> Held {
    let id = inst["id"].as_i64().unwrap();
    let container = inst["container_id"].as_str().unwrap().to_string();
    let marks = [
        format!("sleep {}", 7000 + 2 * n),
        format!("sleep {}", 7001 + 2 * n),
    ];
    let mut ssh = Talk::start(&mut ssh(
        port,
        &format!("{user}+{id}"),
        Some(pw),
        None,
        &["-tt"],
    ))
    .await;
    ssh.expect("# ", Duration::from_secs(20)).await;
    ssh.send(&format!("{} & echo ssh-$((1+{n}))\r", marks[0]))
        .await;
    ssh.expect(&format!("ssh-{}\r\n", n + 1), Duration::from_secs(20))
        .await;
    let cookie = session_cookie(&lab.srv, user, pw).await;
    let mut term = Term::open(&lab.srv, &cookie, id, 80, 24).await;
    term.expect("# ", Duration::from_secs(20)).await;
    term.send(&format!("{} & echo web-$((1+{n}))\r", marks[1]))
        .await;
    term.expect(&format!("web-{}\r\n", n + 1), Duration::from_secs(20))
        .await;
    let r = web
        .get(
            lab.srv
                .url(&format!("/api/v1/instances/{id}/logs?follow=1&tail=1")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let logs = tokio::spawn(async move {
        let mut r = r;
        let mut text = String::new();
        while let Ok(Some(c)) = r.chunk().await {
            text.push_str(&String::from_utf8_lossy(&c));
        }
        text
    });
    for m in &marks {
        wait_running(lab.d, &container, m).await;
    }
    Held {
        ssh,
        term,
        logs,
        container,
        marks,
    }
}

/// Everything in `held` ended at once with `access_revoked`, each client
/// told why, the processes swept, the records closed with that reason.
async fn assert_revoked(j: &Jump, held: Held, user: &str, sessions_had: usize, what: &str) {
    let asked = Instant::now();
    let Held {
        ssh,
        mut term,
        logs,
        container,
        marks,
    } = held;
    let r = ssh.finish(true, Duration::from_secs(10)).await;
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("access revoked"),
        "{what}: ssh was told: {said}"
    );
    let end = term.ended(Duration::from_secs(10)).await;
    assert_eq!(end["reason"], "access_revoked", "{what}: {end}");
    assert!(
        end["message"].as_str().unwrap().contains("access revoked"),
        "{end}"
    );
    let text = tokio::time::timeout(Duration::from_secs(10), logs)
        .await
        .unwrap_or_else(|_| panic!("{what}: the followed log goes on"))
        .unwrap();
    assert!(
        text.contains("access revoked"),
        "{what}: log stream: {text}"
    );
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{what}: ended after {took:?}"
    );
    let marks: Vec<&str> = marks.iter().map(String::as_str).collect();
    wait_gone(j.lab.d, &container, &marks).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = sessions(j, &format!("username={user}")).await;
        let open: Vec<_> = list.iter().filter(|s| !s["ended_at"].is_i64()).collect();
        if open.is_empty() {
            assert_eq!(list.len(), sessions_had, "{what}: {list:?}");
            for s in &list {
                assert_eq!(
                    (s["end_reason"].as_str(), s["status"].as_str()),
                    (Some("access_revoked"), Some("terminated")),
                    "{what}: {s}"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "{what}: still open: {open:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{what}: everything ended {took:?} after the change");
}

/// Each change that takes access away ends at once everything the user
/// holds live (SSH shell, web terminal, followed log): disabling them,
/// disabling their tenant, a password reset by an admin, their own password
/// change, a role change, a move to another tenant. A user who has
/// instances cannot be moved (their instances stay with their tenant).
#[tokio::test]
async fn revoking_access_ends_everything_the_user_holds_live() {
    let j = jump("").await;
    let (p, lab) = (j.port, &j.lab);
    let spec = lab.spec(small_spec("r")).await;
    let (_, me) = get(&j.alice, &lab.srv.url("/api/v1/me")).await;
    let t1 = me["user"]["tenant_id"].as_i64().unwrap();
    let t2 = make_tenant(&lab.srv, &lab.admin, "REV2").await;
    let t3 = make_tenant(&lab.srv, &lab.admin, "REV3").await;
    let mut users = Vec::new();
    for (name, role, t) in [
        ("ann", "customer_member", t1),
        ("cal", "customer_member", t1),
        ("eve", "customer_member", t1),
        ("dan", "customer_member", t2),
    ] {
        let (id, c) = make_user(&lab.srv, &lab.admin, name, role, Some(t), BOB_PW).await;
        let (s, i) = post(
            &c,
            &lab.srv.url("/api/v1/instances"),
            lab.create_body(spec, name),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        users.push((id, c, i));
    }
    let [
        (ann, ann_c, ann_i),
        (cal, cal_c, cal_i),
        (eve, eve_c, eve_i),
        (_, dan_c, dan_i),
    ]: [_; 4] = users.try_into().unwrap();
    let (olga, olga_c) = make_user(
        &lab.srv,
        &lab.admin,
        "olga",
        "customer_owner",
        Some(t1),
        BOB_PW,
    )
    .await;
    let user = |id: i64| lab.srv.url(&format!("/api/v1/users/{id}"));

    // A move: refused for a user who has instances (nothing changes) ...
    let (s, b) = patch(&lab.admin, &user(ann), json!({"tenant_id": t3})).await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "conflict"), "{b}");
    assert!(b["error"]["fields"]["tenant_id"].is_string(), "{b}");
    let (_, a) = get(&lab.admin, &user(ann)).await;
    assert_eq!(a["tenant_id"], t1, "{a}");
    // ... and for an owner without instances of their own, it ends what
    // they held in their old tenant's instances.
    let held = hold_all(lab, p, "olga", BOB_PW, &olga_c, &ann_i, 1).await;
    let (s, b) = patch(&lab.admin, &user(olga), json!({"tenant_id": t3})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_revoked(&j, held, "olga", 2, "moved to another tenant").await;
    let (s, _) = get(
        &olga_c,
        &lab.srv.url(&format!("/api/v1/instances/{}", ann_i["id"])),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the moved owner's web session ended"
    );

    let held = hold_all(lab, p, "ann", BOB_PW, &ann_c, &ann_i, 2).await;
    let (s, b) = patch(&lab.admin, &user(ann), json!({"enabled": false})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_revoked(&j, held, "ann", 2, "user disabled").await;

    let held = hold_all(lab, p, "cal", BOB_PW, &cal_c, &cal_i, 3).await;
    let (s, b) = patch(&lab.admin, &user(cal), json!({"role": "customer_owner"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_revoked(&j, held, "cal", 2, "role changed").await;

    let held = hold_all(lab, p, "dan", BOB_PW, &dan_c, &dan_i, 4).await;
    let url = lab.srv.url(&format!("/api/v1/tenants/{t2}"));
    let (s, b) = patch(&lab.admin, &url, json!({"enabled": false})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_revoked(&j, held, "dan", 2, "tenant disabled").await;

    let held = hold_all(lab, p, "eve", BOB_PW, &eve_c, &eve_i, 5).await;
    let (s, b) = post(
        &eve_c,
        &lab.srv.url("/api/v1/auth/password"),
        json!({"current_password": BOB_PW, "new_password": ALICE_PW}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_revoked(&j, held, "eve", 2, "own password changed").await;

    let held = hold_all(lab, p, "eve", ALICE_PW, &eve_c, &eve_i, 6).await;
    let url = lab.srv.url(&format!("/api/v1/users/{eve}/reset-password"));
    let (s, b) = post(&lab.admin, &url, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_revoked(&j, held, "eve", 4, "password reset by an admin").await;

    // A change that takes nothing away ends nothing.
    let mut t = Talk::start(&mut ssh(p, "alice+alpha", Some(ALICE_PW), None, &["-tt"])).await;
    t.expect("# ", Duration::from_secs(20)).await;
    let alice_id = me["user"]["id"].as_i64().unwrap();
    let (s, b) = patch(
        &lab.admin,
        &user(alice_id),
        json!({"display_name": "Alice A.", "role": "customer_member", "enabled": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    t.send("echo still-$((20+1))\r").await;
    t.expect("still-21\r\n", Duration::from_secs(10)).await;
    // A reset by the operator's command (another process) ends it within
    // the live-figures tick (2 s).
    let asked = Instant::now();
    let out = lab.srv.cli(&["admin", "reset-password", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = t.finish(true, Duration::from_secs(10)).await;
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(said.contains("access revoked"), "{said}");
    eprintln!(
        "reset from the command line: the shell ended {:?} later",
        asked.elapsed()
    );
}

/// SIGTERM with a web terminal open (three times over, a user at the
/// jumpbox menu the last time): the browser is told, what the terminal
/// started is swept from the container, the record is closed and
/// `session.close` audited before the database closes; nobody at the menu
/// holds the shutdown up.
#[tokio::test]
async fn sigterm_ends_web_terminals_and_menus_before_the_database() {
    let j = jump("").await;
    let (id, cid) = (
        j.alpha["id"].as_i64().unwrap(),
        j.alpha["container_id"].as_str().unwrap().to_string(),
    );
    let Jump { lab, .. } = j;
    let Lab { srv, d, .. } = lab;
    let mut srv = srv;
    for round in 0..3u32 {
        let cookie = session_cookie(&srv, "alice", ALICE_PW).await;
        let mut term = Term::open(&srv, &cookie, id, 80, 24).await;
        term.expect("# ", Duration::from_secs(20)).await;
        let mark = format!("sleep {}", 9990 + round);
        term.send(&format!("{mark} & echo up-$((1+{round}))\r"))
            .await;
        term.expect(&format!("up-{}\r\n", round + 1), Duration::from_secs(20))
            .await;
        wait_running(d, &cid, &mark).await;
        let menu = if round == 2 {
            let mut t = Talk::start(&mut ssh(
                srv.ssh_port(),
                "alice",
                Some(ALICE_PW),
                None,
                &["-tt"],
            ))
            .await;
            t.expect("q to quit): ", Duration::from_secs(20)).await;
            Some(t)
        } else {
            None
        };

        let asked = Instant::now();
        srv.stop();
        let took = asked.elapsed();
        let end = term.ended(Duration::from_secs(5)).await;
        assert_eq!(end["reason"], "error", "{end}");
        assert!(
            end["message"].as_str().unwrap().contains("shutting down"),
            "{end}"
        );
        wait_gone(d, &cid, &[mark.as_str()]).await;
        let logs = srv.logs();
        let closed = logs
            .find(" ended: error")
            .unwrap_or_else(|| panic!("{logs}"));
        let db_closed = logs
            .find("stopped: database checkpointed and closed")
            .unwrap_or_else(|| panic!("{logs}"));
        assert!(
            closed < db_closed,
            "the record closed after the database:\n{logs}"
        );
        assert!(
            took < Duration::from_secs(8),
            "round {round}: the server took {took:?} to stop"
        );
        if let Some(t) = menu {
            let r = t.finish(true, Duration::from_secs(5)).await;
            assert!(
                format!("{}{}", r.stdout, r.stderr).contains("shutting down"),
                "{} {}",
                r.stdout,
                r.stderr
            );
        }
        eprintln!("round {round}: stopped {took:?} after SIGTERM");

        srv = srv.restart("");
        let (c, s, _) = srv.login("admin", common::ADMIN_PASSWORD).await;
        assert_eq!(s, StatusCode::OK);
        let (_, list) = get(&c, &srv.url("/api/v1/sessions?protocol=web_terminal")).await;
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), round as usize + 1, "{list:?}");
        for rec in list {
            assert_eq!(
                (rec["end_reason"].as_str(), rec["end_detail"].as_str()),
                (Some("error"), Some("gpudock is shutting down")),
                "{rec}"
            );
        }
        let (_, closes) = get(&c, &srv.url("/api/v1/audit?action=session.close&limit=100")).await;
        assert_eq!(
            closes.as_array().unwrap().len(),
            round as usize + 1,
            "{closes}"
        );
        assert!(
            !srv.logs().contains("left open by a previous run"),
            "{}",
            srv.logs()
        );
    }
}

// ---- Reaching services inside instances (issue 15): ssh -L and the proxy ----

const CAROL_PW: &str = "Marble-Tundra-Violin-47!";

/// A lab whose image runs the test web app (tests/common/app.rs): alice
/// (tenant A) with `web` on the daemon's unix socket and `webtls` on the same
/// daemon reached over TLS (the relay route); carol in tenant B.
struct Apps {
    lab: Lab,
    port: u16,
    web: Value,
    webtls: Value,
    alice: reqwest::Client,
    carol: reqwest::Client,
}

async fn apps(config: &str) -> Apps {
    let lab = Lab::new(&format!("{FAST_STOP}{config}"), 16).await;
    let image = common::app::register(&lab).await;
    let tls_node = common::app::tls_node(&lab, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let ta = make_tenant(&lab.srv, &lab.admin, "APA").await;
    let tb = make_tenant(&lab.srv, &lab.admin, "APB").await;
    let (_, alice) = make_user(
        &lab.srv,
        &lab.admin,
        "alice",
        "customer_member",
        Some(ta),
        ALICE_PW,
    )
    .await;
    let (_, carol) = make_user(
        &lab.srv,
        &lab.admin,
        "carol",
        "customer_member",
        Some(tb),
        CAROL_PW,
    )
    .await;
    let mut made = Vec::new();
    for (name, node) in [("web", json!(lab.node)), ("webtls", tls_node)] {
        let body = json!({"image_id": image, "spec_id": spec, "node_id": node, "name": name});
        let (s, i) = post(&alice, &lab.srv.url("/api/v1/instances"), body).await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        made.push(i);
    }
    let [web, webtls]: [Value; 2] = made.try_into().unwrap();
    let port = lab.srv.ssh_port();
    Apps {
        lab,
        port,
        web,
        webtls,
        alice,
        carol,
    }
}

/// `ssh -W host:port` as `login` (alice's password): one direct-tcpip channel.
async fn forward_once(a: &Apps, login: &str, pw: &str, to: &str) -> Ran {
    run(
        &mut ssh_logging("INFO", a.port, login, Some(pw), None, &["-W", to]),
        "",
        Duration::from_secs(30),
    )
    .await
}

/// GETs `url` until it answers (the app starts with its container).
async fn get_until_up(url: &str) -> String {
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = c.get(url).send().await
            && r.status() == StatusCode::OK
        {
            return r.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends a line over a WebSocket at `url` and returns the echo.
async fn ws_echo(url: &str, line: &str) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("WebSocket connect in time")
    .unwrap();
    ws.send(Message::text(line)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an echo in time")
        .unwrap()
        .unwrap();
    got.into_text().unwrap().trim().to_string()
}

#[tokio::test]
async fn ssh_l_reaches_the_instance_over_unix_and_tls_and_nothing_else() {
    let a = apps("").await;
    let p = a.port;
    // Both routes: the namespace (unix socket) and the relay (TLS node).
    for name in ["web", "webtls"] {
        let local = dockerd::free_port();
        let t = Talk::start(&mut ssh(
            p,
            &format!("alice+{name}"),
            Some(ALICE_PW),
            None,
            &["-N", "-L", &format!("{local}:localhost:8000")],
        ))
        .await;
        let page = get_until_up(&format!("http://127.0.0.1:{local}/")).await;
        assert!(page.contains("test app"), "{page}");
        let headers = get_until_up(&format!("http://127.0.0.1:{local}/headers")).await;
        assert!(headers.contains("HTTP_HOST=127.0.0.1"), "{headers}");
        let echo = ws_echo(&format!("ws://127.0.0.1:{local}/ws"), "hello through ssh").await;
        assert_eq!(
            echo, "hello through ssh",
            "WebSocket echo through the tunnel ({name})"
        );
        // One session record for the tunnel, whatever the number of channels.
        let live = sessions_of(&a.lab, "status=live&protocol=port_forward").await;
        let mine: Vec<&Value> = live.iter().filter(|s| s["instance_name"] == name).collect();
        assert_eq!(mine.len(), 1, "{live:?}");
        let s = mine[0].clone();
        assert_eq!(s["target_port"], json!(8000), "{s}");
        assert_eq!(s["recording"], Value::Null, "tunnels are not recorded: {s}");
        // Shown on the sessions page with its Terminate button.
        let page = common::text(&a.lab.admin, &a.lab.srv.url("/sessions")).await;
        assert!(
            page.contains(&format!("id=\"terminate-{}\"", s["id"])),
            "{page}"
        );
        // Terminated by the admin: the client (no shell) is disconnected.
        let (st, b) = a
            .lab
            .post(
                &format!("/api/v1/sessions/{}/terminate", s["id"]),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["end_reason"], "admin_force", "{b}");
        let r = t.finish(true, Duration::from_secs(10)).await;
        assert_ne!(r.code, Some(0), "{}", r.stderr);
        let (_, rec) = a.lab.get(&format!("/api/v1/sessions/{}", s["id"])).await;
        assert!(rec["bytes_out"].as_i64().unwrap() > 0, "{rec}");
        assert!(rec["bytes_in"].as_i64().unwrap() > 0, "{rec}");
    }

    // Only the instance itself: not the node, not another address, not
    // another instance by name.
    let denied_before = a.lab.audited("action=forward.denied").await;
    for to in [
        "10.0.0.1:80",
        "172.17.0.1:8000",
        "webtls:8000",
        "example.com:8000",
    ] {
        let r = forward_once(&a, "alice+web", ALICE_PW, to).await;
        assert_ne!(r.code, Some(0), "{to}");
        assert!(
            r.stderr.contains("administratively prohibited")
                && r.stderr.contains("only the instance itself"),
            "{to}: {}",
            r.stderr
        );
    }
    // `ssh -W instance:port user@host` (what ProxyJump / ssh -J and VS Code
    // Remote-SSH's ProxyCommand use): the instance named as the target.
    let r = run(
        &mut ssh(p, "alice", Some(ALICE_PW), None, &["-W", "web:8000"]),
        "GET / HTTP/1.0\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    assert!(r.stdout.contains("test app"), "{} {}", r.stdout, r.stderr);
    // A port nothing listens on says so.
    let r = forward_once(&a, "alice+web", ALICE_PW, "127.0.0.1:8001").await;
    assert!(
        r.stderr.contains("nothing listens on port 8001"),
        "{}",
        r.stderr
    );
    // Another tenant's user cannot reach alice's instance at all.
    let r = forward_once(&a, "carol+web", CAROL_PW, "localhost:8000").await;
    assert_ne!(r.code, Some(0));
    let r2 = forward_once(&a, "carol", CAROL_PW, "web:8000").await;
    assert!(
        r2.stderr.contains("administratively prohibited"),
        "{}",
        r2.stderr
    );
    let _ = a.carol.clone();
    // The admin restricts web's ports: 8000 is refused with the rule.
    let (s, b) = send(
        &a.lab.admin,
        "PUT",
        &a.lab
            .srv
            .url(&format!("/api/v1/instances/{}/reach/ports", a.web["id"])),
        Some(json!({"ports": "22, 8888"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["forward_ports"], "22,8888", "{b}");
    // Only an admin may restrict them.
    let (s, _) = send(
        &a.alice,
        "PUT",
        &a.lab
            .srv
            .url(&format!("/api/v1/instances/{}/reach/ports", a.web["id"])),
        Some(json!({"ports": ""})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let r = forward_once(&a, "alice+web", ALICE_PW, "localhost:8000").await;
    assert!(
        r.stderr.contains("may not be forwarded") && r.stderr.contains("22,8888"),
        "{}",
        r.stderr
    );
    assert!(
        a.lab.audited("action=forward.denied").await >= denied_before + 5,
        "refusals are audited"
    );

    // -R is refused with a clear message; -D reaches nothing but the instance.
    let r = run(
        &mut ssh(
            p,
            "alice+webtls",
            Some(ALICE_PW),
            None,
            &[
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-R",
                "9999:localhost:22",
            ],
        ),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("remote port forwarding failed"),
        "{}",
        r.stderr
    );
    let socks = dockerd::free_port();
    let t = Talk::start(&mut ssh_logging(
        "INFO",
        p,
        "alice+webtls",
        Some(ALICE_PW),
        None,
        &["-N", "-D", &socks.to_string()],
    ))
    .await;
    until(
        "the SOCKS port listens",
        Duration::from_secs(20),
        async || std::net::TcpStream::connect(("127.0.0.1", socks)).is_ok(),
    )
    .await;
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-m", "10", "--socks5-hostname"])
        .arg(format!("127.0.0.1:{socks}"))
        .arg("http://10.9.9.9/")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "curl through -D to another host");
    let r = t.kill().await;
    assert!(
        r.stderr.contains("only the instance itself"),
        "{}",
        r.stderr
    );

    // -A (with an agent to forward): refused with a clear message; the
    // command runs all the same, and nothing of the agent reaches it.
    let agent_dir = tempfile::tempdir().unwrap();
    let sock = agent_dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent (openssh-client)");
    until("the agent's socket", Duration::from_secs(10), async || {
        sock.exists()
    })
    .await;
    let mut c = ssh(p, "alice+web", Some(ALICE_PW), None, &["-A"]);
    c.arg("echo agent:${SSH_AUTH_SOCK:-none}")
        .env("SSH_AUTH_SOCK", &sock);
    let r = run(&mut c, "", Duration::from_secs(30)).await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        r.stderr
            .contains("agent forwarding (-A) is not available through the jumpbox"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout.trim(), "agent:none", "{}", r.stderr);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    // A stopped instance: refused, saying so.
    let (s, b) = post(
        &a.alice,
        &a.lab
            .srv
            .url(&format!("/api/v1/instances/{}/stop", a.webtls["id"])),
        json!({}),
    )
    .await;
    assert!(s.is_success(), "{b}");
    let r = forward_once(&a, "alice+webtls", ALICE_PW, "localhost:8000").await;
    assert!(r.stderr.contains("is not running"), "{}", r.stderr);
}

async fn sessions_of(lab: &Lab, query: &str) -> Vec<Value> {
    let (s, b) = lab.get(&format!("/api/v1/sessions?{query}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array().unwrap().clone()
}

#[tokio::test]
async fn the_global_switch_turns_forwarding_off() {
    let srv = common::Server::start_with("[forwarding]\nenabled = false\n");
    let admin = srv.admin().await;
    make_user(&srv, &admin, "alice", "admin", None, ALICE_PW).await;
    let r = run(
        &mut ssh_logging(
            "INFO",
            srv.ssh_port(),
            "alice",
            Some(ALICE_PW),
            None,
            &["-W", "localhost:8000"],
        ),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("port forwarding is turned off"),
        "{}",
        r.stderr
    );
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Opens web service `port` of instance `id` as `c` (signed in to gpudock):
/// the hand-off URL, then the proxy's cookie (`name=value`) and where the
/// proxy sends the browser.
async fn hand_off(
    a: &Apps,
    c: &reqwest::Client,
    id: &Value,
    port: u16,
) -> (String, String, String) {
    let r = c
        .get(
            a.lab
                .srv
                .url(&format!("/instances/{id}/web/{port}/open?next=/headers")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    let handoff = location(&r);
    assert!(handoff.contains("/.gpudock/handoff?t="), "{handoff}");
    let r = c.get(&handoff).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/headers");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("Secure") && set.starts_with("gpudock_app_"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    (handoff, cookie, location(&r))
}

type ProxyWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Turns web access on for port 8000 of instance `id` (as alice), signs in
/// to it and opens a WebSocket through the proxy: the URL, the proxy's
/// cookie and the WebSocket.
async fn web_ws(a: &Apps, id: &Value) -> (String, String, ProxyWs) {
    let (s, b) = post(
        &a.alice,
        &a.lab.srv.url(&format!("/api/v1/instances/{id}/web")),
        json!({"port": 8000}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let url = b["url"].as_str().unwrap().to_string();
    let (_, cookie, _) = hand_off(a, &a.alice, id, 8000).await;
    let ws = proxy_ws(&a.lab.srv, &url, &cookie).await;
    (url, cookie, ws)
}

/// A WebSocket to the app at `url` (`…/ws`) through the proxy with the
/// proxy's `cookie`, once it echoed a line.
async fn proxy_ws(srv: &common::Server, url: &str, cookie: &str) -> ProxyWs {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}ws", url.replacen("https://", "wss://", 1))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(common::ws::tls_to(srv)),
    )
    .await
    .unwrap();
    ws.send(Message::text("hello through the proxy"))
        .await
        .unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.into_text().unwrap().trim(), "hello through the proxy");
    ws
}

#[tokio::test]
async fn the_proxy_signs_in_through_gpudock_and_checks_every_request() {
    let a = apps("").await;
    let srv = &a.lab.srv;
    let id = a.web["id"].clone();
    // Web access is off by default; carol (another tenant) cannot turn it on.
    let (s, _) = post(
        &a.carol,
        &srv.url(&format!("/api/v1/instances/{id}/web")),
        json!({"port": 8000, "name": "App"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = post(
        &a.alice,
        &srv.url(&format!("/api/v1/instances/{id}/web")),
        json!({"port": 8000, "name": "App"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let url = b["url"].as_str().unwrap().to_string();
    let proxy_port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(srv.proxy_ports().contains(&proxy_port), "{url}");
    assert!(
        !srv.base.ends_with(&format!(":{proxy_port}")),
        "a separate origin"
    );
    // The instance page's section lists it with the URL and the ssh -L line.
    let (s, o) = get(&a.alice, &srv.url(&format!("/api/v1/instances/{id}/reach"))).await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["services"][0]["url"], json!(url), "{o}");
    let line = o["services"][0]["ssh"].as_str().unwrap();
    assert!(line.contains("-L 8000:localhost:8000 alice+web@"), "{line}");
    let page = common::text(&a.alice, &srv.url(&format!("/instances/{id}/reach"))).await;
    assert!(
        page.contains(&format!("id=\"web-url-8000\">{url}</code>"))
            && page.contains("id=\"ssh-forward\"")
            && page.contains("-L PORT:localhost:PORT alice+web@"),
        "{page}"
    );
    assert!(
        !page.contains("forward-ports-form"),
        "restricting ports is an admin's"
    );

    // Not signed in to the app: sent to gpudock's hand-off page.
    let anon = common::client_trusting(&srv.data_dir().join("tls/cert.pem"));
    let r = anon.get(format!("{url}headers?x=1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(
        to.starts_with(&srv.url(&format!("/instances/{id}/web/8000/open?next="))),
        "{to}"
    );

    // Signed in through gpudock with a one-time hand-off.
    let (handoff, cookie, _) = hand_off(&a, &a.alice, &id, 8000).await;
    let again = anon.get(&handoff).send().await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::FORBIDDEN,
        "a hand-off works once"
    );
    let sid = common::ws::session_cookie(srv, "alice", ALICE_PW).await;
    let r = anon
        .get(format!("{url}headers"))
        .header("cookie", format!("{sid}; {cookie}; theirs=1"))
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = r.text().await.unwrap();
    assert!(seen.contains("HTTP_X_FORWARDED_PROTO=https"), "{seen}");
    assert!(seen.contains("HTTP_X_FORWARDED_FOR=127.0.0.1"), "{seen}");
    assert!(
        seen.contains(&format!("HTTP_X_FORWARDED_PORT={proxy_port}")),
        "{seen}"
    );
    assert!(
        seen.contains("HTTP_COOKIE=theirs=1\n"),
        "gpudock's cookies stay out: {seen}"
    );
    assert!(!seen.contains("gpudock"), "{seen}");

    // Streaming is not buffered: the first bytes come before the end (2 s).
    let started = Instant::now();
    let mut r = anon
        .get(format!("{url}stream"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first = r.chunk().await.unwrap().unwrap();
    let first_after = started.elapsed();
    assert!(!first.is_empty());
    let mut total = first.len();
    while let Some(c) = r.chunk().await.unwrap() {
        total += c.len();
    }
    let ended = started.elapsed();
    assert!(ended >= Duration::from_secs(2));
    // A buffered body would bring its first bytes with the last ones; a
    // loaded machine may delay both, but not the 2 s between them.
    assert!(
        ended - first_after >= Duration::from_secs(1),
        "first bytes after {first_after:?}, the end after {ended:?}"
    );
    assert_eq!(total, 262_144 + 4, "the whole body");

    // WebSocket through the proxy, with the proxy's cookie.
    let mut ws = proxy_ws(srv, &url, &cookie).await;

    // The same through the node over TLS (the relay route).
    let tls_id = a.webtls["id"].clone();
    let (s, b) = post(
        &a.alice,
        &srv.url(&format!("/api/v1/instances/{tls_id}/web")),
        json!({"port": 8000}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let tls_url = b["url"].as_str().unwrap().to_string();
    assert_ne!(tls_url, url, "each service has an origin of its own");
    let (_, tls_cookie, _) = hand_off(&a, &a.alice, &tls_id, 8000).await;
    let r = anon
        .get(format!("{tls_url}headers"))
        .header("cookie", &tls_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("HTTP_X_FORWARDED_PROTO=https")
    );
    // A cookie of one app's origin does not open another app.
    let r = anon
        .get(format!("{tls_url}headers"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    drop(proxy_ws(srv, &tls_url, &tls_cookie).await);

    // Another tenant's user: no hand-off, and alice's cookie is hers only.
    let r = a
        .carol
        .get(srv.url(&format!("/instances/{id}/web/8000/open")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(a.lab.audited("action=web.open").await >= 1);

    // Checked on every request: web access turned off ends the sign-in and
    // the open WebSocket.
    let (st, b) = send(
        &a.alice,
        "DELETE",
        &srv.url(&format!("/api/v1/instances/{id}/web/8000")),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    let r = anon
        .get(format!("{url}headers"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket outlived web access");

    // Signing out of gpudock signs out of the apps: the other service's
    // cookie no longer opens it (the browser is sent to sign in again), and
    // a WebSocket open through it ends.
    let r = anon
        .get(format!("{tls_url}headers"))
        .header("cookie", &tls_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "signed in before");
    let mut tls_ws = proxy_ws(srv, &tls_url, &tls_cookie).await;
    let (s, _) = post(&a.alice, &srv.url("/api/v1/auth/logout"), json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let r = anon
        .get(format!("{tls_url}headers"))
        .header("cookie", &tls_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed out of the app");
    assert!(
        location(&r).contains(&format!("/instances/{tls_id}/web/8000/open")),
        "{}",
        location(&r)
    );
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match tls_ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket outlived the sign-out");
}

/// Each proxied request is checked anew: with one sign-in cookie, the
/// instance stopped is refused on the very next request (503) and served
/// again once it runs (the container's new network namespace: the one
/// entered before, and its spare sockets, refuse and are forgotten); the
/// role's record withdrawn refuses the next request (403) and ends the
/// sign-in; the instance deleted takes its web access with it (404).
#[tokio::test]
async fn the_proxy_refuses_the_very_next_request_when_access_changes() {
    let a = apps("").await;
    let srv = &a.lab.srv;
    let id = a.web["id"].clone();
    let (s, b) = post(
        &a.alice,
        &srv.url(&format!("/api/v1/instances/{id}/web")),
        json!({"port": 8000}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let url = format!("{}headers", b["url"].as_str().unwrap());
    let (_, cookie, _) = hand_off(&a, &a.alice, &id, 8000).await;
    let anon = common::client_trusting(&srv.data_dir().join("tls/cert.pem"));
    let status = async |cookie: &str| {
        let r = anon.get(&url).header("cookie", cookie).send().await;
        r.unwrap().status()
    };
    // Several requests: the namespace is entered, then its spare sockets used.
    for _ in 0..6 {
        assert_eq!(status(&cookie).await, StatusCode::OK);
    }

    let act = async |what: &str| {
        let (s, b) = post(
            &a.alice,
            &srv.url(&format!("/api/v1/instances/{id}/{what}")),
            json!({}),
        )
        .await;
        assert!(s.is_success(), "{what}: {b}");
    };
    act("stop").await;
    assert_eq!(status(&cookie).await, StatusCode::SERVICE_UNAVAILABLE);
    act("start").await;
    until(
        "the app to answer again",
        Duration::from_secs(30),
        async || status(&cookie).await == StatusCode::OK,
    )
    .await;
    for _ in 0..6 {
        assert_eq!(status(&cookie).await, StatusCode::OK);
    }

    let web = perm_id(&a.lab, "GET", "/instances/{id}/web/{port}/open").await;
    let grant = srv.url(&format!("/api/v1/permissions/customer_member/{web}"));
    let (s, b) = send(&a.lab.admin, "DELETE", &grant, Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(status(&cookie).await, StatusCode::FORBIDDEN);
    let (s, b) = send(&a.lab.admin, "PUT", &grant, Some(json!({}))).await;
    assert!(s.is_success(), "{b}");
    assert_eq!(
        status(&cookie).await,
        StatusCode::SEE_OTHER,
        "the refused sign-in is gone: sign in again"
    );

    let (_, cookie, _) = hand_off(&a, &a.alice, &id, 8000).await;
    assert_eq!(status(&cookie).await, StatusCode::OK);
    let (s, b) = send(
        &a.lab.admin,
        "DELETE",
        &srv.url(&format!("/api/v1/instances/{id}")),
        Some(json!({})),
    )
    .await;
    assert!(s.is_success(), "{b}");
    assert_eq!(status(&cookie).await, StatusCode::NOT_FOUND);
}

/// Waits until `ws` ends (closed, failed or gone); false after `within`.
async fn ws_ends<S>(ws: &mut S, within: Duration) -> bool
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// `ssh -N -L` as alice to port 8000 of the instance `login` names, once
/// an HTTP request went through it: the client and its local port.
async fn tunnel_up(a: &Apps, login: &str) -> (Talk, u16) {
    let local = dockerd::free_port();
    let t = Talk::start(&mut ssh(
        a.port,
        login,
        Some(ALICE_PW),
        None,
        &["-N", "-L", &format!("{local}:localhost:8000")],
    ))
    .await;
    get_until_up(&format!("http://127.0.0.1:{local}/")).await;
    (t, local)
}

/// A tunnel is a session: it counts against the per-user limit, so with
/// `max_per_user = 1` a second one (another `ssh` connection) is refused
/// with the limit's message while the first is open, and opens once the
/// first has closed.
#[tokio::test]
async fn tunnels_count_against_the_per_user_session_limit() {
    let a = apps("[sessions]\nmax_per_user = 1\n").await;
    let (t, _) = tunnel_up(&a, "alice+web").await;
    assert_eq!(tunnels_to(&a.lab, "web").await.len(), 1);
    let r = forward_once(&a, "alice+web", ALICE_PW, "localhost:8000").await;
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("refused: you already have 1 open sessions (the most allowed per user"),
        "{}",
        r.stderr
    );
    assert_eq!(tunnels_to(&a.lab, "web").await.len(), 1, "no second tunnel");
    drop(t.kill().await);
    until(
        "the first tunnel's record to close",
        Duration::from_secs(5),
        async || tunnels_to(&a.lab, "web").await.is_empty(),
    )
    .await;
    let r = run(
        &mut ssh_logging(
            "INFO",
            a.port,
            "alice+web",
            Some(ALICE_PW),
            None,
            &["-W", "localhost:8000"],
        ),
        "GET / HTTP/1.0\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    assert!(r.stdout.starts_with("HTTP/1."), "{} {}", r.stdout, r.stderr);
}

/// The live tunnels to instance `name`.
async fn tunnels_to(lab: &Lab, name: &str) -> Vec<Value> {
    sessions_of(lab, "status=live&protocol=port_forward")
        .await
        .into_iter()
        .filter(|s| s["instance_name"] == name)
        .collect()
}

/// What takes access away ends open tunnels and proxied connections at
/// once, not when they next move a byte: the instance deleted (its
/// tunnels), the user disabled (their tunnels, a WebSocket through a
/// tunnel, a WebSocket through the proxy, the SSH connection).
#[tokio::test]
async fn deletion_and_revocation_end_tunnels_and_proxied_connections_at_once() {
    let a = apps("").await;
    let srv = &a.lab.srv;

    // The instance deleted by an admin: its tunnel ends with it.
    let (t, _) = tunnel_up(&a, "alice+webtls").await;
    let open = tunnels_to(&a.lab, "webtls").await;
    assert_eq!(open.len(), 1, "{open:?}");
    // And a WebSocket to it through the proxy (over the TLS node's relay).
    let (_, _, mut proxied) = web_ws(&a, &a.webtls["id"]).await;
    let (s, b) = send(
        &a.lab.admin,
        "DELETE",
        &srv.url(&format!("/api/v1/instances/{}", a.webtls["id"])),
        Some(json!({})),
    )
    .await;
    assert!(s.is_success(), "{b}");
    let asked = Instant::now();
    until(
        "the deleted instance's tunnel to end",
        Duration::from_secs(5),
        async || tunnels_to(&a.lab, "webtls").await.is_empty(),
    )
    .await;
    eprintln!("tunnel ended {:?} after the deletion", asked.elapsed());
    // At once, not at the proxy's next check (every 5 s).
    assert!(
        ws_ends(&mut proxied, Duration::from_secs(2)).await,
        "the proxied WebSocket outlived the deleted instance"
    );
    eprintln!(
        "proxied WebSocket ended {:?} after the deletion",
        asked.elapsed()
    );
    let (_, rec) = a
        .lab
        .get(&format!("/api/v1/sessions/{}", open[0]["id"]))
        .await;
    assert_eq!(rec["end_reason"], "access_revoked", "{rec}");
    drop(t.kill().await);

    // The user disabled: everything of theirs through the jumpbox and the
    // proxy ends.
    let (url, cookie, mut proxied) = web_ws(&a, &a.web["id"]).await;
    let (t, local) = tunnel_up(&a, "alice+web").await;
    let (mut tunneled, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{local}/ws"))
        .await
        .unwrap();
    let (_, me) = get(&a.alice, &srv.url("/api/v1/me")).await;
    let alice = me["user"]["id"].as_i64().unwrap();
    let (s, b) = patch(
        &a.lab.admin,
        &srv.url(&format!("/api/v1/users/{alice}")),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let asked = Instant::now();
    assert!(
        ws_ends(&mut proxied, Duration::from_secs(5)).await,
        "the proxied WebSocket outlived the revocation"
    );
    assert!(
        ws_ends(&mut tunneled, Duration::from_secs(5)).await,
        "the WebSocket through the tunnel outlived the revocation"
    );
    let r = t.finish(true, Duration::from_secs(5)).await;
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "ended after {took:?}");
    until(
        "the tunnel's record to close",
        Duration::from_secs(5),
        async || tunnels_to(&a.lab, "web").await.is_empty(),
    )
    .await;
    let r = common::client_trusting(&srv.data_dir().join("tls/cert.pem"))
        .get(format!("{url}headers"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the app's sign-in ended");
}

/// With `[proxy] base_domain`, services are `https://<port>-<id>.<domain>`
/// on the proxy's one port, with a wildcard certificate (the client
/// resolves the names itself, standing in for the wildcard DNS record).
#[tokio::test]
async fn the_proxy_serves_sub_domains_with_a_base_domain() {
    let pair = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["*.apps.test".to_string()]).unwrap();
    let (cert, key) = (pair.path().join("cert.pem"), pair.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let a = apps(&format!(
        "[proxy]\nbase_domain = \"apps.test\"\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    let srv = &a.lab.srv;
    let id = a.web["id"].clone();
    assert_eq!(srv.proxy_ports().len(), 1, "one port in domain mode");
    let (s, b) = post(
        &a.alice,
        &srv.url(&format!("/api/v1/instances/{id}/web")),
        json!({"port": 8000}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let port = srv.proxy_ports()[0];
    let host = format!("8000-{id}.apps.test");
    assert_eq!(b["url"], json!(format!("https://{host}:{port}/")), "{b}");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let browser = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .resolve(&host, addr)
        .resolve(&format!("8001-{id}.apps.test"), addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = a
        .alice
        .get(srv.url(&format!("/instances/{id}/web/8000/open")))
        .send()
        .await
        .unwrap();
    let handoff = location(&r);
    assert!(
        handoff.starts_with(&format!("https://{host}:{port}/.gpudock/handoff?t=")),
        "{handoff}"
    );
    let r = browser.get(&handoff).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let r = browser
        .get(format!("https://{host}:{port}/headers"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains(&format!("HTTP_X_FORWARDED_HOST={host}:{port}"))
    );
    // Another port's name serves nothing (no web access on it).
    let r = browser
        .get(format!("https://8001-{id}.apps.test:{port}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Issue 14: at lease end a live SSH session ends with `lease_expired`; a
/// new session to the expired instance is refused even once an admin has
/// started it again; a lease ending soon is announced at sign-in.
#[tokio::test]
async fn a_lease_end_cuts_the_ssh_session_and_refuses_new_ones() {
    let j = jump("[leases]\ncheck_interval_secs = 1\n").await;
    let beta = j
        .lab
        .srv
        .url(&format!("/api/v1/instances/{}", j.beta["id"]));
    let (s, b) = patch(
        &j.lab.admin,
        &beta,
        json!({"lease_end": unix_now() + 2 * 86_400}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    until("the reminder", Duration::from_secs(60), async || {
        j.lab.audited("action=lease.reminder").await == 1
    })
    .await;
    let mut t = Talk::start(&mut ssh(j.port, "alice", Some(ALICE_PW), None, &["-tt"])).await;
    let menu = t.expect("q to quit): ", Duration::from_secs(20)).await;
    assert!(
        menu.contains("the lease of instance \"beta\" ends at"),
        "{menu}"
    );
    t.send("q\r").await;
    t.finish(false, Duration::from_secs(20)).await;

    let mut t = Talk::start(&mut ssh(
        j.port,
        "alice+alpha",
        Some(ALICE_PW),
        None,
        &["-tt"],
    ))
    .await;
    t.expect("# ", Duration::from_secs(20)).await;
    let alpha = j
        .lab
        .srv
        .url(&format!("/api/v1/instances/{}", j.alpha["id"]));
    let (s, b) = patch(&j.lab.admin, &alpha, json!({"lease_end": unix_now() - 60})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let r = t.finish(true, Duration::from_secs(60)).await;
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("lease"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    let s = ended_session(&j, "username=alice&protocol=ssh").await;
    assert_eq!(
        (s["end_reason"].as_str(), s["status"].as_str()),
        (Some("lease_expired"), Some("terminated")),
        "{s}"
    );
    // Started again by an admin, it is still out of reach while expired.
    until(
        "stopped by its lease",
        Duration::from_secs(60),
        async || get(&j.alice, &alpha).await.1["status"] == "exited",
    )
    .await;
    let (s, b) = post(&j.lab.admin, &format!("{alpha}/start"), json!({})).await;
    assert_eq!(
        (s, &b["status"]),
        (StatusCode::OK, &json!("running")),
        "{b}"
    );
    let r = run(
        ssh(j.port, "alice+alpha", Some(ALICE_PW), None, &[]).arg("echo hi"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("lease ended") || r.stdout.contains("lease ended"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stdout.contains("hi\n"), "{}", r.stdout);
}

/// An app that closes its connection after each answer (busybox httpd)
/// on a node over TLS: requests back to back through the proxy reuse the
/// warm relays (framed, see `docker::port`) instead of starting an exec in
/// the container for each.
#[tokio::test]
async fn back_to_back_requests_reuse_the_warm_relays() {
    let a = apps("").await;
    let srv = &a.lab.srv;
    let id = &a.webtls["id"];
    let cid = a.webtls["container_id"].as_str().unwrap().to_string();
    let out = a.lab.docker(&[
        "exec",
        &cid,
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo small > /tmp/www/small \
         && busybox httpd -p 127.0.0.1:9000 -h /tmp/www",
    ]);
    assert!(out.status.success(), "{out:?}");
    let (s, b) = post(
        &a.alice,
        &srv.url(&format!("/api/v1/instances/{id}/web")),
        json!({"port": 9000}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let url = b["url"].as_str().unwrap().to_string();
    let (_, cookie, _) = hand_off(&a, &a.alice, id, 9000).await;
    let anon = common::client_trusting(&srv.data_dir().join("tls/cert.pem"));
    let get = async || {
        let r = anon
            .get(format!("{url}small"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "small\n");
    };
    // The first request starts the warm relays; they are ready in a moment.
    get().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let execs = || {
        let out = a.lab.docker(&["inspect", "-f", "{{len .ExecIDs}}", &cid]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    let before = execs();
    for _ in 0..20 {
        get().await;
    }
    let started = execs() - before;
    eprintln!("20 requests back to back started {started} execs");
    assert!(
        started <= 4,
        "{started} execs for 20 requests:\n{}",
        srv.logs()
    );
}
