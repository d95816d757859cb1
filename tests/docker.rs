//! `gpudock::docker` against a real dockerd (tests/common/dockerd.rs): probing
//! over the unix socket and over TLS from in-memory PEM, and the messages an
//! admin reads when the certificate, the CA, the port or the daemon is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::dockerd::{self, TEST_IMAGE, TestDaemon};
use gpudock::docker::{self, DockerError, Endpoint, EngineReport, TlsMaterial};
use gpudock::secrets::Secret;

const TIMEOUT: u64 = 20;

fn unix_ep(d: &TestDaemon) -> Endpoint {
    Endpoint {
        url: d.unix_url.clone(),
        tls: None,
    }
}

fn tls_ep(d: &TestDaemon) -> Endpoint {
    Endpoint {
        url: d.tcp_url.clone(),
        tls: Some(TlsMaterial {
            ca_pem: d.ca_pem.clone(),
            cert_pem: d.client_cert_pem.clone(),
            key_pem: Secret::new(d.client_key_pem.clone()),
        }),
    }
}

/// Probes `ep`, returning the result and how long it took.
async fn probe(ep: &Endpoint, timeout: u64) -> (Result<EngineReport, DockerError>, Duration) {
    let docker = docker::connect(ep, timeout).unwrap();
    let started = Instant::now();
    let r = docker::probe(&docker, timeout).await;
    (r, started.elapsed())
}

fn expect_err(r: Result<EngineReport, DockerError>) -> DockerError {
    match r {
        Ok(report) => panic!("expected an error, got {report:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn probe_over_the_unix_socket() {
    let d = dockerd::shared();
    let ep = unix_ep(d);
    let (r, first) = probe(&ep, TIMEOUT).await;
    let report = r.unwrap();
    let (_, again) = probe(&ep, TIMEOUT).await;
    eprintln!("EngineReport (unix): {report:#?}");
    eprintln!("probe over unix: first {first:?}, again {again:?}");
    assert!(!report.docker_version.is_empty());
    assert!(!report.api_version.is_empty());
    assert!(report.cpus >= 1, "{report:?}");
    assert!(report.memory_bytes > 0, "{report:?}");
    assert!(!report.storage_driver.is_empty());
    assert!(!report.storage_opt_size, "the test daemon is not on xfs");
    assert!(!report.nvidia_runtime);
}

#[tokio::test]
async fn the_negotiated_client_can_make_further_calls() {
    let d = dockerd::shared();
    let docker = docker::connect(&unix_ep(d), TIMEOUT).unwrap();
    docker::negotiate(&docker, TIMEOUT).await.unwrap();
    let images = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .unwrap();
    let tags: Vec<&String> = images.iter().flat_map(|i| &i.repo_tags).collect();
    assert!(tags.iter().any(|t| *t == TEST_IMAGE), "{tags:?}");
}

#[tokio::test]
async fn probe_over_tls_with_in_memory_certificates() {
    let d = dockerd::shared();
    let (unix, _) = probe(&unix_ep(d), TIMEOUT).await;
    let (tls, first) = probe(&tls_ep(d), TIMEOUT).await;
    let (tls, unix) = (tls.unwrap(), unix.unwrap());
    eprintln!("probe over TLS: {first:?} (handshake included)");
    assert_eq!(tls.docker_version, unix.docker_version);
    assert_eq!(tls, unix);
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_rejected() {
    let d = dockerd::shared();
    let (cert, key) = dockerd::foreign_client_pem();
    let mut ep = tls_ep(d);
    ep.tls = Some(TlsMaterial {
        ca_pem: d.ca_pem.clone(),
        cert_pem: cert,
        key_pem: Secret::new(key),
    });
    let (r, took) = probe(&ep, TIMEOUT).await;
    let e = expect_err(r);
    eprintln!("foreign client certificate ({took:?}): {e}");
    assert!(matches!(e, DockerError::Tls(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("TLS handshake rejected"), "{msg}");
    assert!(
        msg.contains("did not accept the client certificate"),
        "{msg}"
    );
}

/// A CA that signed nothing the daemons use.
fn unrelated_ca_pem(name: &str) -> String {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    p.self_signed(&key).unwrap().pem()
}

#[tokio::test]
async fn a_wrong_ca_is_refused() {
    let d = dockerd::shared();
    // Another name, and the same name as the daemon's CA with another key.
    for name in ["some other CA", "gpudock test CA"] {
        let mut ep = tls_ep(d);
        if let Some(tls) = ep.tls.as_mut() {
            tls.ca_pem = unrelated_ca_pem(name);
        }
        let (r, took) = probe(&ep, TIMEOUT).await;
        let e = expect_err(r);
        eprintln!("wrong CA named {name:?} ({took:?}): {e}");
        assert!(matches!(e, DockerError::Tls(_)), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("server certificate of 127.0.0.1:")
                && msg.contains("not trusted by the given CA"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn plain_tcp_to_the_tls_port_says_tls_is_needed() {
    let d = dockerd::shared();
    let ep = Endpoint {
        url: d.tcp_url.clone(),
        tls: None,
    };
    let (r, _) = probe(&ep, TIMEOUT).await;
    let e = expect_err(r);
    eprintln!("plain tcp to the TLS port: {e}");
    assert!(
        matches!(e, DockerError::Tls(ref m) if m.contains("expects TLS")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable_within_the_timeout() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ep = Endpoint {
        url: format!("tcp://127.0.0.1:{port}"),
        tls: tls_ep(dockerd::shared()).tls,
    };
    let (r, took) = probe(&ep, 5).await;
    let e = expect_err(r);
    eprintln!("closed port ({took:?}): {e}");
    assert_eq!(
        e,
        DockerError::Unreachable(format!("connection refused to 127.0.0.1:{port}"))
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    // Accepts connections (the kernel's backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ep = Endpoint {
        url: format!("tcp://127.0.0.1:{port}"),
        tls: None,
    };
    let (r, took) = probe(&ep, 2).await;
    let e = expect_err(r);
    eprintln!("silent endpoint ({took:?}): {e}");
    assert_eq!(e, DockerError::Timeout(2));
    assert!(took < Duration::from_secs(4), "{took:?}");
    drop(listener);
}

#[tokio::test]
async fn a_stopped_daemon_is_unreachable() {
    let mut d = dockerd::start_private();
    let (unix, tls) = (unix_ep(&d), tls_ep(&d));
    probe(&unix, TIMEOUT).await.0.unwrap();
    probe(&tls, TIMEOUT).await.0.unwrap();
    let docker = docker::connect(&tls, TIMEOUT).unwrap();
    docker::probe(&docker, TIMEOUT).await.unwrap();

    let started = Instant::now();
    d.stop();
    eprintln!("private dockerd stopped in {:?}", started.elapsed());

    let e = expect_err(probe(&unix, 5).await.0);
    eprintln!("stopped daemon, unix: {e}");
    assert!(matches!(e, DockerError::Unreachable(_)), "{e:?}");
    let e = expect_err(probe(&tls, 5).await.0);
    eprintln!("stopped daemon, tls: {e}");
    assert!(
        matches!(e, DockerError::Unreachable(ref m) if m.starts_with("connection refused to 127.0.0.1:")),
        "{e:?}"
    );
    // A client made while the daemon ran (pooled TLS connection) fails too.
    let e = docker::probe(&docker, 5).await.unwrap_err();
    eprintln!("stopped daemon, earlier client: {e}");
    assert!(matches!(e, DockerError::Unreachable(_)), "{e:?}");
}

#[test]
fn the_test_image_exists_and_runs() {
    let d = dockerd::shared();
    let out = dockerd::docker_cli(d, &["image", "inspect", "--format", "{{.Id}}", TEST_IMAGE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dockerd::docker_cli(
        d,
        &[
            "run",
            "--rm",
            TEST_IMAGE,
            "sh",
            "-c",
            "echo ok; sleep 0; cat /etc/passwd",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok\nroot:x:0:0"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cat` in a container through an attached exec (an HTTP upgrade,
/// as the web terminal uses) and checks that input comes back.
async fn exec_echoes(ep: &Endpoint, tag: &str) {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    let docker = docker::connect(ep, TIMEOUT).unwrap();
    docker::negotiate(&docker, TIMEOUT).await.unwrap();
    let name = format!("gd-exec-{tag}-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(TEST_IMAGE.into()),
        cmd: Some(vec!["sleep".into(), "60".into()]),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    let id = docker.create_container(Some(opts), body).await.unwrap().id;
    docker.start_container(&id, None).await.unwrap();
    let exec = CreateExecOptions::<String> {
        cmd: Some(vec!["cat".into()]),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        ..Default::default()
    };
    let exec = docker.create_exec(&id, exec).await.unwrap().id;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = docker.start_exec(&exec, None).await.unwrap()
    else {
        panic!("exec started detached");
    };
    input.write_all(b"ping over the upgrade\n").await.unwrap();
    input.flush().await.unwrap();
    let mut got = String::new();
    let read = async {
        while let Some(chunk) = output.next().await {
            got.push_str(&chunk.unwrap().to_string());
            if got.contains('\n') {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    let rm = RemoveContainerOptionsBuilder::default().force(true).build();
    docker.remove_container(&id, Some(rm)).await.unwrap();
    assert_eq!(got, "ping over the upgrade\n", "over {tag}");
}

#[tokio::test]
async fn an_attached_exec_works_over_unix_and_tls() {
    let d = dockerd::shared();
    exec_echoes(&unix_ep(d), "unix").await;
    exec_echoes(&tls_ep(d), "tls").await;
}

/// Creation takes nothing that exists: a container or volume name in use is
/// refused and left as it was (dockerd would hand back an existing volume,
/// data and all), and a failed or cancelled creation removes only what it
/// made.
#[tokio::test]
async fn creation_takes_no_name_in_use_and_removes_only_what_it_made() {
    use gpudock::docker::containers::{self, ContainerSpec, CreateError};
    use tokio_util::sync::CancellationToken;

    let d = dockerd::shared();
    let docker = docker::connect(&unix_ep(d), TIMEOUT).unwrap();
    docker::negotiate(&docker, TIMEOUT).await.unwrap();
    let cli = |args: &[&str]| dockerd::docker_cli(d, args);
    let exists = |kind: &str, name: &str| cli(&[kind, "inspect", name]).status.success();
    let spec = |name: &str| ContainerSpec {
        name: name.to_string(),
        image: TEST_IMAGE.to_string(),
        labels: Default::default(),
        nano_cpus: 0,
        memory_bytes: 0,
        disk_size_gb: 0,
        data_volume: Some(format!("{name}-data")),
        gpu_device_ids: vec![],
        read_only: vec![],
    };
    let create = async |s: &ContainerSpec, cancel: &CancellationToken| {
        containers::create_and_start(&docker, s, cancel, &mut |_| {}).await
    };
    let go = CancellationToken::new();
    let base = format!("names-{}", std::process::id());

    // A volume of the name exists (someone's data): refused, kept.
    let v = format!("{base}-v");
    assert!(
        cli(&["volume", "create", &format!("{v}-data")])
            .status
            .success()
    );
    let r = create(&spec(&v), &go).await;
    assert!(
        matches!(&r, Err(CreateError::NameTaken { kind: "volume", .. })),
        "{r:?}"
    );
    assert!(
        exists("volume", &format!("{v}-data")),
        "the volume was removed"
    );
    assert!(!exists("container", &v), "a container was made");

    // A container of the name exists: refused, kept, no volume made.
    let c = format!("{base}-c");
    assert!(cli(&["create", "--name", &c, TEST_IMAGE]).status.success());
    let r = create(&spec(&c), &go).await;
    assert!(
        matches!(
            &r,
            Err(CreateError::NameTaken {
                kind: "container",
                ..
            })
        ),
        "{r:?}"
    );
    assert!(exists("container", &c), "the container was removed");
    assert!(!exists("volume", &format!("{c}-data")), "a volume was made");

    // Cancelled: nothing is left.
    let stopped = CancellationToken::new();
    stopped.cancel();
    let x = format!("{base}-x");
    let r = create(&spec(&x), &stopped).await;
    assert!(matches!(r, Err(CreateError::Cancelled)), "{r:?}");
    assert!(!exists("container", &x) && !exists("volume", &format!("{x}-data")));

    // A start that fails (a GPU asked of a daemon without the NVIDIA
    // runtime) removes the container and the volume it made.
    let f = format!("{base}-f");
    let mut failing = spec(&f);
    failing.gpu_device_ids = vec!["0".into()];
    let r = create(&failing, &go).await;
    assert!(matches!(r, Err(CreateError::NoGpuRuntime(_))), "{r:?}");
    assert!(!exists("container", &f) && !exists("volume", &format!("{f}-data")));

    // And a free name works, running.
    let ok = format!("{base}-ok");
    let made = create(&spec(&ok), &go).await.unwrap();
    assert_eq!(made.state.as_deref(), Some("running"));
    containers::remove(&docker, &ok, Some(&format!("{ok}-data")))
        .await
        .unwrap();
    cli(&["rm", "-f", &c]);
    cli(&["volume", "rm", &format!("{v}-data")]);
}
