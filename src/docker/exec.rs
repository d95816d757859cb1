//! Attached `docker exec`: a process in a running container with its
//! input and output bridged to a caller (a web terminal, an SSH channel).
//! dockerd keeps an exec's processes running when the attached connection
//! closes, so every exec carries a tag in its environment and [`end_tagged`]
//! ends all processes that inherited it.

use std::pin::Pin;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWrite;

use super::DockerError;

/// The environment variable that tags an exec's processes.
pub const TAG_VAR: &str = "GPUDOCK_SESSION";

/// A shell: bash where the image has it, sh otherwise.
pub fn shell_argv() -> Vec<String> {
    [
        "/bin/sh",
        "-c",
        "if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi",
    ]
    .map(String::from)
    .to_vec()
}

/// A command line run the way sshd runs one: through the shell.
pub fn command_argv(command: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), command.into()]
}

#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub tty: bool,
    /// `TERM` for a TTY (e.g. `xterm-256color`).
    pub term: Option<String>,
    /// Initial size (columns, rows) of the TTY.
    pub size: Option<(u16, u16)>,
    /// The tag every process of this exec carries (see [`end_tagged`]).
    pub tag: String,
}

/// Output of an exec: with a TTY everything is `Stdout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

impl Output {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Output::Stdout(b) | Output::Stderr(b) => b,
        }
    }
}

pub type OutputStream = Pin<Box<dyn Stream<Item = Result<Output, DockerError>> + Send>>;

/// A started, attached exec.
pub struct Exec {
    pub id: String,
    pub output: OutputStream,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

fn err(d: &Docker) -> impl Fn(bollard::errors::Error) -> DockerError + Send + Sync + use<> {
    let secs = d.timeout().as_secs();
    move |e| DockerError::from_bollard(e, secs)
}

/// Creates and starts the exec, attached; sizes its TTY once started
/// (dockerd refuses a resize before the start).
pub async fn start(d: &Docker, container: &str, spec: &ExecSpec) -> Result<Exec, DockerError> {
    let mut env = vec![format!("{TAG_VAR}={}", spec.tag)];
    if let Some(t) = &spec.term {
        env.push(format!("TERM={t}"));
    }
    let opts = CreateExecOptions {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(spec.tty),
        env: Some(env),
        cmd: Some(spec.argv.clone()),
        ..Default::default()
    };
    let id = d.create_exec(container, opts).await.map_err(err(d))?.id;
    let start = StartExecOptions {
        detach: false,
        tty: spec.tty,
        output_capacity: Some(64 * 1024),
    };
    let StartExecResults::Attached { output, input } =
        d.start_exec(&id, Some(start)).await.map_err(err(d))?
    else {
        return Err(DockerError::Api("the exec started detached".into()));
    };
    // Best effort: a command that ends at once leaves nothing to size.
    if let (true, Some((cols, rows))) = (spec.tty, spec.size)
        && let Err(e) = resize(d, &id, cols, rows).await
    {
        log::debug!("exec {id}: initial resize: {e}");
    }
    let e = err(d);
    let output = output.filter_map(move |item| {
        let mapped = match item {
            Ok(LogOutput::StdErr { message }) => Some(Ok(Output::Stderr(message))),
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                Some(Ok(Output::Stdout(message)))
            }
            Ok(LogOutput::StdIn { .. }) => None,
            Err(x) => Some(Err(e(x))),
        };
        std::future::ready(mapped)
    });
    Ok(Exec {
        id,
        output: Box::pin(output),
        input,
    })
}

pub async fn resize(d: &Docker, exec: &str, cols: u16, rows: u16) -> Result<(), DockerError> {
    let opts = ResizeExecOptions {
        width: cols.max(1),
        height: rows.max(1),
    };
    d.resize_exec(exec, opts).await.map_err(err(d))
}

/// The exec's exit code; `None` while it runs.
pub async fn exit_code(d: &Docker, exec: &str) -> Result<Option<i64>, DockerError> {
    let r = d.inspect_exec(exec).await.map_err(err(d))?;
    Ok(if r.running.unwrap_or(false) {
        None
    } else {
        r.exit_code
    })
}

/// The script that ends every process carrying `GPUDOCK_SESSION=<tag>`:
/// SIGHUP (a terminal hang-up) first, SIGKILL for what is left a second
/// later. A process matches on a whole `NAME=value` entry, so session 4
/// never matches session 42. Needs only sh, tr and kill (busybox has them).
fn sweep_script(tag: &str) -> String {
    format!(
        "found() {{ for p in /proc/[0-9]*; do \
           tr '\\000' '\\n' 2>/dev/null < \"$p/environ\" | while IFS= read -r l; do \
             if [ \"$l\" = \"{TAG_VAR}={tag}\" ]; then echo \"${{p#/proc/}}\"; break; fi; \
           done; done; }}; \
         for p in $(found); do kill -HUP \"$p\" 2>/dev/null; done; \
         sleep 1; \
         for p in $(found); do kill -KILL \"$p\" 2>/dev/null; done; true"
    )
}

/// Ends the processes of the exec tagged `tag` (the shell and whatever it
/// started), so that nothing outlives the session. The sweep itself runs
/// as a detached exec without the tag, and this waits for it. A container
/// that is gone or not running has nothing left to end: that is success.
pub async fn end_tagged(d: &Docker, container: &str, tag: &str) -> Result<(), DockerError> {
    // Tags are our own (digits and letters); anything else would be a bug.
    if !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(DockerError::Api(format!(
            "refusing an odd exec tag {tag:?}"
        )));
    }
    let opts = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            sweep_script(tag),
        ]),
        ..Default::default()
    };
    let id = match d.create_exec(container, opts).await {
        Ok(r) => r.id,
        // 404: no such container; 409: it is not running.
        Err(e) if matches!(super::api_status(&e), Some(404 | 409)) => return Ok(()),
        Err(e) => return Err(err(d)(e)),
    };
    if let StartExecResults::Attached { mut output, .. } =
        d.start_exec(&id, None).await.map_err(err(d))?
    {
        while output.next().await.is_some() {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_names_only_its_tag() {
        let s = sweep_script("s42-ab");
        assert!(s.contains("= \"GPUDOCK_SESSION=s42-ab\" ]"), "{s}");
        assert!(s.contains("kill -HUP") && s.contains("kill -KILL"));
    }

    #[test]
    fn commands_go_through_the_shell() {
        assert_eq!(command_argv("echo a b"), ["/bin/sh", "-c", "echo a b"]);
        assert_eq!(shell_argv()[0], "/bin/sh");
    }
}
