//! Account opening (开户申请) and cloud users (云电脑用户): their states and
//! the transitions between them, the processing steps, input validation and
//! the generated password. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{FieldError, FieldErrors};
use crate::ids::NodeId;
use crate::validate::{email_field, multiline_text, optional_text, phone_field};

/// pending (待审核) → approved (已批准) | rejected (已拒绝) → processing
/// (处理中) → completed (已完成) | failed (失败); pending too long → expired.
/// (`account_opening_requests.status`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    Pending,
    Approved,
    Rejected,
    Processing,
    Completed,
    Failed,
    Expired,
}

crate::text_enum!(RequestStatus {
    Pending => "pending",
    Approved => "approved",
    Rejected => "rejected",
    Processing => "processing",
    Completed => "completed",
    Failed => "failed",
    Expired => "expired",
});

impl RequestStatus {
    pub fn label_key(self) -> &'static str {
        match self {
            RequestStatus::Pending => "accounts.s_pending",
            RequestStatus::Approved => "accounts.s_approved",
            RequestStatus::Rejected => "accounts.s_rejected",
            RequestStatus::Processing => "accounts.s_processing",
            RequestStatus::Completed => "accounts.s_completed",
            RequestStatus::Failed => "accounts.s_failed",
            RequestStatus::Expired => "accounts.s_expired",
        }
    }

    /// Only a pending request is reviewed.
    pub fn can_review(self) -> bool {
        self == RequestStatus::Pending
    }

    /// An approved request is processed; a failed one may be tried again.
    pub fn can_process(self) -> bool {
        matches!(self, RequestStatus::Approved | RequestStatus::Failed)
    }

    /// Whether the request still holds its username on its node.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RequestStatus::Pending | RequestStatus::Approved | RequestStatus::Processing
        )
    }
}

/// `cloud_users.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloudUserStatus {
    Active,
    Disabled,
    Deleted,
}

crate::text_enum!(CloudUserStatus {
    Active => "active",
    Disabled => "disabled",
    Deleted => "deleted",
});

impl CloudUserStatus {
    pub fn label_key(self) -> &'static str {
        match self {
            CloudUserStatus::Active => "cloudusers.s_active",
            CloudUserStatus::Disabled => "cloudusers.s_disabled",
            CloudUserStatus::Deleted => "cloudusers.s_deleted",
        }
    }
}

/// What an admin does to a cloud user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudAction {
    Disable,
    Enable,
}

impl CloudAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "disable" => Some(CloudAction::Disable),
            "enable" => Some(CloudAction::Enable),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            CloudAction::Disable => "disable",
            CloudAction::Enable => "enable",
        }
    }
    /// The audit action of doing it.
    pub fn audit_action(self) -> &'static str {
        match self {
            CloudAction::Disable => "cloud_user.disable",
            CloudAction::Enable => "cloud_user.enable",
        }
    }
    /// The status the user must have now, and the one it ends in.
    pub fn transition(self) -> (CloudUserStatus, CloudUserStatus) {
        match self {
            CloudAction::Disable => (CloudUserStatus::Active, CloudUserStatus::Disabled),
            CloudAction::Enable => (CloudUserStatus::Disabled, CloudUserStatus::Active),
        }
    }
}

/// The steps of opening an account, in order.
pub const STEPS: [&str; 6] = [
    "connect", "rights", "create", "password", "verify", "record",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
    Skipped,
}

/// One step of processing as the request page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub step: String,
    pub state: StepState,
    /// Untranslated detail (what was done, or what the node said).
    #[serde(default)]
    pub detail: String,
}

impl Step {
    pub fn label_key(&self) -> &'static str {
        match self.step.as_str() {
            "connect" => "accounts.step_connect",
            "rights" => "accounts.step_rights",
            "create" => "accounts.step_create",
            "password" => "accounts.step_password",
            "verify" => "accounts.step_verify",
            "record" => "accounts.step_record",
            _ => "accounts.step_other",
        }
    }
    pub fn state_str(&self) -> &'static str {
        match self.state {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
        }
    }
}

pub fn initial_steps() -> Vec<Step> {
    STEPS
        .iter()
        .map(|s| Step {
            step: (*s).to_string(),
            state: StepState::Pending,
            detail: String::new(),
        })
        .collect()
}

/// Names the system reserves or that belong to services: never opened.
const RESERVED: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "sshd",
    "messagebus",
    "systemd-network",
    "systemd-resolve",
    "systemd-timesync",
    "systemd-coredump",
    "polkitd",
    "docker",
    "sudo",
    "wheel",
    "admin",
    "adm",
    "staff",
    "users",
    "gpudock",
    "operator",
    "halt",
    "shutdown",
    "ftp",
    "postfix",
];

/// A Linux login name: a lower-case letter, then lower-case letters, digits,
/// `_` or `-`, 32 characters at most; not a system name. The name goes into
/// commands run on the node, so nothing else gets through.
pub fn check_os_username(name: &str) -> Result<(), FieldError> {
    let mut chars = name.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !(first && rest && name.len() <= 32) {
        return Err(FieldError::new("err.accounts.username_format"));
    }
    if RESERVED.contains(&name) || name.starts_with("systemd-") {
        return Err(FieldError::new("err.accounts.username_reserved"));
    }
    Ok(())
}

/// A supplementary group name (same alphabet as login names).
pub fn check_group(name: &str) -> Result<(), FieldError> {
    let mut chars = name.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first && rest && name.len() <= 32 {
        Ok(())
    } else {
        Err(FieldError::with_detail("err.accounts.group_format", name))
    }
}

/// Groups from "a, b c" (commas or spaces), each checked, no duplicates.
pub fn parse_groups(errors: &mut FieldErrors, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in text
        .split([',', ' '])
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if let Err(e) = check_group(g) {
            errors.insert("groups", e);
        } else if !out.iter().any(|x| x == g) {
            out.push(g.to_string());
        }
    }
    if out.len() > 16 {
        errors.insert("groups", FieldError::with_detail("err.too_long", "16"));
    }
    out
}

/// The full name goes into the account's comment (GECOS) field, where
/// `:` `,` `=` `\` break the passwd format (control characters are refused
/// like in every name).
fn check_fullname(errors: &mut FieldErrors, value: &str) -> String {
    let v = optional_text(errors, "user_fullname", value, 64);
    if !errors.contains_key("user_fullname") && v.chars().any(|c| ":,=\\".contains(c)) {
        errors.insert(
            "user_fullname",
            FieldError::new("err.accounts.fullname_format"),
        );
    }
    v
}

/// An application as sent by the form or the API.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RequestInput {
    pub contact_email: String,
    pub contact_phone: String,
    pub username: String,
    pub user_fullname: String,
    pub user_email: String,
    pub user_description: String,
    /// The node's id (a number, or a form string).
    pub target_host: Option<Value>,
}

/// A checked application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub contact_email: String,
    pub contact_phone: String,
    pub username: String,
    pub user_fullname: String,
    pub user_email: String,
    pub user_description: String,
    pub target_host: NodeId,
}

pub fn validate_request(input: &RequestInput) -> Result<NewRequest, FieldErrors> {
    let mut errors = FieldErrors::new();
    let username = input.username.trim().to_string();
    if username.is_empty() {
        errors.insert("username", FieldError::new("err.required"));
    } else if let Err(e) = check_os_username(&username) {
        errors.insert("username", e);
    }
    let target_host = match &input.target_host {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    if target_host.is_none() {
        errors.insert("target_host", FieldError::new("err.required"));
    }
    let out = NewRequest {
        contact_email: email_field(&mut errors, "contact_email", &input.contact_email),
        contact_phone: phone_field(&mut errors, "contact_phone", &input.contact_phone),
        user_fullname: check_fullname(&mut errors, &input.user_fullname),
        user_email: email_field(&mut errors, "user_email", &input.user_email),
        user_description: multiline_text(
            &mut errors,
            "user_description",
            &input.user_description,
            500,
        ),
        username,
        target_host: NodeId(target_host.unwrap_or_default()),
    };
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// An admin's decision on a request.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ReviewInput {
    pub approval_notes: String,
    /// Approvals only: give the account administrator (sudo) rights (a
    /// boolean, checked by `validate::bool_field`).
    pub is_admin: Option<Value>,
    /// Approvals only: supplementary groups, e.g. "docker, video".
    pub groups: Option<String>,
}

/// A checked review: notes, and for an approval what it changes (`None`:
/// keep what the request has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub notes: String,
    pub is_admin: Option<bool>,
    pub groups: Option<Vec<String>>,
}

pub fn validate_review(input: &ReviewInput) -> Result<Review, FieldErrors> {
    let mut errors = FieldErrors::new();
    let notes = optional_text(&mut errors, "approval_notes", &input.approval_notes, 500);
    let is_admin = match &input.is_admin {
        None | Some(Value::Null) => None,
        v => Some(crate::validate::bool_field(
            &mut errors,
            "is_admin",
            v.as_ref(),
            false,
        )),
    };
    let groups = input
        .groups
        .as_deref()
        .map(|g| parse_groups(&mut errors, g));
    if errors.is_empty() {
        Ok(Review {
            notes,
            is_admin,
            groups,
        })
    } else {
        Err(errors)
    }
}

/// A password for an OS account: four groups of five from an alphabet
/// without look-alikes, joined by `-` (~110 bits), with a lower-case letter,
/// an upper-case letter and a digit, so common node password policies
/// accept it. Never contains `:` or a newline (chpasswd's format).
pub fn os_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    loop {
        let groups: Vec<String> = (0..4)
            .map(|_| {
                (0..5)
                    .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                    .collect()
            })
            .collect();
        let p = groups.join("-");
        let has = |f: fn(&char) -> bool| p.chars().any(|c| f(&c));
        if has(char::is_ascii_lowercase)
            && has(char::is_ascii_uppercase)
            && has(char::is_ascii_digit)
        {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn os_usernames_are_strict() {
        for ok in ["alice", "li-lei", "u_2", "a"] {
            assert!(check_os_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Alice",
            "1abc",
            "-x",
            "_x",
            "a b",
            "a;reboot",
            "$(id)",
            "a'b",
            "a\nb",
            "ä",
            &"x".repeat(33),
        ] {
            assert_eq!(
                check_os_username(bad).unwrap_err().key,
                "err.accounts.username_format",
                "{bad:?}"
            );
        }
        for reserved in ["root", "sudo", "nobody", "systemd-foo"] {
            assert_eq!(
                check_os_username(reserved).unwrap_err().key,
                "err.accounts.username_reserved"
            );
        }
    }

    #[test]
    fn groups_are_parsed_and_checked() {
        let mut e = FieldErrors::new();
        assert_eq!(
            parse_groups(&mut e, "docker, video docker"),
            ["docker", "video"]
        );
        assert!(e.is_empty());
        parse_groups(&mut e, "docker,$(reboot)");
        assert!(e.contains_key("groups"));
    }

    #[test]
    fn an_application_is_validated_field_by_field() {
        let input = RequestInput {
            username: "alice".into(),
            user_fullname: "Alice Liddell".into(),
            contact_email: "alice@lab.example.com".into(),
            target_host: Some(json!("3")),
            ..Default::default()
        };
        let v = validate_request(&input).unwrap();
        assert_eq!((v.username.as_str(), v.target_host), ("alice", NodeId(3)));
        let bad = RequestInput {
            username: "Root".into(),
            user_fullname: "a:b".into(),
            contact_email: "nope".into(),
            contact_phone: "x".into(),
            ..Default::default()
        };
        let e = validate_request(&bad).unwrap_err();
        for f in [
            "username",
            "user_fullname",
            "contact_email",
            "contact_phone",
            "target_host",
        ] {
            assert!(e.contains_key(f), "{f}: {e:?}");
        }
    }

    #[test]
    fn transitions() {
        use RequestStatus::*;
        assert!(Pending.can_review() && !Approved.can_review());
        assert!(Approved.can_process() && Failed.can_process());
        assert!(!Pending.can_process() && !Completed.can_process() && !Processing.can_process());
        assert!(Processing.is_open() && !Rejected.is_open() && !Expired.is_open());
        for s in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(
            CloudAction::Disable.transition(),
            (CloudUserStatus::Active, CloudUserStatus::Disabled)
        );
    }

    #[test]
    fn os_passwords_are_long_mixed_and_safe_for_chpasswd() {
        for _ in 0..50 {
            let p = os_password();
            assert_eq!(p.len(), 23);
            assert!(!p.contains(':') && !p.contains('\n'));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        }
        assert_ne!(os_password(), os_password());
    }

    #[test]
    fn reviews_take_strict_booleans_and_plain_notes() {
        let ok = validate_review(&ReviewInput {
            approval_notes: " fine ".into(),
            is_admin: Some(json!("on")),
            groups: Some("docker".into()),
        })
        .unwrap();
        assert_eq!(
            ok,
            Review {
                notes: "fine".into(),
                is_admin: Some(true),
                groups: Some(vec!["docker".into()]),
            }
        );
        assert_eq!(
            validate_review(&ReviewInput::default()).unwrap().is_admin,
            None,
            "absent: keep what the request has"
        );
        let e = validate_review(&ReviewInput {
            approval_notes: "ok\x1b[2J".into(),
            is_admin: Some(json!("maybe")),
            groups: None,
        })
        .unwrap_err();
        assert_eq!(e["approval_notes"].key, "err.control_char");
        assert_eq!(e["is_admin"].key, "err.not_boolean");
    }

    #[test]
    fn application_texts_refuse_control_characters() {
        let e = validate_request(&RequestInput {
            username: "alice".into(),
            user_fullname: "Alice\u{202e}".into(),
            user_description: "line one\nline two\x07".into(),
            contact_phone: "138\x1b0013".into(),
            target_host: Some(json!(1)),
            ..Default::default()
        })
        .unwrap_err();
        for f in ["user_fullname", "user_description", "contact_phone"] {
            assert_eq!(e[f].key, "err.control_char", "{f}");
        }
        let v = validate_request(&RequestInput {
            username: "alice".into(),
            user_description: "line one\nline two".into(),
            target_host: Some(json!(1)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v.user_description, "line one\nline two");
    }
}
