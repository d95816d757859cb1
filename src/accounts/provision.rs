//! Opening an account on a node over SSH, as a background job with visible
//! steps: connect (host key pinned or checked), check the rights (root, or
//! passwordless sudo), `useradd -m`, a generated password through
//! `chpasswd` on stdin, a sign-in as the new user to prove it works, then
//! the record. A failure after the account exists removes it again, so
//! nothing half-done stays behind or is reported as completed. The command
//! lines are built here from checked names, each quoted; secrets only ever
//! travel on stdin.

use serde_json::json;

use super::model::{Step, StepState, os_password};
use super::store::{self, Request};
use crate::app::App;
use crate::audit::{self, Actor, Event, Outcome, Source};
use crate::error::{AppError, RemoteFailure};
use crate::ids::{NodeId, OpeningId};
use crate::jobs::JobHandle;
use crate::nodes::ssh::{self as node_ssh, NodeSession};
use crate::secrets::Secret;
use crate::sshclient::{Output, Session, sh_quote};

/// Command lines run on the node. `p` is the privilege prefix ("" for root,
/// "sudo -n " otherwise); names were checked by `model` and are quoted.
pub mod cmd {
    use super::sh_quote;

    /// Prints the administrators' group of the node: `sudo` (Debian,
    /// Ubuntu) or `wheel` (RHEL family); nothing when it has neither.
    pub const ADMIN_GROUP: &str =
        "for g in sudo wheel; do if grep -q \"^$g:\" /etc/group; then echo \"$g\"; break; fi; done";

    /// Creates the account with a home directory, bash when the node has
    /// it (else sh), the full name as comment and the groups.
    pub fn useradd(p: &str, username: &str, fullname: &str, groups: &[String]) -> String {
        let groups = if groups.is_empty() {
            String::new()
        } else {
            format!(" -G {}", sh_quote(&groups.join(",")))
        };
        format!(
            "{p}useradd -m -s \"$(command -v bash || echo /bin/sh)\" -c {}{groups} -- {}",
            sh_quote(fullname),
            sh_quote(username)
        )
    }

    /// Sets passwords read from stdin as `name:password` lines.
    pub fn chpasswd(p: &str) -> String {
        format!("{p}chpasswd")
    }

    /// Locks the password and expires the account (refuses every sign-in,
    /// keys included).
    pub fn lock(p: &str, username: &str) -> String {
        format!("{p}usermod -L -e 1 -- {}", sh_quote(username))
    }

    pub fn unlock(p: &str, username: &str) -> String {
        format!("{p}usermod -U -e '' -- {}", sh_quote(username))
    }

    /// Ends the account's processes (its open sessions); exit 1 means it
    /// had none.
    pub fn kill(p: &str, username: &str) -> String {
        format!("{p}pkill -KILL -u {}", sh_quote(username))
    }

    pub fn userdel(p: &str, username: &str, remove_home: bool) -> String {
        let r = if remove_home { "-r " } else { "" };
        format!("{p}userdel {r}-- {}", sh_quote(username))
    }
}

/// `name:password\n` for chpasswd's stdin.
pub fn chpasswd_line(username: &str, password: &Secret<String>) -> Secret<Vec<u8>> {
    Secret::new(format!("{username}:{}\n", password.expose()).into_bytes())
}

fn remote(kind: RemoteFailure, detail: impl Into<String>) -> AppError {
    AppError::Remote {
        kind,
        detail: detail.into(),
    }
}

/// What a failed account command means: no rights, or the node refused.
pub fn classify(what: &str, username: &str, out: &Output) -> AppError {
    let err = out.err();
    let code = out.status.map_or("a signal".to_string(), |c| c.to_string());
    if out.status == Some(127) {
        return remote(
            RemoteFailure::UserCreation,
            format!(
                "{what} is not installed on the node (a Linux host with the shadow tools is needed): {err}"
            ),
        );
    }
    let lower = err.to_ascii_lowercase();
    if lower.contains("permission denied")
        || lower.contains("cannot lock")
        || lower.contains("password is required")
    {
        return remote(
            RemoteFailure::PermissionDenied,
            format!("{what} was refused the rights it needs: {err}"),
        );
    }
    let detail = match (what, out.status) {
        ("useradd", Some(9)) => format!("the user {username} already exists on the node"),
        ("useradd", Some(6)) => format!("a group does not exist on the node: {err}"),
        ("userdel" | "usermod", Some(6)) => {
            format!("the user {username} does not exist on the node")
        }
        _ => format!("{what} failed (exit {code}): {err}"),
    };
    remote(RemoteFailure::UserCreation, detail)
}

/// The node's user has neither root nor passwordless sudo.
fn denied(user: &str) -> AppError {
    remote(
        RemoteFailure::PermissionDenied,
        format!(
            "{user} is not root and cannot use sudo without a password: sign in as root, or allow \
             {user} passwordless sudo (NOPASSWD) for useradd, usermod, userdel, chpasswd and pkill"
        ),
    )
}

/// How the node's user gets root: "" (is root) or "sudo -n ".
async fn prefix_of(ns: &NodeSession) -> Result<&'static str, AppError> {
    match node_ssh::privilege(&ns.session).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(denied(&ns.username)),
        Err(e) => Err(remote(node_ssh::failure_of(&e), e.to_string())),
    }
}

/// Signs in to the node as its admin user and finds how to get root.
pub async fn open_admin(
    app: &App,
    node: NodeId,
    actor: &Actor,
    src: &Source,
) -> Result<(NodeSession, &'static str), AppError> {
    let ns = node_ssh::connect(app, node, actor, src).await?;
    match prefix_of(&ns).await {
        Ok(p) => Ok((ns, p)),
        Err(e) => {
            ns.session.close().await;
            Err(e)
        }
    }
}

/// Runs `command` and turns a failure into the right class.
pub async fn run_cmd(
    s: &Session,
    what: &str,
    username: &str,
    command: &str,
    stdin: Option<&[u8]>,
) -> Result<Output, AppError> {
    let out = s
        .exec(command, stdin)
        .await
        .map_err(|e| remote(node_ssh::failure_of(&e), e.to_string()))?;
    if out.success() {
        Ok(out)
    } else {
        Err(classify(what, username, &out))
    }
}

/// Sets a new password with chpasswd (on stdin).
pub async fn set_password(
    s: &Session,
    prefix: &str,
    username: &str,
    password: &Secret<String>,
) -> Result<(), AppError> {
    let line = chpasswd_line(username, password);
    run_cmd(
        s,
        "chpasswd",
        username,
        &cmd::chpasswd(prefix),
        Some(line.expose()),
    )
    .await?;
    Ok(())
}

/// Signs in as `username` with `password` and checks who it is.
pub async fn verify_login(
    app: &App,
    node: NodeId,
    username: &str,
    password: &Secret<String>,
) -> Result<(), AppError> {
    let s = node_ssh::connect_as(app, node, username, password)
        .await
        .map_err(|e| match e.kind() {
            Some(_) => remote(
                RemoteFailure::UserCreation,
                format!(
                    "the new account cannot sign in over SSH ({e}); check PasswordAuthentication, \
                     AllowUsers/AllowGroups and the login shell on the node"
                ),
            ),
            None => AppError::from(e),
        })?;
    let out = s.exec("id -un", None).await;
    s.close().await;
    match out {
        Ok(o) if o.success() && o.out() == username => Ok(()),
        Ok(o) => Err(remote(
            RemoteFailure::UserCreation,
            format!("signed in, but `id -un` said {:?} {}", o.out(), o.err()),
        )),
        Err(e) => Err(remote(node_ssh::failure_of(&e), e.to_string())),
    }
}

/// The steps of one request, written through to its record as they change.
struct Tracker {
    app: App,
    id: OpeningId,
    steps: Vec<Step>,
    job: JobHandle,
}

impl Tracker {
    async fn set(&mut self, step: &str, state: StepState, detail: impl Into<String>) {
        let detail = detail.into();
        if let Some(s) = self.steps.iter_mut().find(|s| s.step == step) {
            s.state = state;
            s.detail = detail.clone();
        }
        if state == StepState::Running {
            let key = self
                .steps
                .iter()
                .find(|s| s.step == step)
                .map_or("accounts.step_other", Step::label_key);
            self.job.progress(key, detail, None);
        }
        let (id, steps) = (self.id, self.steps.clone());
        let r = self
            .app
            .db
            .write(move |c| {
                store::set_steps(c, id, &steps, crate::db::now()).map_err(AppError::from)
            })
            .await;
        if let Err(e) = r {
            log::warn!("account opening {id}: recording a step: {e}");
        }
    }

    /// `Err(ShuttingDown)` once the server is stopping: the job then stops
    /// before its next step and undoes what it made.
    fn go_on(&self) -> Result<(), AppError> {
        if self.job.cancel_token().is_cancelled() {
            Err(AppError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Marks the running step failed and the rest skipped.
    fn fail_steps(&mut self, detail: &str) {
        let mut failed = false;
        for s in &mut self.steps {
            match s.state {
                StepState::Running if !failed => {
                    s.state = StepState::Failed;
                    s.detail = detail.to_string();
                    failed = true;
                }
                StepState::Pending | StepState::Running => s.state = StepState::Skipped,
                StepState::Done | StepState::Failed | StepState::Skipped => {}
            }
        }
    }
}

/// The job: opens the account of `req` (already moved to processing by
/// `actor`). Returns the request id, or the classified error (also recorded
/// on the request).
pub async fn run(
    app: App,
    req: Request,
    actor: Actor,
    src: Source,
    job: JobHandle,
) -> Result<OpeningId, AppError> {
    let mut t = Tracker {
        app: app.clone(),
        id: req.id,
        steps: req.steps.clone(),
        job,
    };
    let (e, created) = match open(&app, &req, &actor, &src, &mut t).await {
        Ok(done) => return record(&app, &req, &actor, &src, &mut t, done).await,
        Err(failed) => failed,
    };
    let mut message = e_detail(&e);
    if let Some((ns, prefix)) = created {
        message.push_str(&rollback(&ns.session, prefix, &req.username).await);
        ns.session.close().await;
    }
    fail(&app, &req, &actor, &src, &mut t, &e, &message).await;
    Err(e)
}

/// What the request (and its audit record) keeps about `e`: the node's
/// words, or the error's message; an internal error's text goes to the log
/// only, under the reference the message names.
pub fn e_detail(e: &AppError) -> String {
    match e {
        AppError::Remote { detail, .. } => detail.clone(),
        other => other.text(crate::i18n::Tr::english(), true),
    }
}

/// What a successful `open` leaves: the admin connection and the password.
struct Opened {
    ns: NodeSession,
    password: Secret<String>,
}

type OpenError = (AppError, Option<(NodeSession, &'static str)>);

/// Connect, rights, create, password, verify; each step only while the
/// server is not stopping. On an error after the account exists, hands back
/// the connection so the caller removes it.
async fn open(
    app: &App,
    req: &Request,
    actor: &Actor,
    src: &Source,
    t: &mut Tracker,
) -> Result<Opened, OpenError> {
    let node = req.target_host.ok_or_else(|| {
        (
            remote(RemoteFailure::Network, "the target node was deleted"),
            None,
        )
    })?;
    t.go_on().map_err(|e| (e, None))?;
    t.set("connect", StepState::Running, req.target_host_name.clone())
        .await;
    let ns = node_ssh::connect(app, node, actor, src)
        .await
        .map_err(|e| (AppError::from(e), None))?;
    let pin = if ns.pinned_now { " (pinned now)" } else { "" };
    let detail = format!("{}@{} · {}{pin}", ns.username, ns.node_name, ns.fingerprint);
    t.set("connect", StepState::Done, detail).await;

    if let Err(e) = t.go_on() {
        ns.session.close().await;
        return Err((e, None));
    }
    t.set("rights", StepState::Running, String::new()).await;
    let prefix = match prefix_of(&ns).await {
        Ok(p) => p,
        Err(e) => {
            ns.session.close().await;
            return Err((e, None));
        }
    };
    let mut groups = req.groups.clone();
    if req.is_admin {
        let g = ns
            .session
            .exec(cmd::ADMIN_GROUP, None)
            .await
            .map(|o| o.out())
            .unwrap_or_default();
        if g.is_empty() {
            ns.session.close().await;
            return Err((
                remote(
                    RemoteFailure::UserCreation,
                    "the node has no sudo or wheel group for an administrator account",
                ),
                None,
            ));
        }
        groups.insert(0, g);
    }
    let how = if prefix.is_empty() { "root" } else { "sudo" };
    t.set("rights", StepState::Done, how).await;

    if let Err(e) = t.go_on() {
        ns.session.close().await;
        return Err((e, None));
    }
    t.set("create", StepState::Running, req.username.clone())
        .await;
    let add = cmd::useradd(prefix, &req.username, &req.user_fullname, &groups);
    if let Err(e) = run_cmd(&ns.session, "useradd", &req.username, &add, None).await {
        ns.session.close().await;
        return Err((e, None));
    }
    t.set(
        "create",
        StepState::Done,
        format!("{} ({})", req.username, groups.join(",")),
    )
    .await;

    if let Err(e) = t.go_on() {
        return Err((e, Some((ns, prefix))));
    }
    t.set("password", StepState::Running, String::new()).await;
    let password = Secret::new(os_password());
    if let Err(e) = set_password(&ns.session, prefix, &req.username, &password).await {
        return Err((e, Some((ns, prefix))));
    }
    t.set("password", StepState::Done, "chpasswd").await;

    if let Err(e) = t.go_on() {
        return Err((e, Some((ns, prefix))));
    }
    t.set("verify", StepState::Running, String::new()).await;
    if let Err(e) = verify_login(app, node, &req.username, &password).await {
        return Err((e, Some((ns, prefix))));
    }
    t.set(
        "verify",
        StepState::Done,
        format!("ssh {}@{}", req.username, ns.node_name),
    )
    .await;
    Ok(Opened { ns, password })
}

/// Removes an account this job created; returns what to add to the message.
async fn rollback(s: &Session, prefix: &str, username: &str) -> String {
    let _ = s.exec(&cmd::kill(prefix, username), None).await;
    match s.exec(&cmd::userdel(prefix, username, true), None).await {
        Ok(o) if o.success() => " — the half-made account was removed again".to_string(),
        Ok(o) => format!(
            " — removing the half-made account failed ({}): remove {username} on the node by hand",
            o.err()
        ),
        Err(e) => format!(
            " — removing the half-made account failed ({e}): remove {username} on the node by hand"
        ),
    }
}

/// Records the success: the cloud user, the completed request, the audit.
async fn record(
    app: &App,
    req: &Request,
    actor: &Actor,
    src: &Source,
    t: &mut Tracker,
    done: Opened,
) -> Result<OpeningId, AppError> {
    t.set("record", StepState::Running, String::new()).await;
    let sealed = match app.sealer.seal(done.password.expose().as_bytes()) {
        Ok(s) => s,
        Err(e) => return record_failed(app, req, actor, src, t, done, e.into()).await,
    };
    let mut steps = t.steps.clone();
    if let Some(s) = steps.iter_mut().find(|s| s.step == "record") {
        s.state = StepState::Done;
    }
    let (r, a, sr, processor) = (req.clone(), actor.clone(), src.clone(), actor.id);
    let message = format!("{} created on {}", req.username, req.target_host_name);
    let written = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = crate::db::now();
            let cu = store::insert_cloud_user(&tx, &r, &sealed, processor, now)?;
            store::complete(&tx, r.id, cu, &sealed, &message, &steps, now)?;
            let detail = json!({"username": r.username, "node": r.target_host_name, "cloud_user_id": cu,
                "is_admin": r.is_admin, "groups": r.groups});
            audit::append(&tx, &Event::new(&a, &sr, "cloud_user.create", "cloud_user").id(cu).detail(detail.clone()))?;
            audit::append(&tx, &Event::new(&a, &sr, "account_opening.complete", "account_opening").id(r.id).detail(detail))?;
            tx.commit()?;
            Ok::<_, AppError>(())
        })
        .await;
    match written {
        Ok(()) => {
            done.ns.session.close().await;
            Ok(req.id)
        }
        Err(e) => record_failed(app, req, actor, src, t, done, e).await,
    }
}

async fn record_failed(
    app: &App,
    req: &Request,
    actor: &Actor,
    src: &Source,
    t: &mut Tracker,
    done: Opened,
    e: AppError,
) -> Result<OpeningId, AppError> {
    log::error!("account opening {}: recording the result: {e}", req.id);
    let prefix = prefix_of(&done.ns).await.unwrap_or("");
    let mut message = "the account could not be recorded (see the server log)".to_string();
    message.push_str(&rollback(&done.ns.session, prefix, &req.username).await);
    done.ns.session.close().await;
    let err = AppError::internal("recording the account failed");
    fail(app, req, actor, src, t, &err, &message).await;
    Err(err)
}

/// Records the failure on the request, with its class, and audits it.
async fn fail(
    app: &App,
    req: &Request,
    actor: &Actor,
    src: &Source,
    t: &mut Tracker,
    e: &AppError,
    message: &str,
) {
    t.fail_steps(&e_detail(e));
    let kind = match e {
        AppError::Remote { kind, .. } => kind.as_str(),
        AppError::ShuttingDown => "interrupted",
        _ => "internal",
    };
    let (id, steps, msg, kind2) = (
        req.id,
        t.steps.clone(),
        message.to_string(),
        kind.to_string(),
    );
    let (a, s, username) = (actor.clone(), src.clone(), req.username.clone());
    let r = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            store::fail(&tx, id, &kind2, &msg, &steps, crate::db::now())?;
            audit::append(
                &tx,
                &Event::new(&a, &s, "account_opening.fail", "account_opening")
                    .id(id)
                    .outcome(Outcome::Failure)
                    .detail(json!({"username": username, "kind": kind2, "message": msg})),
            )?;
            tx.commit()?;
            Ok::<_, AppError>(())
        })
        .await;
    if let Err(err) = r {
        log::error!("account opening {id}: recording the failure: {err}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn command_lines_quote_every_name() {
        let g = vec!["sudo".to_string(), "docker".to_string()];
        assert_eq!(
            cmd::useradd("", "alice", "Alice O'Hara", &g),
            "useradd -m -s \"$(command -v bash || echo /bin/sh)\" -c 'Alice O'\\''Hara' -G 'sudo,docker' -- 'alice'"
        );
        assert_eq!(
            cmd::useradd("sudo -n ", "bob", "", &[]),
            "sudo -n useradd -m -s \"$(command -v bash || echo /bin/sh)\" -c '' -- 'bob'"
        );
        assert_eq!(cmd::lock("", "bob"), "usermod -L -e 1 -- 'bob'");
        assert_eq!(
            cmd::unlock("sudo -n ", "bob"),
            "sudo -n usermod -U -e '' -- 'bob'"
        );
        assert_eq!(cmd::userdel("", "bob", true), "userdel -r -- 'bob'");
        assert_eq!(cmd::userdel("", "bob", false), "userdel -- 'bob'");
        assert_eq!(cmd::kill("", "bob"), "pkill -KILL -u 'bob'");
        // Even a name that slipped past validation stays one inert word.
        let evil = cmd::userdel("", "x'; reboot; '", true);
        assert_eq!(evil, r"userdel -r -- 'x'\''; reboot; '\'''");
    }

    #[test]
    fn the_password_goes_on_stdin_only() {
        let pw = Secret::new("Abcde-23456".to_string());
        assert_eq!(chpasswd_line("alice", &pw).expose(), b"alice:Abcde-23456\n");
        assert!(!cmd::chpasswd("").contains("Abcde"));
        assert_eq!(format!("{:?}", chpasswd_line("alice", &pw)), "<sealed>");
    }

    fn out(status: u32, err: &str) -> Output {
        Output {
            status: Some(status),
            stdout: Vec::new(),
            stderr: err.as_bytes().to_vec(),
        }
    }

    #[test]
    fn failures_are_classified() {
        let code = |e: AppError| e.code();
        assert_eq!(
            code(classify(
                "useradd",
                "ops",
                &out(9, "useradd: user 'ops' already exists")
            )),
            "user_creation_failed"
        );
        assert!(e_detail(&classify("useradd", "ops", &out(9, ""))).contains("already exists"));
        assert_eq!(
            code(classify(
                "useradd",
                "x",
                &out(
                    1,
                    "useradd: Permission denied.\nuseradd: cannot lock /etc/passwd"
                )
            )),
            "permission_denied"
        );
        assert_eq!(
            code(classify(
                "chpasswd",
                "x",
                &out(1, "sudo: a password is required")
            )),
            "permission_denied"
        );
        assert!(
            e_detail(&classify(
                "useradd",
                "x",
                &out(127, "sh: useradd: not found")
            ))
            .contains("not installed")
        );
    }
}
