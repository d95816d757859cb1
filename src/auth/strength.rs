//! zxcvbn's password estimate, computed by a short-lived child process in a
//! long-running server. The estimator builds its ranked dictionaries on
//! first use and keeps them for the life of the process: 5.6 MB of resident
//! memory after the first password change (issue 11 measured it). A child
//! (`gpudock password-estimate`, the same binary) takes the password on its
//! standard input, answers, and exits with that memory. Password changes
//! are rare, so the spawn (a few ms) costs nothing that matters. Commands
//! that exit anyway (and tests) estimate in their own process.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The estimator's score (0..=4) and its feedback as catalogue keys
/// (`pwfb.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    pub score: u8,
    pub reasons: Vec<String>,
}

/// What the child reads.
#[derive(Serialize, Deserialize)]
struct Question {
    password: String,
    user_inputs: Vec<String>,
}

/// The binary that estimates, once `serve` asked for a child process.
static CHILD: OnceLock<PathBuf> = OnceLock::new();

/// From now on, estimate in a child process running `exe` (this binary).
pub fn in_child_process(exe: PathBuf) {
    let _ = CHILD.set(exe);
}

/// The estimate of `password`, with `user_inputs` counted as guessable: in
/// the child when one was asked for (in this process if it fails, with a
/// warning, so that a password change never fails for it).
pub fn estimate(password: &str, user_inputs: &[&str]) -> Estimate {
    if let Some(exe) = CHILD.get() {
        match off_the_workers(|| ask_child(exe, password, user_inputs)) {
            Ok(e) => return e,
            Err(e) => {
                log::warn!("password estimate in a child process failed ({e}); estimating here")
            }
        }
    }
    estimate_here(password, user_inputs)
}

/// The estimate computed in this process.
pub fn estimate_here(password: &str, user_inputs: &[&str]) -> Estimate {
    let estimate = zxcvbn::zxcvbn(password, user_inputs);
    let mut reasons = Vec::new();
    if let Some(fb) = estimate.feedback() {
        if let Some(w) = fb.warning() {
            reasons.push(format!("pwfb.{w:?}"));
        }
        reasons.extend(fb.suggestions().iter().map(|s| format!("pwfb.{s:?}")));
    }
    Estimate {
        score: u8::from(estimate.score()),
        reasons,
    }
}

/// Runs `f`, which waits for a child process, without holding up the other
/// tasks of a multi-threaded runtime's worker (`serve`'s runtime is one).
fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn ask_child(exe: &PathBuf, password: &str, user_inputs: &[&str]) -> std::io::Result<Estimate> {
    let question = serde_json::to_vec(&Question {
        password: password.to_string(),
        user_inputs: user_inputs.iter().map(|s| s.to_string()).collect(),
    })?;
    let mut child = Command::new(exe)
        .arg(CHILD_COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear()
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&question)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("exited with {}", out.status)));
    }
    serde_json::from_slice(&out.stdout).map_err(std::io::Error::other)
}

/// The hidden command the child runs.
pub const CHILD_COMMAND: &str = "password-estimate";

/// The child's side: one question on standard input, the estimate on
/// standard output.
pub fn answer(input: impl std::io::Read, mut output: impl Write) -> std::io::Result<()> {
    let q: Question = serde_json::from_reader(input).map_err(std::io::Error::other)?;
    let inputs: Vec<&str> = q.user_inputs.iter().map(String::as_str).collect();
    serde_json::to_writer(&mut output, &estimate_here(&q.password, &inputs))
        .map_err(std::io::Error::other)?;
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_answers_what_this_process_computes() {
        let q = serde_json::to_vec(&Question {
            password: "alice1990".into(),
            user_inputs: vec!["alice".into()],
        })
        .unwrap();
        let mut out = Vec::new();
        answer(&q[..], &mut out).unwrap();
        let got: Estimate = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, estimate_here("alice1990", &["alice"]));
        assert!(got.score < 3 && !got.reasons.is_empty(), "{got:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_waiting_estimate_leaves_the_worker_to_other_tasks() {
        // On the only worker, a task spawned before the wait runs during it
        // only if the wait gave the worker up.
        let ran = tokio::spawn(async {
            let (tx, rx) = std::sync::mpsc::channel();
            tokio::spawn(async move {
                let _ = tx.send(());
            });
            off_the_workers(|| rx.recv_timeout(std::time::Duration::from_secs(2)))
        })
        .await
        .unwrap();
        assert!(ran.is_ok(), "the spawned task did not run while we waited");
    }
}
