//! Account opening (开户申请) end to end against a real OpenSSH server in a
//! container (tests/common/sshd.rs) standing in for a compute node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::sshd::{SshNode, ssh};
use gpudock::secrets::Secret;
use gpudock::sshclient::{self, SshError, Target};

#[tokio::test]
async fn the_ssh_client_pins_runs_commands_and_refuses_a_changed_key() {
    let node = SshNode::start();
    let t = Target {
        host: "127.0.0.1".into(),
        port: node.port,
        username: "root".into(),
    };
    let pw = Secret::new(node.root_password.clone());
    let s = sshclient::connect(&t, &pw, None, Duration::from_secs(10))
        .await
        .unwrap();
    let key = s.host_key.clone();
    let out = s.exec("id -u; cat", Some(b"from-stdin")).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.out(), "0\nfrom-stdin");
    s.close().await;
    let bad = Secret::new("wrong".to_string());
    let e = sshclient::connect(&t, &bad, Some(&key), Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SshError::AuthRejected { .. }), "{e:?}");
    assert!(
        ssh(node.port, "root", &node.root_password, "true")
            .status
            .success()
    );
    let node = node.replace();
    let pw = Secret::new(node.root_password.clone());
    let e = sshclient::connect(&t, &pw, Some(&key), Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e:?}");
}
