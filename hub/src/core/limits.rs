//! Request budgets and the misuse alarm: GCRA token buckets per principal and per agency
//! for the operations that hand out personal data, and a count per principal and clock
//! hour of searches answered with a hit flag.
//!
//! The budgets are this process's own; each key's state is one instant (GCRA's
//! theoretical arrival time), so that hubs sharing one budget can keep it as one row.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::access::Principal;
use crate::config::LimitSettings;
use crate::error::HubError;

/// Principals whose hourly hit-flag counts are kept at once; beyond it the counts of
/// earlier hours are dropped.
const ALARM_COUNTS_LIMIT: usize = 100_000;
/// Principals whose budgets are kept before those back at a full budget are forgotten.
const BUDGET_KEYS_LIMIT: usize = 100_000;
/// Requests between two looks at how many budgets are kept.
const PRUNE_EVERY: u64 = 4_096;

/// The hub's request budgets.
pub(crate) struct Budgets {
    principals: DefaultKeyedRateLimiter<String>,
    agencies: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    alarm_after: u32,
    /// Per principal: the clock hour counted, and its searches answered with a hit flag.
    hit_flags: Mutex<HashMap<String, (i64, u32)>>,
    /// Requests taken, so that the key count is looked at now and then, not per request
    /// (it walks every shard of the map).
    taken: AtomicU64,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("alarm_after", &self.alarm_after)
            .finish_non_exhaustive()
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let at_least_one = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(at_least_one(per_second)).allow_burst(at_least_one(burst))
}

impl Budgets {
    /// Hit-flag searches a principal may make in an hour before the alarm.
    pub(crate) fn hit_flag_alarm_after(&self) -> u32 {
        self.alarm_after
    }

    pub(crate) fn new(settings: &LimitSettings) -> Self {
        Self {
            principals: RateLimiter::keyed(quota(settings.per_second, settings.burst)),
            agencies: RateLimiter::keyed(quota(settings.agency_per_second, settings.agency_burst)),
            clock: DefaultClock::default(),
            alarm_after: settings.hit_flag_alarm_per_hour,
            hit_flags: Mutex::new(HashMap::new()),
            taken: AtomicU64::new(0),
        }
    }

    /// Takes one request from the principal's and then its agency's budget, or says how
    /// many seconds to wait. A request the principal's own budget refuses takes nothing.
    pub(crate) fn take(&self, principal: &Principal) -> Result<(), HubError> {
        let refused = |not_until: governor::NotUntil<_>| HubError::RateLimited {
            retry_after_seconds: not_until
                .wait_time_from(self.clock.now())
                .as_secs()
                .saturating_add(1),
        };
        self.principals
            .check_key(&principal.rule_subject())
            .map_err(refused)?;
        self.agencies
            .check_key(&format!("{}/{}", principal.member_state, principal.agency))
            .map_err(refused)?;
        // Keys of principals idle long enough to be back at a full budget go.
        let taken = self.taken.fetch_add(1, Ordering::Relaxed);
        if taken.is_multiple_of(PRUNE_EVERY) && self.principals.len() > BUDGET_KEYS_LIMIT {
            self.principals.retain_recent();
            self.agencies.retain_recent();
        }
        Ok(())
    }

    /// Counts a search the principal had answered with a hit flag in `hour` (hours since
    /// the epoch): true exactly once per principal and hour, when the count passes the
    /// alarm threshold.
    pub(crate) fn hit_flag_search(&self, principal: &Principal, hour: i64) -> bool {
        let mut counts = self
            .hit_flags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() >= ALARM_COUNTS_LIMIT {
            counts.retain(|_, (counted, _)| *counted >= hour);
        }
        let entry = counts.entry(principal.rule_subject()).or_insert((hour, 0));
        if entry.0 != hour {
            *entry = (hour, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 == self.alarm_after.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn officer(subject: &str) -> Principal {
        Principal::new(subject, "BKA", "DE", Vec::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait_and_agencies_share_one_budget() {
        let budgets = Budgets::new(&LimitSettings {
            per_second: 1,
            burst: 3,
            agency_per_second: 1,
            agency_burst: 5,
            hit_flag_alarm_per_hour: 2,
        });
        for _ in 0..3 {
            assert!(budgets.take(&officer("a")).is_ok());
        }
        match budgets.take(&officer("a")) {
            Err(HubError::RateLimited {
                retry_after_seconds,
            }) => assert!((1..=2).contains(&retry_after_seconds)),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Another officer of the agency has budget of its own, but the agency has two left.
        assert!(budgets.take(&officer("b")).is_ok());
        assert!(budgets.take(&officer("b")).is_ok());
        assert!(budgets.take(&officer("b")).is_err());
    }

    #[test]
    fn the_alarm_rings_once_per_principal_and_hour() {
        let budgets = Budgets::new(&LimitSettings {
            hit_flag_alarm_per_hour: 2,
            ..LimitSettings::default()
        });
        let rings: Vec<bool> = (0..5)
            .map(|_| budgets.hit_flag_search(&officer("a"), 7))
            .collect();
        assert_eq!(rings, [false, false, true, false, false]);
        assert!(!budgets.hit_flag_search(&officer("b"), 7));
        let next_hour: Vec<bool> = (0..3)
            .map(|_| budgets.hit_flag_search(&officer("a"), 8))
            .collect();
        assert_eq!(next_hour, [false, false, true]);
    }
}
