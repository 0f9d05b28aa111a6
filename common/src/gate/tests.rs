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
fn a_token_back_early_waits_for_its_slot_less_the_tolerance_and_one_back_late_is_not_used() {
    let (slot, tau) = (10_000_000, 400_000);
    assert_eq!(token_use(slot, slot - tau, tau), TokenUse::Now);
    assert_eq!(token_use(slot, slot - tau - 30_000, tau), TokenUse::After(Duration::from_millis(30)));
    let late_by = TOKEN_LATE_BY.as_micros() as i64;
    assert_eq!(token_use(slot, slot + late_by, tau), TokenUse::Now);
    assert_eq!(token_use(slot, slot + late_by + 1, tau), TokenUse::Spoiled);
}

/// Forty callers (four dispatchers of ten records) against one bucket whose token
/// writes take 0.1 s in one spell and 0.7 s in the next (up to 2 s now and then: a
/// loaded local endpoint, where a quick spell after a slow one bunched 22 calls into
/// a second at the destination of a 10/s, burst 10 limit): asked for now
/// plus the caller's expected round trip and used as [`token_use`] says, no 1-second
/// window of calls holds more than rate + burst, and the callers still get most of
/// the rate.
#[test]
fn with_token_writes_slow_in_spells_no_window_holds_more_than_rate_plus_burst() {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, VecDeque};
    let limit = RateLimit { per_second: 10, burst: Some(10) };
    let (t, tau) = gcra(&limit);
    let mut rng = StdRng::seed_from_u64(20261202);
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Step {
        Ask,
        Apply { asked: i64, at: i64, rtt: i64 },
        Back { asked: i64, rtt: i64, slot: Result<i64, i64> },
    }
    let mut events = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |events: &mut BinaryHeap<_>, at: i64, caller: usize, step: Step| {
        seq += 1;
        events.push(Reverse((at, seq, caller, step)));
    };
    for caller in 0..40 {
        push(&mut events, caller as i64 * 1_000, caller, Step::Ask);
    }
    let mut round_trips: Vec<VecDeque<i64>> = vec![VecDeque::new(); 4];
    let median = |kept: &VecDeque<i64>| {
        let mut v: Vec<i64> = kept.iter().copied().collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let (mut tat, mut calls, mut spoiled) = (0i64, Vec::new(), 0);
    while let Some(Reverse((now, _, caller, step))) = events.pop() {
        let container = caller / 10;
        match step {
            Step::Ask if calls.len() < 500 => {
                // The endpoint's load comes and goes: slow and quick spells of 1.3 s.
                let spell = if (now / 1_300_000) % 2 == 0 { 700_000 } else { 100_000 };
                let rtt = spell + rng.random_range(0..100_000) + if rng.random_bool(0.02) { 1_200_000 } else { 0 };
                let at = now + median(&round_trips[container]);
                push(&mut events, now + rtt / 2, caller, Step::Apply { asked: now, at, rtt });
            }
            Step::Ask => {}
            Step::Apply { asked, at, rtt } => {
                let slot = gcra_step(tat, at, t, tau).map(|next| {
                    tat = next;
                    next - t
                });
                push(
                    &mut events,
                    asked + rtt,
                    caller,
                    Step::Back { asked, rtt, slot: slot.map_err(|free| free - (at - asked)) },
                );
            }
            Step::Back { rtt, slot, .. } => {
                let kept = &mut round_trips[container];
                if kept.len() == 8 {
                    kept.pop_front();
                }
                kept.push_back(rtt);
                match slot {
                    Err(free_at) => {
                        push(&mut events, free_at.max(now) + rng.random_range(0..1_000_000), caller, Step::Ask)
                    }
                    Ok(slot) => match token_use(slot, now, tau) {
                        TokenUse::Spoiled => {
                            spoiled += 1;
                            push(&mut events, now + 1_000_000, caller, Step::Ask);
                        }
                        TokenUse::Now | TokenUse::After(_) => {
                            let wait = match token_use(slot, now, tau) {
                                TokenUse::After(w) => w.as_micros() as i64,
                                _ => 0,
                            };
                            calls.push(now + wait);
                            push(&mut events, now + wait + 5_000, caller, Step::Ask);
                        }
                    },
                }
            }
        }
    }
    calls.sort_unstable();
    let busiest = calls.iter().map(|&a| calls.iter().filter(|&&b| b >= a && b < a + 1_000_000).count()).max().unwrap();
    let span_s = (calls[calls.len() - 1] - calls[0]) as f64 / 1e6;
    assert!(busiest <= 20, "a 1-second window held {busiest} calls");
    assert!(calls.len() as f64 / span_s > 6.0, "{} calls in {span_s:.1} s: starved", calls.len());
    assert!(spoiled < calls.len() / 4, "{spoiled} tokens spoiled for {} calls", calls.len());
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
async fn a_bucket_seen_full_holds_the_delivery_at_admission_until_a_token_is_free() {
    let gate = Gate::new(MemoryGate::default());
    let d = destination(Some((10, 2)), None);
    let now = 5_000_000;
    assert_eq!(gate.admit(&d, now, 1_000).await.unwrap(), Admission::Go { probe: false, slot: None });
    assert_eq!(gate.take_token(&d, now).await.unwrap(), None);
    // tat = now + 101 ms, tolerance 0 (a burst of 2 less the transit allowance): the
    // cached state says no token before then, so no claim is worth making.
    assert_eq!(
        gate.admit(&d, now, 1_000).await.unwrap(),
        Admission::Hold { until_ms: now + 101, why: HoldReason::RateLimit }
    );
    assert_eq!(gate.admit(&d, now + 101, 1_000).await.unwrap(), Admission::Go { probe: false, slot: None });
}

#[tokio::test]
async fn a_token_whose_write_came_back_long_after_its_slot_is_not_used_and_the_next_is_asked_for_later() {
    let d = destination(Some((10, 5)), None);
    let latency = TOKEN_LATE_BY * 2;
    let slow = Gate::new(MemoryGate::with_token_latency(latency));
    let now = 5_000_000;
    // The first write took longer than a late call may be: its token is not used.
    let (until, why) = slow.take_token(&d, now).await.unwrap().expect("not used");
    assert_eq!(why, HoldReason::LateToken);
    assert!(until >= now + latency.as_millis() as i64, "held until it came back: {until}");
    // The next is asked for at least that round trip ahead: its slot is then.
    let later = now + 10_000;
    let _ = slow.take_token(&d, later).await.unwrap();
    let (interval, _) = gcra(d.rate_limit.as_ref().unwrap());
    let slot = slow.state("d").await.unwrap().tat_us - interval;
    assert!(slot >= (later + latency.as_millis() as i64) * 1_000, "asked for now: slot {slot}");
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
