//! Session types and the rules about them, free of I/O.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    WebTerminal,
    Ssh,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::WebTerminal => "web_terminal",
            Protocol::Ssh => "ssh",
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The user closed it (or the shell exited).
    UserClose,
    IdleTimeout,
    AdminForce,
    MaxDuration,
    Error,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::UserClose => "user_close",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::AdminForce => "admin_force",
            EndReason::MaxDuration => "max_duration",
            EndReason::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            EndReason::UserClose,
            EndReason::IdleTimeout,
            EndReason::AdminForce,
            EndReason::MaxDuration,
            EndReason::Error,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// `terminated` when gpudock ended it, `closed` otherwise.
    pub fn final_status(self) -> &'static str {
        match self {
            EndReason::IdleTimeout | EndReason::AdminForce | EndReason::MaxDuration => "terminated",
            EndReason::UserClose | EndReason::Error => "closed",
        }
    }

    /// What the user is told when gpudock ends the session (English; the
    /// SSH client has no language of ours).
    pub fn message(self, idle_secs: u64, max_secs: u64) -> Option<String> {
        match self {
            EndReason::IdleTimeout => Some(format!(
                "session ended: idle timeout (no activity for {})",
                human(idle_secs)
            )),
            EndReason::MaxDuration => Some(format!(
                "session ended: maximum session duration ({}) reached",
                human(max_secs)
            )),
            EndReason::AdminForce => Some("session ended: terminated by an administrator".into()),
            EndReason::UserClose | EndReason::Error => None,
        }
    }
}

/// `90` → `1 min 30 s`, `1800` → `30 min`.
pub fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h} h"));
    }
    if m > 0 {
        parts.push(format!("{m} min"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s} s"));
    }
    parts.join(" ")
}

/// A live session shows as `idle` after this long without a byte.
pub const SHOWN_IDLE_AFTER_SECS: i64 = 60;

/// The status a live session shows, from seconds since its last byte.
pub fn live_status(idle_secs: i64) -> &'static str {
    if idle_secs >= SHOWN_IDLE_AFTER_SECS {
        "idle"
    } else {
        "active"
    }
}

/// What a limit refusal says (English for SSH; pages translate the code).
pub fn too_many_message(max: usize) -> String {
    format!(
        "refused: you already have {max} open sessions (the most allowed per user, sessions.max_per_user)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_say_which_limit() {
        for r in [
            "user_close",
            "idle_timeout",
            "admin_force",
            "max_duration",
            "error",
        ] {
            assert_eq!(EndReason::parse(r).map(EndReason::as_str), Some(r));
        }
        assert_eq!(EndReason::IdleTimeout.final_status(), "terminated");
        assert_eq!(EndReason::UserClose.final_status(), "closed");
        let m = EndReason::IdleTimeout.message(1800, 0).unwrap_or_default();
        assert!(m.contains("idle timeout") && m.contains("30 min"), "{m}");
        assert!(
            EndReason::MaxDuration
                .message(0, 5400)
                .unwrap_or_default()
                .contains("1 h 30 min")
        );
        assert_eq!(human(3), "3 s");
        assert_eq!(live_status(61), "idle");
        assert_eq!(live_status(2), "active");
    }
}
