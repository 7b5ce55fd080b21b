//! Request budgets and the misuse alarm: GCRA token buckets per principal and per agency
//! for the operations that hand out personal data, and a count per principal and clock
//! hour of searches answered with a hit flag.
//!
//! A hub whose control database is PostgreSQL keeps both in it (tables `request_budgets`
//! and `hit_flag_counts`), so that every hub on that database takes from one budget and
//! adds to one count per principal: a caller spreading its requests over the replicas
//! behind a load balancer gets no more than from one. A budget is one row holding one
//! instant (GCRA's theoretical arrival time), taken and moved by a single upsert. A hub on
//! SQLite is its control database's only process and counts in memory.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::access::Principal;
use crate::clock::Clock;
use crate::config::LimitSettings;
use crate::error::HubError;
use crate::store::ControlStore;

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
    /// Where every hub on a PostgreSQL control database counts; `None` on SQLite.
    shared: Option<SharedLimits>,
}

/// The budgets and counts of every hub on one control database, kept in it.
#[derive(Debug)]
struct SharedLimits {
    store: ControlStore,
    clock: Clock,
    principal: Gcra,
    agency: Gcra,
}

/// One GCRA quota in microseconds: the mean interval between requests, and how far ahead
/// of it a burst may run.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    emission_micros: i64,
    tolerance_micros: i64,
}

impl Gcra {
    fn new(per_second: u32, burst: u32) -> Self {
        // At least a microsecond: past a million a second, a budget still limits.
        let emission_micros = (1_000_000 / i64::from(per_second.max(1))).max(1);
        Self {
            emission_micros,
            tolerance_micros: emission_micros.saturating_mul(i64::from(burst.max(1)) - 1),
        }
    }
}

impl SharedLimits {
    async fn take(&self, principal: &Principal, prune: bool) -> Result<(), HubError> {
        let now = self.clock.now();
        let now_micros = i64::try_from(now.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
        for (key, quota) in [
            (
                format!("principal:{}", principal.rule_subject()),
                self.principal,
            ),
            (
                format!("agency:{}/{}", principal.member_state, principal.agency),
                self.agency,
            ),
        ] {
            let wait = self
                .store
                .take_budget(
                    &key,
                    now_micros,
                    quota.emission_micros,
                    quota.tolerance_micros,
                )
                .await?;
            if let Some(wait_micros) = wait {
                return Err(HubError::RateLimited {
                    retry_after_seconds: u64::try_from(wait_micros / 1_000_000)
                        .unwrap_or(0)
                        .saturating_add(1),
                });
            }
        }
        if prune {
            // Rows of keys back at a full budget, and counts of hours gone, change no
            // decision: cleared now and then, off the request's path.
            let store = self.store.clone();
            let hour = now.unix_timestamp().div_euclid(3_600);
            tokio::spawn(async move {
                if let Err(e) = store.prune_limits(now_micros, hour).await {
                    tracing::warn!(error = %e, "pruning the shared request budgets failed");
                }
            });
        }
        Ok(())
    }
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

    /// Budgets and counts of this process alone (a SQLite control database), or with
    /// `shared`, of every hub on that control database.
    pub(crate) fn new(settings: &LimitSettings, shared: Option<(ControlStore, Clock)>) -> Self {
        Self {
            shared: shared.map(|(store, clock)| SharedLimits {
                store,
                clock,
                principal: Gcra::new(settings.per_second, settings.burst),
                agency: Gcra::new(settings.agency_per_second, settings.agency_burst),
            }),
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
    pub(crate) async fn take(&self, principal: &Principal) -> Result<(), HubError> {
        let taken = self.taken.fetch_add(1, Ordering::Relaxed);
        match &self.shared {
            Some(shared) => {
                shared
                    .take(principal, taken.is_multiple_of(PRUNE_EVERY))
                    .await
            }
            None => self.take_here(principal, taken),
        }
    }

    fn take_here(&self, principal: &Principal, taken: u64) -> Result<(), HubError> {
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
        if taken.is_multiple_of(PRUNE_EVERY) && self.principals.len() > BUDGET_KEYS_LIMIT {
            self.principals.retain_recent();
            self.agencies.retain_recent();
        }
        Ok(())
    }

    /// Counts a search the principal had answered with a hit flag in `hour` (hours since
    /// the epoch): true exactly once per principal and hour, when the count passes the
    /// alarm threshold.
    pub(crate) async fn hit_flag_search(
        &self,
        principal: &Principal,
        hour: i64,
    ) -> Result<bool, HubError> {
        if let Some(shared) = &self.shared {
            let count = shared
                .store
                .count_hit_flag(&principal.rule_subject(), hour)
                .await?;
            return Ok(count == i64::from(self.alarm_after) + 1);
        }
        Ok(self.hit_flag_here(principal, hour))
    }

    fn hit_flag_here(&self, principal: &Principal, hour: i64) -> bool {
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

    /// The same budgets twice: counted in this process, and in a control store (as hubs on
    /// PostgreSQL count them; here on SQLite, with a clock that stands still).
    async fn both_kinds(
        settings: &LimitSettings,
    ) -> (tempfile::TempDir, [(&'static str, Budgets); 2]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("control.sqlite").display()
        );
        let store = ControlStore::open(&url, &crate::store::PoolSettings::default())
            .await
            .expect("open");
        let clock =
            Clock::manual(time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time"));
        (
            dir,
            [
                ("in memory", Budgets::new(settings, None)),
                ("in the store", Budgets::new(settings, Some((store, clock)))),
            ],
        )
    }

    #[tokio::test]
    async fn a_burst_is_allowed_then_refused_with_a_wait_and_agencies_share_one_budget() {
        let settings = LimitSettings {
            per_second: 1,
            burst: 3,
            agency_per_second: 1,
            agency_burst: 5,
            hit_flag_alarm_per_hour: 2,
        };
        let (_dir, kinds) = both_kinds(&settings).await;
        for (kind, budgets) in kinds {
            for _ in 0..3 {
                assert!(budgets.take(&officer("a")).await.is_ok(), "{kind}");
            }
            match budgets.take(&officer("a")).await {
                Err(HubError::RateLimited {
                    retry_after_seconds,
                }) => assert!((1..=2).contains(&retry_after_seconds), "{kind}"),
                other => panic!("{kind}: expected a refusal, got {other:?}"),
            }
            // Another officer of the agency has budget of its own, but the agency has two
            // left.
            assert!(budgets.take(&officer("b")).await.is_ok(), "{kind}");
            assert!(budgets.take(&officer("b")).await.is_ok(), "{kind}");
            assert!(budgets.take(&officer("b")).await.is_err(), "{kind}");
        }
    }

    /// Two hubs on one control store take from one budget: what one took, the other cannot.
    #[tokio::test]
    async fn hubs_on_one_control_store_share_one_budget() {
        let settings = LimitSettings {
            per_second: 1,
            burst: 4,
            ..LimitSettings::default()
        };
        let (_dir, [_, (_, first)]) = both_kinds(&settings).await;
        let second = Budgets::new(
            &settings,
            first
                .shared
                .as_ref()
                .map(|shared| (shared.store.clone(), shared.clock.clone())),
        );
        let mut taken = 0;
        for n in 0..10 {
            let hub = if n % 2 == 0 { &first } else { &second };
            taken += usize::from(hub.take(&officer("a")).await.is_ok());
        }
        assert_eq!(taken, 4, "one burst between the two hubs");
    }

    #[tokio::test]
    async fn the_alarm_rings_once_per_principal_and_hour() {
        let settings = LimitSettings {
            hit_flag_alarm_per_hour: 2,
            ..LimitSettings::default()
        };
        let (_dir, kinds) = both_kinds(&settings).await;
        for (kind, budgets) in kinds {
            let mut rings = Vec::new();
            for _ in 0..5 {
                rings.push(
                    budgets
                        .hit_flag_search(&officer("a"), 7)
                        .await
                        .expect("counted"),
                );
            }
            assert_eq!(rings, [false, false, true, false, false], "{kind}");
            assert!(
                !budgets
                    .hit_flag_search(&officer("b"), 7)
                    .await
                    .expect("counted"),
                "{kind}"
            );
            let mut next_hour = Vec::new();
            for _ in 0..3 {
                next_hour.push(
                    budgets
                        .hit_flag_search(&officer("a"), 8)
                        .await
                        .expect("counted"),
                );
            }
            assert_eq!(next_hour, [false, false, true], "{kind}");
        }
    }
}
