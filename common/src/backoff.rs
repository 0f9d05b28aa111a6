//! Capped exponential backoff with jitter, applied to the message itself as a
//! visibility timeout.
//!
//! The delay is drawn between the previous ceiling and this one, not over the whole
//! window ("full jitter", as DESIGN.md names it): full jitter can pick a shorter delay
//! after a longer one, and issue 3 requires delays that grow. This still spreads a
//! burst of retries over (at least) half of each window, and attempt n+1 never waits
//! less than attempt n; at the cap, the delay is the cap.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryPolicy;

/// SQS refuses visibility timeouts above 12 hours.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// The ceiling of the delay before attempt `attempt + 1`: `base · 2^(attempt-1)`,
/// capped by the policy.
pub fn ceiling(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ms = policy.base_delay_ms.saturating_mul(1u64 << exp).min(policy.max_delay_ms);
    Duration::from_millis(ms)
}

/// The delay after the `attempt`-th failed attempt: uniform between the previous
/// attempt's ceiling (half this one for the first) and this ceiling, never below what
/// the destination asked for with `Retry-After`.
pub fn delay(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
    let cap = ceiling(policy, attempt).as_millis() as u64;
    let floor = if attempt <= 1 { cap / 2 } else { ceiling(policy, attempt - 1).as_millis() as u64 };
    let jittered = Duration::from_millis(rng.random_range(floor.min(cap)..=cap));
    jittered.max(retry_after.unwrap_or_default()).min(MAX_VISIBILITY)
}

/// A delay as whole visibility-timeout seconds, rounded up so that `Retry-After: 2`
/// is never honoured early.
pub fn as_visibility_secs(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(MAX_VISIBILITY.as_secs()) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy { max_attempts: 5, base_delay_ms: 1_000, max_delay_ms: 10_000, max_age_secs: 3600 }
    }

    #[test]
    fn the_ceiling_doubles_per_attempt_up_to_the_cap() {
        let c: Vec<u64> = (1..=6).map(|a| ceiling(&policy(), a).as_millis() as u64).collect();
        assert_eq!(c, vec![1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(ceiling(&policy(), u32::MAX), Duration::from_millis(10_000), "no overflow");
    }

    #[test]
    fn delays_stay_between_the_previous_ceiling_and_the_ceiling() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..8 {
            let cap = ceiling(&policy(), attempt);
            for _ in 0..200 {
                let d = delay(&policy(), attempt, None, &mut rng);
                assert!(d <= cap && d >= cap / 2, "{d:?} for attempt {attempt}");
            }
        }
    }

    #[test]
    fn a_later_attempt_never_waits_less_than_an_earlier_one() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..500 {
            let delays: Vec<Duration> = (1..8).map(|a| delay(&policy(), a, None, &mut rng)).collect();
            assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_for_the_delay() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            assert!(delay(&policy(), 1, Some(Duration::from_secs(2)), &mut rng) >= Duration::from_secs(2));
        }
    }

    #[test]
    fn visibility_seconds_round_up_and_are_capped() {
        assert_eq!(as_visibility_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(as_visibility_secs(Duration::from_secs(2)), 2);
        assert_eq!(as_visibility_secs(Duration::ZERO), 0);
        assert_eq!(as_visibility_secs(Duration::from_secs(10 * 86_400)), 43_200);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn policies() -> impl Strategy<Value = RetryPolicy> {
            // Up to and beyond SQS's 12-hour visibility limit, as a flow file may ask.
            (1u32..20, 0u64..100_000, 0u64..100_000_000).prop_map(|(max_attempts, base, extra)| RetryPolicy {
                max_attempts,
                base_delay_ms: base,
                max_delay_ms: base + extra,
                max_age_secs: 3600,
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn backoff_delays_never_shrink_from_one_attempt_to_the_next(policy in policies(), seed in any::<u64>()) {
                let mut rng = StdRng::seed_from_u64(seed);
                let delays: Vec<Duration> = (1..=40).map(|a| delay(&policy, a, None, &mut rng)).collect();
                prop_assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{:?}", delays);
            }

            #[test]
            fn backoff_delays_never_exceed_the_cap(policy in policies(), attempt in 0u32..=u32::MAX, seed in any::<u64>()) {
                let mut rng = StdRng::seed_from_u64(seed);
                let cap = Duration::from_millis(policy.max_delay_ms).min(MAX_VISIBILITY);
                let d = delay(&policy, attempt, None, &mut rng);
                prop_assert!(d <= cap, "{:?} above {:?}", d, cap);
                prop_assert!(d <= ceiling(&policy, attempt));
            }

            #[test]
            fn retry_after_raises_a_delay_but_never_past_what_sqs_takes(
                policy in policies(),
                attempt in 1u32..40,
                after_ms in 0u64..100_000_000,
                seed in any::<u64>(),
            ) {
                let mut rng = StdRng::seed_from_u64(seed);
                let after = Duration::from_millis(after_ms);
                let d = delay(&policy, attempt, Some(after), &mut rng);
                prop_assert!(d >= after.min(MAX_VISIBILITY) && d <= MAX_VISIBILITY, "{:?}", d);
            }
        }
    }
}
