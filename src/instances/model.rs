//! An instance's status: ours (`creating`, `missing`, `deleting`) plus the container
//! states Docker reports. Pure: no I/O.

/// `instances.status`. Docker states outside the known set (and a container
/// without a state) are `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    /// Reserved; the container is being made.
    Creating,
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// The container is gone from its node.
    Missing,
    /// Its lease ended and the reclaim removed container and data volume
    /// (issue 14): the record stays.
    Reclaimed,
    /// gpudock is deleting it: its container going away is expected.
    Deleting,
    Unknown,
}

crate::text_enum!(InstanceStatus else Unknown {
    Creating => "creating",
    Created => "created",
    Running => "running",
    Paused => "paused",
    Restarting => "restarting",
    Removing => "removing",
    Exited => "exited",
    Dead => "dead",
    Missing => "missing",
    Reclaimed => "reclaimed",
    Deleting => "deleting",
    Unknown => "unknown",
});

impl InstanceStatus {
    /// The status of a container in Docker's `State.Status` words.
    pub fn from_docker(state: &str) -> Self {
        match Self::parse_or_fallback(state) {
            // Ours, never a word of Docker's.
            InstanceStatus::Reclaimed
            | InstanceStatus::Creating
            | InstanceStatus::Missing
            | InstanceStatus::Deleting => InstanceStatus::Unknown,
            other => other,
        }
    }

    /// The status of a container Docker may no longer have (`None`: gone).
    pub fn of_container(state: Option<&str>) -> Self {
        state.map_or(InstanceStatus::Missing, Self::from_docker)
    }

    /// What users are shown for an instance in this (stored) status: while
    /// its node cannot be reached, whatever Docker last said may no longer
    /// hold (it may have stopped the container since), so the state is
    /// `unknown`; only our own `creating` stays what it is.
    pub fn seen(self, node_unreachable: bool) -> Self {
        match self {
            InstanceStatus::Creating | InstanceStatus::Reclaimed => self,
            _ if node_unreachable => InstanceStatus::Unknown,
            other => other,
        }
    }

    /// The i18n key of the status.
    pub fn key(self) -> &'static str {
        match self {
            InstanceStatus::Creating => "instances.s_creating",
            InstanceStatus::Created => "instances.s_created",
            InstanceStatus::Running => "instances.s_running",
            InstanceStatus::Paused => "instances.s_paused",
            InstanceStatus::Restarting => "instances.s_restarting",
            InstanceStatus::Removing => "instances.s_removing",
            InstanceStatus::Exited => "instances.s_exited",
            InstanceStatus::Dead => "instances.s_dead",
            InstanceStatus::Missing => "instances.s_missing",
            InstanceStatus::Reclaimed => "leases.s_reclaimed",
            InstanceStatus::Deleting => "instances.s_deleting",
            InstanceStatus::Unknown => "instances.s_unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_and_unknown_states_fall_back() {
        let c = crate::db::memory().unwrap();
        for s in InstanceStatus::ALL {
            assert_eq!(InstanceStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            let back: InstanceStatus = c.query_row("SELECT ?1", [s], |r| r.get(0)).unwrap();
            assert_eq!(back, *s);
        }
        assert_eq!(
            InstanceStatus::from_docker("running"),
            InstanceStatus::Running
        );
        assert_eq!(
            InstanceStatus::from_docker("weird"),
            InstanceStatus::Unknown
        );
        let odd: InstanceStatus = c.query_row("SELECT 'weird'", [], |r| r.get(0)).unwrap();
        assert_eq!(odd, InstanceStatus::Unknown);
    }

    #[test]
    fn an_unreachable_node_makes_the_state_unknown_except_creating() {
        assert_eq!(InstanceStatus::Running.seen(false), InstanceStatus::Running);
        assert_eq!(InstanceStatus::Running.seen(true), InstanceStatus::Unknown);
        assert_eq!(InstanceStatus::Exited.seen(true), InstanceStatus::Unknown);
        assert_eq!(
            InstanceStatus::Creating.seen(true),
            InstanceStatus::Creating
        );
    }
}
