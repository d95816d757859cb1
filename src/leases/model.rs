//! Lease states and the day thresholds, free of I/O: the one place that
//! decides whether an instance's lease is active, expiring, expired or
//! reclaimed, which reminder is due, and when the buffer ends.

pub const DAY: i64 = 86_400;

/// Reminders before a lease end, in days, largest first.
pub const REMINDER_DAYS: [i64; 3] = [7, 3, 1];

/// A lease is `expiring` within this many seconds of its end.
pub const EXPIRING_WITHIN: i64 = 7 * DAY;

/// `instances.lease_state` as shown: active → expiring (≤ 7 days) →
/// expired (ended; data kept through the buffer) → reclaimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Active,
    Expiring,
    Expired,
    Reclaimed,
}

crate::text_enum!(LeaseState {
    Active => "active",
    Expiring => "expiring",
    Expired => "expired",
    Reclaimed => "reclaimed",
});

impl LeaseState {
    pub fn key(self) -> &'static str {
        match self {
            LeaseState::Active => "leases.st_active",
            LeaseState::Expiring => "leases.st_expiring",
            LeaseState::Expired => "leases.st_expired",
            LeaseState::Reclaimed => "leases.st_reclaimed",
        }
    }
}

/// The state of a lease ending at `end` (none: open-ended) at `now`.
pub fn state(end: Option<i64>, reclaimed_at: Option<i64>, now: i64) -> LeaseState {
    match (end, reclaimed_at) {
        (_, Some(_)) => LeaseState::Reclaimed,
        (None, None) => LeaseState::Active,
        (Some(e), None) if now >= e => LeaseState::Expired,
        (Some(e), None) if e - now <= EXPIRING_WITHIN => LeaseState::Expiring,
        (Some(_), None) => LeaseState::Active,
    }
}

/// The reminder due at `now` for a lease ending at `end`: the smallest
/// threshold already reached (a lease set 2 days ahead gets the 3-day
/// reminder, not the 7-day one too); none once it has ended or while more
/// than 7 days are left.
pub fn reminder_due(end: i64, now: i64) -> Option<i64> {
    let left = end - now;
    if left <= 0 {
        return None;
    }
    REMINDER_DAYS
        .iter()
        .rev()
        .find(|d| left <= **d * DAY)
        .copied()
}

/// Until when the data of a lease ending at `end` is kept (back up by).
pub fn keep_until(end: i64, buffer_secs: i64) -> i64 {
    end.saturating_add(buffer_secs)
}

/// What the lease checker does with an instance at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// Send the reminder of this many days (once per lease end).
    Remind(i64),
    /// The lease ended: stop the container, end the sessions.
    Stop,
    /// The buffer is over: reclaim.
    Reclaim,
}

/// The lease checker's decision for a lease ending at `end`, stopped (by
/// the checker) or not, at `now`.
pub fn due(end: i64, stopped: bool, buffer_secs: i64, now: i64) -> Due {
    if now >= keep_until(end, buffer_secs) {
        Due::Reclaim
    } else if now >= end {
        if stopped { Due::Nothing } else { Due::Stop }
    } else {
        reminder_due(end, now).map_or(Due::Nothing, Due::Remind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_lease_end() {
        let now = 1_000 * DAY;
        assert_eq!(state(None, None, now), LeaseState::Active);
        assert_eq!(state(Some(now + 8 * DAY), None, now), LeaseState::Active);
        assert_eq!(state(Some(now + 7 * DAY), None, now), LeaseState::Expiring);
        assert_eq!(state(Some(now + 1), None, now), LeaseState::Expiring);
        assert_eq!(state(Some(now), None, now), LeaseState::Expired);
        assert_eq!(
            state(Some(now - DAY), Some(now), now),
            LeaseState::Reclaimed
        );
        assert_eq!(state(None, Some(now), now), LeaseState::Reclaimed);
    }

    #[test]
    fn reminders_at_seven_three_and_one_day() {
        let end = 1_000 * DAY;
        assert_eq!(reminder_due(end, end - 8 * DAY), None);
        assert_eq!(reminder_due(end, end - 7 * DAY), Some(7));
        assert_eq!(reminder_due(end, end - 4 * DAY), Some(7));
        assert_eq!(reminder_due(end, end - 3 * DAY), Some(3));
        assert_eq!(reminder_due(end, end - 2 * DAY), Some(3));
        assert_eq!(reminder_due(end, end - DAY / 2), Some(1));
        assert_eq!(reminder_due(end, end), None);
    }

    #[test]
    fn stop_at_the_end_reclaim_after_the_buffer() {
        let (end, buf) = (1_000 * DAY, 3 * DAY);
        assert_eq!(due(end, false, buf, end - 10 * DAY), Due::Nothing);
        assert_eq!(due(end, false, buf, end - 2 * DAY), Due::Remind(3));
        assert_eq!(due(end, false, buf, end), Due::Stop);
        assert_eq!(due(end, true, buf, end + DAY), Due::Nothing);
        assert_eq!(due(end, true, buf, end + buf), Due::Reclaim);
        assert_eq!(due(end, false, buf, end + buf), Due::Reclaim);
        assert_eq!(keep_until(end, buf), end + buf);
    }
}
