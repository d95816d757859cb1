//! Session types and the rules about them, free of I/O.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    WebTerminal,
    Ssh,
    /// SFTP or scp through the jumpbox (file transfers, no terminal).
    Sftp,
    /// A tunnel to a port of an instance (`ssh -L` through the jumpbox):
    /// counted and limited like a session, not recorded.
    PortForward,
}

crate::text_enum!(Protocol {
    WebTerminal => "web_terminal",
    Ssh => "ssh",
    Sftp => "sftp",
    PortForward => "port_forward",
});

impl Protocol {
    /// Whether its sessions are recorded (asciicast): terminals are; file
    /// transfers are logged operation by operation instead, tunnels only
    /// counted.
    pub fn recorded(self) -> bool {
        match self {
            Protocol::WebTerminal | Protocol::Ssh => true,
            Protocol::Sftp | Protocol::PortForward => false,
        }
    }
}

/// A session's state (`remote_sessions.status`): `active` or `idle` while
/// live, `closed` or `terminated` once ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    Idle,
    Closed,
    Terminated,
}

crate::text_enum!(SessionStatus {
    Active => "active",
    Idle => "idle",
    Closed => "closed",
    Terminated => "terminated",
});

impl SessionStatus {
    /// Active or idle: not ended yet.
    pub fn is_live(self) -> bool {
        matches!(self, SessionStatus::Active | SessionStatus::Idle)
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The user closed it (or the shell exited).
    UserClose,
    /// The client went away without closing the session (killed, network
    /// lost, no answer to keep-alives).
    ClientLost,
    /// The instance's node stopped answering (its Docker daemon died or
    /// restarted) while the session ran.
    NodeLost,
    IdleTimeout,
    AdminForce,
    MaxDuration,
    /// The user's access changed (disabled, their tenant disabled, their
    /// password, role or tenant changed): see [`crate::live::ACCESS_REVOKED`].
    AccessRevoked,
    Error,
    /// The instance's lease ended (issue 14): the container stops.
    LeaseExpired,
}

crate::text_enum!(EndReason {
    UserClose => "user_close",
    ClientLost => "client_lost",
    NodeLost => "node_lost",
    IdleTimeout => "idle_timeout",
    AdminForce => "admin_force",
    MaxDuration => "max_duration",
    AccessRevoked => "access_revoked",
    Error => "error",
    LeaseExpired => "lease_expired",
});

impl EndReason {
    /// `terminated` when gpudock ended it, `closed` otherwise.
    pub fn final_status(self) -> SessionStatus {
        match self {
            EndReason::IdleTimeout
            | EndReason::AdminForce
            | EndReason::MaxDuration
            | EndReason::AccessRevoked
            | EndReason::LeaseExpired => SessionStatus::Terminated,
            EndReason::UserClose
            | EndReason::ClientLost
            | EndReason::NodeLost
            | EndReason::Error => SessionStatus::Closed,
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
            EndReason::NodeLost => Some(
                "session ended: the instance's node stopped answering (its Docker daemon is \
                 unreachable); processes it left running are ended once it answers again"
                    .into(),
            ),
            EndReason::AccessRevoked => Some(ACCESS_REVOKED_MESSAGE.into()),
            EndReason::LeaseExpired => Some(LEASE_EXPIRED_MESSAGE.into()),
            EndReason::UserClose | EndReason::ClientLost | EndReason::Error => None,
        }
    }
}

/// What a user whose access changed is told, wherever they were connected.
pub const ACCESS_REVOKED_MESSAGE: &str =
    "session ended: access revoked (your account was changed; 账号权限已变更，会话已结束)";

/// What a user is told when the instance's lease ends under the session.
pub const LEASE_EXPIRED_MESSAGE: &str = "session ended: the instance's lease has ended; its data is kept \
     until the buffer period ends (租期已到期，会话已结束；数据在缓冲期内保留)";

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
pub fn live_status(idle_secs: i64) -> SessionStatus {
    if idle_secs >= SHOWN_IDLE_AFTER_SECS {
        SessionStatus::Idle
    } else {
        SessionStatus::Active
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
            "client_lost",
            "node_lost",
            "access_revoked",
            "idle_timeout",
            "admin_force",
            "max_duration",
            "access_revoked",
            "error",
            "lease_expired",
        ] {
            assert_eq!(EndReason::parse(r).map(EndReason::as_str), Some(r));
        }
        assert_eq!(
            EndReason::IdleTimeout.final_status(),
            SessionStatus::Terminated
        );
        assert_eq!(EndReason::UserClose.final_status(), SessionStatus::Closed);
        let m = EndReason::IdleTimeout.message(1800, 0).unwrap_or_default();
        assert!(m.contains("idle timeout") && m.contains("30 min"), "{m}");
        assert!(
            EndReason::MaxDuration
                .message(0, 5400)
                .unwrap_or_default()
                .contains("1 h 30 min")
        );
        assert_eq!(human(3), "3 s");
        assert_eq!(live_status(61), SessionStatus::Idle);
        assert_eq!(live_status(2), SessionStatus::Active);
    }

    /// The enums' texts are exactly the values the schema allows, in SQL
    /// and in JSON.
    #[test]
    fn texts_match_the_schema_and_json() {
        let c = crate::db::memory().unwrap();
        let check = |table: &str, col: &str, all: Vec<&str>| {
            let sql: String = c
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            let at = sql.find(&format!("{col} IN (")).unwrap();
            let list = &sql[at + col.len() + 5..];
            let list = &list[..list.find(')').unwrap()];
            let mut want: Vec<&str> = list
                .split(',')
                .map(|v| v.trim().trim_matches('\''))
                .collect();
            let mut got = all;
            want.sort();
            got.sort();
            assert_eq!(got, want, "{table}.{col}");
        };
        check(
            "remote_sessions",
            "status",
            SessionStatus::ALL.iter().map(|s| s.as_str()).collect(),
        );
        check(
            "remote_sessions",
            "protocol",
            Protocol::ALL.iter().map(|s| s.as_str()).collect(),
        );
        check(
            "remote_sessions",
            "end_reason",
            EndReason::ALL.iter().map(|s| s.as_str()).collect(),
        );
        for r in EndReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            let back: EndReason = c.query_row("SELECT ?1", [r], |x| x.get(0)).unwrap();
            assert_eq!(back, *r);
        }
        assert!(
            c.query_row("SELECT 'nope'", [], |x| x.get::<_, Protocol>(0))
                .is_err()
        );
    }
}
