//! Figures for remote access (printed, not asserted; `cargo bench --bench
//! remote`, root, with the test packages of README):
//! 1. throughput of `cat` of a 100 MB file inside the container, through
//!    the jumpbox (command mode, and with a TTY: `ssh -tt`) and through the
//!    web terminal (a TTY over a WebSocket over HTTPS), each against plain
//!    `docker exec` (without and with a TTY) in the same run, the commands
//!    compared taking turns; with the CPU time that gpudock, dockerd, the
//!    container's shim and the client spent per run (on a machine with few
//!    cores, the transfer is bound by the sum);
//! 2. the size of the recordings stored against the terminal bytes of
//!    their sessions (bulk text, varied text, coloured output, a typed
//!    shell session);
//! 3. the server's memory with 100 idle jumpbox shell sessions open,
//!    against the same server idle.
//!
//! `REMOTE_BENCH_CAT_ONLY=1` measures only the `ssh cat` part of 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{FAST_STOP, Lab, small_spec};
use common::{make_tenant, make_user, post};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PW: &str = "Velvet-Canyon-Harbor-58!";
const SIZE: u64 = 100 * 1024 * 1024;
const RUNS: usize = 5;

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1_048_576.0 / d.as_secs_f64()
}

fn best(v: &[Duration]) -> Duration {
    *v.iter().min().unwrap()
}

/// CPU time (user + system) from `/proc/<pid>/stat`: the process's own
/// (`children`: false) or that of its waited-for children (true).
fn cpu_of(pid: &str, children: bool) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(4)
        .map(|v| v.parse().unwrap())
        .collect();
    let ticks = if children { f[2] + f[3] } else { f[0] + f[1] };
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// CPU time per run of the server (gpudock), the daemon (dockerd), the
/// container's shim and the client (`docker`, or `sshpass` and `ssh`).
#[derive(Default)]
struct Cpu {
    server: Duration,
    daemon: Duration,
    shim: Duration,
    client: Duration,
}

/// Whose CPU time [`timed`] counts (process ids).
struct Watch {
    server: String,
    daemon: String,
    shim: String,
}

impl Watch {
    fn now(&self) -> [Duration; 4] {
        [
            cpu_of(&self.server, false),
            cpu_of(&self.daemon, false),
            cpu_of(&self.shim, false),
            cpu_of("self", true),
        ]
    }
}

/// The containerd shim of container `cid` (its command line names it).
fn shim_of(cid: &str) -> String {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("/usr/bin/containerd-shim") && cmd.contains(cid) {
            return e.file_name().to_string_lossy().into_owned();
        }
    }
    panic!("no containerd shim names container {cid}");
}

/// Runs each command of `makes` `RUNS` times, in turn (one run of each,
/// then the next round), so that the machine's other load falls on all of
/// them alike; for each, the times, the bytes of stdout, and the mean CPU
/// time per run.
fn timed(w: &Watch, makes: &mut [&mut dyn FnMut() -> Command]) -> Vec<(Vec<Duration>, u64, Cpu)> {
    let mut all: Vec<(Vec<Duration>, u64, Cpu)> = makes
        .iter()
        .map(|_| (Vec::new(), 0, Cpu::default()))
        .collect();
    for _ in 0..RUNS {
        for (make, (times, bytes, cpu)) in makes.iter_mut().zip(all.iter_mut()) {
            let before = w.now();
            let started = Instant::now();
            let mut child = make()
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut out = child.stdout.take().unwrap();
            *bytes = std::io::copy(&mut out, &mut std::io::sink()).unwrap();
            assert!(child.wait().unwrap().success());
            times.push(started.elapsed());
            let after = w.now();
            let n = RUNS as u32;
            cpu.server += (after[0] - before[0]) / n;
            cpu.daemon += (after[1] - before[1]) / n;
            cpu.shim += (after[2] - before[2]) / n;
            cpu.client += (after[3] - before[3]) / n;
        }
    }
    all
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `ssh` to the jumpbox; `opts` go before the destination.
fn ssh(port: u16, login: &str, opts: &[&str]) -> Command {
    let mut c = Command::new("sshpass");
    c.args(["-p", PW, "ssh", "-p", &port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ])
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args(opts)
        .arg(format!("{login}@127.0.0.1"));
    c
}

/// `cat` through the web terminal: sends the command, counts the bytes
/// until the end marker (the TTY turns each `\n` into `\r\n`).
async fn web_terminal(srv: &common::Server, id: i64, cookie: &str) -> (Duration, u64) {
    let url = srv
        .url(&format!("/instances/{id}/terminal/ws?cols=200&rows=50"))
        .replacen("https://", "wss://", 1);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", srv.base.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(common::ws::tls_to(srv)),
    )
    .await
    .unwrap();
    // The shell is up once its prompt shows and its cursor query (busybox
    // asks the terminal where the cursor is) is answered.
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\x1b[6n") {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => seen.extend_from_slice(&b),
            Some(Ok(_)) => {}
            other => panic!("the terminal ended before its prompt: {other:?}"),
        }
    }
    ws.send(Message::Binary("\x1b[1;1R".into())).await.unwrap();
    let started = Instant::now();
    // The marker as printed (`END-OF-2-CAT`) differs from the command line
    // that the terminal echoes (`$((1+1))`).
    ws.send(Message::Binary(
        "cat /tmp/big; echo END-OF-$((1+1))-CAT\r".into(),
    ))
    .await
    .unwrap();
    let mut bytes = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                bytes += b.len() as u64;
                tail.extend_from_slice(&b);
                if tail.len() > 64 {
                    tail.drain(..tail.len() - 64);
                }
                // The marker printed by echo (not the command line's echo).
                if tail.windows(14).any(|w| w == b"END-OF-2-CAT\r\n") {
                    break;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the terminal ended: {other:?}"),
        }
    }
    let took = started.elapsed();
    let _ = ws.close(None).await;
    (took, bytes)
}

#[tokio::main]
async fn main() {
    let lab = Lab::new(&format!("{FAST_STOP}[sessions]\nmax_per_user = 0\n"), 64).await;
    let spec = lab.spec(small_spec("s")).await;
    let t = make_tenant(&lab.srv, &lab.admin, "BEN").await;
    let (_, alice) = make_user(
        &lab.srv,
        &lab.admin,
        "alice",
        "customer_member",
        Some(t),
        PW,
    )
    .await;
    let (s, i) = post(
        &alice,
        &lab.srv.url("/api/v1/instances"),
        lab.create_body(spec, "bench"),
    )
    .await;
    assert_eq!(s.as_u16(), 201, "{i}");
    let (id, cid) = (
        i["id"].as_i64().unwrap(),
        i["container_id"].as_str().unwrap().to_string(),
    );
    let at_start = rss_kib(lab.srv.pid());
    // 100 MiB of text lines in the container.
    let out = lab.docker(&[
        "exec",
        &cid,
        "sh",
        "-c",
        &format!("yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {SIZE} > /tmp/big"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let port = lab.srv.ssh_port();
    let docker = |tty: bool| {
        let mut c = Command::new("docker");
        c.args(["-H", &lab.d.unix_url, "exec"]);
        if tty {
            c.arg("-t");
        }
        c.args([cid.as_str(), "cat", "/tmp/big"]);
        c
    };

    let w = Watch {
        server: lab.srv.pid().to_string(),
        daemon: std::fs::read_to_string(lab.d.dir().join("docker.pid"))
            .unwrap()
            .trim()
            .to_string(),
        shim: shim_of(&cid),
    };
    eprintln!("measuring docker exec, the jumpbox, docker exec -t, the web terminal...");
    let mut runs = timed(
        &w,
        &mut [
            &mut || docker(false),
            &mut || {
                let mut c = ssh(port, "alice+bench", &[]);
                c.arg("cat /tmp/big");
                c
            },
            // The same with AES-GCM (hardware AES) instead of OpenSSH's
            // first choice, chacha20-poly1305.
            &mut || {
                let mut c = ssh(port, "alice+bench", &["-c", "aes256-gcm@openssh.com"]);
                c.arg("cat /tmp/big");
                c
            },
        ],
    )
    .into_iter();
    let (plain, plain_bytes, plain_cpu) = runs.next().unwrap();
    let (jump, jump_bytes, jump_cpu) = runs.next().unwrap();
    let (gcm, gcm_bytes, gcm_cpu) = runs.next().unwrap();
    assert_eq!((plain_bytes, jump_bytes, gcm_bytes), (SIZE, SIZE, SIZE));
    let cat_lines = || {
        println!("cat of a 100 MiB text file in the container (best of {RUNS}):");
        println!(
            "  docker exec (no TTY):          {:>7.1} MiB/s",
            mb_s(plain_bytes, best(&plain))
        );
        println!(
            "  jumpbox, ssh command mode:     {:>7.1} MiB/s   ratio to docker exec: {:.2}",
            mb_s(jump_bytes, best(&jump)),
            best(&plain).as_secs_f64() / best(&jump).as_secs_f64()
        );
        println!(
            "  jumpbox, ssh -c aes256-gcm:    {:>7.1} MiB/s   ratio to docker exec: {:.2}",
            mb_s(gcm_bytes, best(&gcm)),
            best(&plain).as_secs_f64() / best(&gcm).as_secs_f64()
        );
        // On a machine with few cores the transfer is bound by the CPU of
        // every process on its path, not only gpudock's.
        println!("  CPU seconds per run (mean of {RUNS}):   gpudock  dockerd     shim  client");
        for (what, c) in [
            ("docker exec", &plain_cpu),
            ("jumpbox, default cipher", &jump_cpu),
            ("jumpbox, aes256-gcm", &gcm_cpu),
        ] {
            println!(
                "    {what:<27} {:>7.3}  {:>7.3}  {:>7.3}  {:>6.3}",
                c.server.as_secs_f64(),
                c.daemon.as_secs_f64(),
                c.shim.as_secs_f64(),
                c.client.as_secs_f64()
            );
        }
    };
    // REMOTE_BENCH_CAT_ONLY=1: only the `ssh cat` figures above.
    if std::env::var_os("REMOTE_BENCH_CAT_ONLY").is_some() {
        cat_lines();
        return;
    }
    let mut runs = timed(
        &w,
        &mut [&mut || docker(true), &mut || {
            let mut c = ssh(port, "alice+bench", &["-tt"]);
            c.arg("cat /tmp/big");
            c
        }],
    )
    .into_iter();
    let (tty, tty_bytes, _) = runs.next().unwrap();
    let (jump_tty, jump_tty_bytes, _) = runs.next().unwrap();
    let cookie = common::ws::session_cookie(&lab.srv, "alice", PW).await;
    let mut web = Vec::new();
    let mut web_bytes = 0;
    for _ in 0..RUNS {
        let (d, b) = web_terminal(&lab.srv, id, &cookie).await;
        web.push(d);
        web_bytes = b;
    }
    cat_lines();
    println!(
        "  docker exec -t (TTY):          {:>7.1} MiB/s ({tty_bytes} bytes: \\n -> \\r\\n)",
        mb_s(tty_bytes, best(&tty))
    );
    println!(
        "  jumpbox, ssh -tt (TTY):        {:>7.1} MiB/s   ratio to docker exec -t: {:.2} ({jump_tty_bytes} bytes)",
        mb_s(jump_tty_bytes, best(&jump_tty)),
        best(&tty).as_secs_f64() / best(&jump_tty).as_secs_f64()
    );
    println!(
        "  web terminal (TTY, WSS):       {:>7.1} MiB/s   ratio to docker exec: {:.2}, to docker exec -t: {:.2}",
        mb_s(web_bytes, best(&web)),
        best(&plain).as_secs_f64() / best(&web).as_secs_f64(),
        best(&tty).as_secs_f64() / best(&web).as_secs_f64()
    );

    recordings(&lab, &cid, port).await;

    // Memory with 100 idle jumpbox sessions.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(lab.srv.pid());
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut c = ssh(port, "alice+bench", &["-tt"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        clients.push(c.spawn().unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, live) = lab.get("/api/v1/sessions?status=live&limit=1000").await;
        let n = live.as_array().unwrap().len();
        if n >= 100 {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} sessions opened");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let busy = rss_kib(lab.srv.pid());
    println!("server RSS (VmRSS):");
    println!("  before the runs above:         {at_start} KiB");
    println!("  idle, after the runs above:    {idle} KiB");
    println!(
        "  with 100 idle jumpbox shells:  {busy} KiB   ratio {:.2}, {:.0} KiB per session",
        busy as f64 / idle as f64,
        (busy.saturating_sub(idle)) as f64 / 100.0
    );
    for mut c in clients {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Runs `command` through the jumpbox (`-tt`: with a TTY, its input typed
/// from `input`); the id of its session.
async fn session_of(lab: &Lab, port: u16, tty: bool, command: Option<&str>, input: &str) -> i64 {
    let mut c = ssh(port, "alice+bench", if tty { &["-tt"] } else { &[] });
    if let Some(cmd) = command {
        c.arg(cmd);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for line in input.lines() {
            stdin.write_all(format!("{line}\r").as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    assert!(child.wait().unwrap().success());
    // Its record is closed (with its figures) once the session has ended.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, s) = lab.get("/api/v1/sessions?limit=1").await;
        if s[0]["status"] == "closed" {
            return s[0]["id"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "the session did not close: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The recording's size on disk against the terminal bytes of session `id`.
async fn recording_ratio(lab: &Lab, id: i64) -> (u64, i64, f64) {
    let (_, s) = lab.get(&format!("/api/v1/sessions/{id}")).await;
    let out = s["bytes_out"].as_i64().unwrap();
    let dir = lab.srv.data_dir().join("recordings");
    let stored = [format!("{id}.cast.gz"), format!("{id}.cast")]
        .iter()
        .find_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .unwrap();
    (stored, out, stored as f64 / out as f64)
}

/// Recordings of typical sessions, stored against what their terminals
/// showed (the sessions' bytes out).
async fn recordings(lab: &Lab, cid: &str, port: u16) {
    let script = r#"i=0; while [ $i -lt 20000 ]; do printf '\033[1;3%dm%05d\033[0m \033[4m%s\033[0m \033[38;5;%dmcolour\033[0m line %s\n' $((i % 8)) $i $(( (i * 7919) % 100003 )) $((i % 256)) "$i$i"; i=$((i + 1)); done"#;
    let out = lab.docker(&[
        "exec",
        cid,
        "sh",
        "-c",
        &format!("cat > /tmp/colour.sh <<'EOF'\n{script}\nEOF"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let cases: [(&str, bool, Option<&str>, &str); 4] = [
        (
            "bulk text (cat of the 100 MiB file)",
            false,
            Some("cat /tmp/big"),
            "",
        ),
        (
            "varied text (ls -laR, /proc)",
            true,
            Some("ls -laR / 2>/dev/null | head -c 20000000; cat /proc/self/maps /proc/cpuinfo"),
            "",
        ),
        (
            "coloured output (20,000 lines)",
            true,
            Some("sh /tmp/colour.sh"),
            "",
        ),
        (
            "typed shell session",
            true,
            None,
            "ls -la /\necho hello\nps\ncat /etc/passwd\nuname -a\nexit",
        ),
    ];
    println!("recordings: stored bytes / terminal bytes (the session's bytes out):");
    for (what, tty, cmd, input) in cases {
        let id = session_of(lab, port, tty, cmd, input).await;
        let (stored, out, ratio) = recording_ratio(lab, id).await;
        println!("  {what:<40} {stored:>10} / {out:>10} bytes = {ratio:.3}");
    }
}
