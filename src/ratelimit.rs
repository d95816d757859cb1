//! The sign-in limit per source address: every failed sign-in (web form,
//! JSON API, SSH password or key) costs its address one token of a bucket
//! that holds `security.sign_in_burst` and refills at
//! `security.sign_in_per_minute`. An empty bucket refuses further attempts
//! before any password is checked (no argon2 work for a flood), with the
//! seconds until the next token. Successes cost nothing.
//!
//! Addresses are IPv4 addresses or IPv6 /64 prefixes (what one client
//! holds). Memory is bounded: full buckets are forgotten when the table
//! grows, and past [`MAX_SOURCES`] busy addresses new ones share one bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::SecurityConfig;

/// Addresses tracked one by one at most.
pub const MAX_SOURCES: usize = 10_000;
/// The bucket shared by addresses beyond [`MAX_SOURCES`].
const OVERFLOW: &str = "*";

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct SignInLimiter {
    burst: f64,
    /// Tokens per second; 0 turns the limit off.
    rate: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl std::fmt::Debug for SignInLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInLimiter")
            .field("burst", &self.burst)
            .field("rate", &self.rate)
            .finish()
    }
}

/// The key of an address: IPv6 by its /64.
fn key(source: &str) -> String {
    match source.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => source.to_string(),
    }
}

impl SignInLimiter {
    pub fn new(cfg: &SecurityConfig) -> Self {
        let off = cfg.sign_in_burst == 0 || cfg.sign_in_per_minute == 0;
        Self {
            burst: f64::from(cfg.sign_in_burst),
            rate: if off {
                0.0
            } else {
                f64::from(cfg.sign_in_per_minute) / 60.0
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the bucket of `source`, refilled to now.
    fn with_bucket<T>(&self, source: &str, f: impl FnOnce(&mut Bucket) -> T) -> Option<T> {
        if self.rate == 0.0 {
            return None;
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut k = key(source);
        if !map.contains_key(&k) && map.len() >= MAX_SOURCES {
            let (burst, rate) = (self.burst, self.rate);
            map.retain(|_, b| b.tokens + rate * now.duration_since(b.at).as_secs_f64() < burst);
            if map.len() >= MAX_SOURCES {
                k = OVERFLOW.to_string();
            }
        }
        let b = map.entry(k).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = (b.tokens + self.rate * now.duration_since(b.at).as_secs_f64()).min(self.burst);
        b.at = now;
        Some(f(b))
    }

    /// `Ok` when `source` may try to sign in now; else the seconds to wait.
    pub fn check(&self, source: &str) -> Result<(), u64> {
        let rate = self.rate;
        match self.with_bucket(source, |b| b.tokens) {
            Some(tokens) if tokens < 1.0 => Err(((1.0 - tokens) / rate).ceil().max(1.0) as u64),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `source`.
    pub fn failed(&self, source: &str) {
        self.with_bucket(source, |b| b.tokens = (b.tokens - 1.0).max(0.0));
    }
}

/// When each key was last let through, so that something is done at most
/// once a minute per key (an API token's use written to the database: see
/// `App::token_uses`).
#[derive(Default)]
pub struct OnceAMinute(Mutex<HashMap<i64, i64>>);

/// Past this many keys, those let through more than a minute ago are
/// forgotten.
const ONCE_A_MINUTE_KEPT: usize = 1024;

impl OnceAMinute {
    /// Whether `key` may go through at `now` (Unix seconds): none went
    /// through within the last minute (then this one is noted).
    pub fn due(&self, key: i64, now: i64) -> bool {
        let Ok(mut m) = self.0.lock() else {
            return true;
        };
        if m.get(&key).is_some_and(|&at| at >= now - 60) {
            return false;
        }
        if m.len() >= ONCE_A_MINUTE_KEPT {
            m.retain(|_, at| *at >= now - 60);
        }
        m.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_minute_per_key() {
        let uses = OnceAMinute::default();
        assert!(uses.due(1, 1000), "the first time");
        assert!(!uses.due(1, 1000));
        assert!(!uses.due(1, 1060), "within the minute");
        assert!(uses.due(2, 1000), "another key");
        assert!(uses.due(1, 1061), "a minute later");
        assert!(!uses.due(1, 1100));
        // Many keys: old notes are forgotten, recent ones kept.
        for id in 100..(100 + ONCE_A_MINUTE_KEPT as i64) {
            uses.due(id, 2000);
        }
        assert!(!uses.due(100, 2030));
        assert!(uses.due(1, 2030));
    }

    fn limiter(burst: u32, per_minute: u32) -> SignInLimiter {
        SignInLimiter::new(&SecurityConfig {
            sign_in_burst: burst,
            sign_in_per_minute: per_minute,
            ..SecurityConfig::default()
        })
    }

    #[test]
    fn failures_use_up_the_burst_then_wait_for_the_refill() {
        let l = limiter(3, 6);
        for _ in 0..3 {
            assert_eq!(l.check("10.0.0.1"), Ok(()));
            l.failed("10.0.0.1");
        }
        // 6 per minute: one token every 10 s.
        assert_eq!(l.check("10.0.0.1"), Err(10));
        assert_eq!(l.check("10.0.0.2"), Ok(()), "other addresses are apart");
        assert_eq!(
            l.check("::ffff:10.0.0.1"),
            Err(10),
            "an IPv4-mapped address is its IPv4 address"
        );
        for _ in 0..3 {
            l.failed("2001:db8:1:2::1");
        }
        assert!(l.check("2001:db8:1:2:ffff::9").is_err(), "one /64");
        assert_eq!(l.check("2001:db8:1:3::1"), Ok(()));
    }

    #[test]
    fn zero_turns_it_off_and_the_table_stays_bounded() {
        let off = limiter(0, 10);
        for _ in 0..100 {
            off.failed("10.0.0.1");
        }
        assert_eq!(off.check("10.0.0.1"), Ok(()));

        let l = limiter(2, 60);
        for n in 0..(MAX_SOURCES as u32 + 50) {
            let ip = std::net::Ipv4Addr::from(n).to_string();
            l.failed(&ip);
            l.failed(&ip);
        }
        let map = l.buckets.lock().unwrap();
        assert!(map.len() <= MAX_SOURCES + 1, "{}", map.len());
        assert!(map.contains_key(OVERFLOW));
    }
}
