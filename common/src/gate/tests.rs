use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::config::{Auth, RetryPolicy};

fn destination(rate: Option<(u32, u32)>, breaker: Option<BreakerPolicy>) -> Destination {
    Destination {
        name: "d".to_owned(),
        base_url: "http://d".to_owned(),
        auth: Auth::None,
        timeout: Duration::from_secs(1),
        retry: RetryPolicy::default(),
        signing: None,
        rate_limit: rate.map(|(per_second, burst)| RateLimit { per_second, burst: Some(burst) }),
        max_in_flight: None,
        breaker,
    }
}

fn breaker(failures: u32) -> Option<BreakerPolicy> {
    Some(BreakerPolicy { failures, cooldown_secs: 10, ..BreakerPolicy::default() })
}

#[test]
fn gcra_allows_the_burst_less_the_transit_allowance_then_one_call_per_interval_1_percent_wide() {
    let (t, tau) = gcra(&RateLimit { per_second: 10, burst: Some(5) });
    assert_eq!((t, tau), (101_000, 4 * 101_000 - 250_000));
    let mut tat = 0;
    let now = 1_000_000_000;
    for _ in 0..2 {
        tat = gcra_step(tat, now, t, tau).expect("within the burst");
    }
    // 2 back to back: 5 less the 2.5 calls of the 250 ms allowance, rounded down.
    assert_eq!(gcra_step(tat, now, t, tau), Err(tat - tau), "the fourth waits");
    assert!(gcra_step(tat, tat - tau, t, tau).is_ok());
    assert_eq!(gcra(&RateLimit { per_second: 10_000, burst: None }).0, 101, "fast limits keep their precision");
    assert_eq!(gcra(&RateLimit { per_second: 1, burst: Some(1) }).1, 0, "no burst, no tolerance");
}

#[test]
fn no_one_second_window_at_the_destination_holds_more_than_rate_plus_burst_with_up_to_250_ms_of_transit() {
    let limit = RateLimit { per_second: 10, burst: Some(10) };
    let (t, tau) = gcra(&limit);
    let mut tat = 0;
    let mut admitted = Vec::new();
    // A caller trying every 5 ms for 5 s.
    for now in (0..5_000).step_by(5) {
        if let Ok(next) = gcra_step(tat, (1_000_000 + now) * 1_000, t, tau) {
            tat = next;
            admitted.push(now);
        }
    }
    // The worst case of transit: every call of a window delayed by 0..250 ms so they
    // bunch: a window of 1.25 s of tokens must still hold at most 20.
    let worst = admitted.iter().map(|&a| admitted.iter().filter(|&&b| b >= a && b < a + 1_250).count()).max();
    assert!(worst.unwrap() <= 20, "a window held {worst:?}");
    assert!(admitted.len() >= 50, "the limiter starved the caller: {}", admitted.len());
}

#[test]
fn a_hold_is_at_least_the_wait_and_its_jitter_grows_with_each_receive() {
    let mut rng = StdRng::seed_from_u64(7);
    assert!((1..=2).contains(&hold_secs(10, 1, &mut rng)), "at least a second, jitter 0..=1");
    assert!(hold_secs(5_001, 1, &mut rng) >= 6, "the wait rounded up");
    let late: Vec<i32> = (0..200).map(|_| hold_secs(0, 7, &mut rng)).collect();
    assert!(late.iter().all(|&s| (1..=31).contains(&s)));
    assert!(late.iter().any(|&s| s > 20), "the seventh receive spreads over half a minute: {late:?}");
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_holds_then_lets_one_probe_decide() {
    let gate = Gate::new(MemoryGate::default());
    let d = destination(None, breaker(3));
    let now = 1_000_000;
    for i in 0..2 {
        assert_eq!(gate.record(&d, now + i, Some(None), false).await.unwrap(), None);
    }
    let opened = gate.record(&d, now + 2, Some(None), false).await.unwrap().expect("opened");
    assert_eq!(opened.to, BreakerState::Open);
    assert_eq!(
        gate.admit(&d, now + 3, 5_000).await.unwrap(),
        Admission::Hold { until_ms: now + 2 + 10_000, why: HoldReason::BreakerOpen }
    );
    // After the cool-down: one probe, the others wait.
    let later = now + 11_000;
    gate.seen.lock().unwrap().clear();
    assert_eq!(gate.admit(&d, later, 5_000).await.unwrap(), Admission::Go { probe: true, slot: None });
    assert_eq!(
        gate.admit(&d, later, 5_000).await.unwrap(),
        Admission::Hold { until_ms: later + 1_000, why: HoldReason::ProbeBusy }
    );
    // The probe fails: open again for a cool-down.
    let reopened = gate.record(&d, later + 10, Some(None), true).await.unwrap().expect("re-opened");
    assert_eq!(reopened.why, "the half-open probe failed");
    gate.seen.lock().unwrap().clear();
    assert!(matches!(
        gate.admit(&d, later + 20, 5_000).await.unwrap(),
        Admission::Hold { why: HoldReason::BreakerOpen, .. }
    ));
    // The next probe succeeds: closed, everyone goes.
    let again = later + 10_020;
    gate.seen.lock().unwrap().clear();
    assert_eq!(gate.admit(&d, again, 5_000).await.unwrap(), Admission::Go { probe: true, slot: None });
    let closed = gate.record(&d, again + 5, None, true).await.unwrap().expect("closed");
    assert_eq!(closed.to, BreakerState::Closed);
    assert_eq!(gate.admit(&d, again + 6, 5_000).await.unwrap(), Admission::Go { probe: false, slot: None });
    let state = gate.store.read("d").await.unwrap();
    let kinds: Vec<&str> = state.transitions.iter().map(|t| t.split('|').nth(1).unwrap()).collect();
    assert_eq!(kinds, ["open", "open", "closed"]);
}

#[tokio::test]
async fn a_success_between_failures_resets_the_count() {
    let gate = Gate::new(MemoryGate::default());
    let d = destination(None, breaker(3));
    for i in 0..2 {
        gate.record(&d, i, Some(None), false).await.unwrap();
    }
    gate.record(&d, 3, None, false).await.unwrap();
    for i in 4..6 {
        assert_eq!(gate.record(&d, i, Some(None), false).await.unwrap(), None, "opened without 3 in a row");
    }
}

#[tokio::test]
async fn a_retry_after_pauses_the_whole_destination() {
    let gate = Gate::new(MemoryGate::default());
    let d = destination(Some((100, 100)), None);
    gate.record(&d, 1_000, Some(Some(Duration::from_secs(5))), false).await.unwrap();
    assert_eq!(
        gate.admit(&d, 1_001, 1_000).await.unwrap(),
        Admission::Hold { until_ms: 6_000, why: HoldReason::Paused }
    );
    // Another container's cache has not seen it: the token's write has.
    gate.seen.lock().unwrap().clear();
    assert_eq!(gate.take_token(&d, 1_002).await.unwrap(), Some((6_000, HoldReason::Paused)));
    assert_eq!(gate.admit(&d, 6_000, 1_000).await.unwrap(), Admission::Go { probe: false, slot: None });
}

#[tokio::test]
async fn a_rate_limited_destination_holds_the_call_past_the_burst_until_a_token_is_free() {
    let gate = Gate::new(MemoryGate::default());
    let d = destination(Some((10, 5)), None);
    let now = 5_000_000;
    assert_eq!(gate.take_token(&d, now).await.unwrap(), None);
    assert_eq!(gate.take_token(&d, now).await.unwrap(), None);
    // tat = now + 202 ms, tolerance 154 ms: free at now + 48 ms.
    assert_eq!(gate.take_token(&d, now).await.unwrap(), Some((now + 48, HoldReason::RateLimit)));
}

#[tokio::test]
async fn at_most_max_in_flight_calls_hold_a_slot_and_a_slot_given_back_or_expired_is_free_again() {
    let gate = Gate::new(MemoryGate::default());
    let mut d = destination(None, None);
    d.max_in_flight = Some(2);
    let now = 1_000;
    let mut held = Vec::new();
    for _ in 0..2 {
        match gate.admit(&d, now, 5_000).await.unwrap() {
            Admission::Go { slot: Some(slot), .. } => held.push(slot),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        gate.admit(&d, now, 5_000).await.unwrap(),
        Admission::Hold { until_ms: now + 1_000, why: HoldReason::InFlight }
    );
    gate.release(&d, &held[0]).await;
    assert!(matches!(gate.admit(&d, now, 5_000).await.unwrap(), Admission::Go { slot: Some(_), .. }));
    // A holder that died: its lease ends.
    assert!(matches!(gate.admit(&d, now + 5_000, 5_000).await.unwrap(), Admission::Go { slot: Some(_), .. }));
}

#[tokio::test]
async fn a_failure_rate_breaker_opens_only_past_its_share_with_enough_calls_and_forgets_a_passed_window() {
    let gate = Gate::new(MemoryGate::default());
    let policy = BreakerPolicy { failure_rate: Some(0.5), window_secs: 10, min_calls: 4, ..BreakerPolicy::default() };
    let d = destination(None, Some(policy));
    let t0 = 1_000_000;
    // Two failures out of three calls: above the share, below min_calls.
    gate.record(&d, t0, Some(None), false).await.unwrap();
    gate.record(&d, t0 + 1, None, false).await.unwrap();
    assert_eq!(gate.record(&d, t0 + 2, Some(None), false).await.unwrap(), None, "opened with 3 calls");
    // The window passes: its calls no longer count.
    let t1 = t0 + 10_001;
    for i in 0..3 {
        gate.record(&d, t1 + i, None, false).await.unwrap();
    }
    assert_eq!(gate.record(&d, t1 + 3, Some(None), false).await.unwrap(), None, "1 of 4 is under half");
    assert_eq!(gate.record(&d, t1 + 4, Some(None), false).await.unwrap(), None, "2 of 5 is under half");
    let opened = gate.record(&d, t1 + 5, Some(None), false).await.unwrap().expect("3 of 6: half opens it");
    assert_eq!(opened.why, "3 of the last 6 calls failed (50 % >= 50 %)");
}
