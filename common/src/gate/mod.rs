//! What protects a destination from us: its rate limit, its circuit breaker and the
//! pause a `429 Retry-After` asks for, shared by every dispatcher through one item
//! of the ledger table per destination (`DEST#{name}` / `GATE`).
//!
//! A delivery the gate holds back is never called and never claimed, so it spends no
//! attempt; the dispatcher delays its message by the wait (plus jitter), never by
//! sleeping out the Lambda's time.
//!
//! - **Rate limit**: a token bucket as GCRA, whose whole state is one number, the
//!   theoretical arrival time `tat` (microseconds). A call at `now` is allowed while
//!   `tat − now ≤ (burst − 1) · T`, and moves `tat` to `max(tat, now) + T`, with
//!   `T = 1.01 s / per_second` (calls spaced 1 % wider than the limit) and the burst's
//!   tolerance less [`TRANSIT_ALLOWANCE`], so calls that take up to that long to
//!   arrive never put more than `per_second + burst` into a second at the destination. On DynamoDB that is one conditional `UpdateItem` per
//!   delivery: `SET tat = tat + T` while the bucket is busy (no conflicts between
//!   dispatchers, the update is relative), `SET tat = now + T` once it has drained.
//! - **Breaker**: consecutive transient failures (`ADD fails 1`), or a failure rate
//!   over a fixed window (`ADD w_calls 1, w_bad 0|1`, restarted once it has passed),
//!   open it for a cool-down; then one probe at a time (a lease on `probe_until`)
//!   decides: a success closes it, a failure opens it again. Each transition is made by
//!   exactly one conditional write, so exactly one dispatcher logs it.
//! - **Pause**: `paused_until` only ever moves forward.
//! - **In flight**: `max_in_flight = K` is K slot items (`DEST#{name}` / `SLOT#{i}`),
//!   each a lease until the call's worst case; a delivery takes a free one (trying a
//!   few, from a random one) and gives it back after its call. A dispatcher that dies
//!   holding one loses it only until the lease ends. Never more than K calls at once;
//!   under contention a free slot can be missed and the delivery waits a second.
//!
//! The dispatcher asks the gate twice: [`Gate::admit`] before it claims a delivery
//! (pause, breaker, a bucket seen full, in-flight slot, probe; from a state at most a
//! second old, [`FRESH_FOR`]), and [`Gate::take_token`] after the claim, immediately before the
//! call, so that tokens are spaced as the calls are. A token refused after the claim
//! gives the claim back uncounted (`IdempotencyStore::unclaim`). The token's write
//! returns the whole item, so a rate-limited destination's calls see the current state.

mod dynamo;
mod memory;

pub use dynamo::DynamoGate;
pub use memory::MemoryGate;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;

use crate::config::{BreakerPolicy, Destination, RateLimit};

/// How old a cached state may be when a destination has no rate limit.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The longest a held message is spread out beyond its wait.
pub const MAX_JITTER: Duration = Duration::from_secs(30);

/// How many transitions the gate item keeps (`switchyard-ops destinations`).
pub const KEEP_TRANSITIONS: usize = 20;

pub fn gate_pk(destination: &str) -> String {
    format!("DEST#{destination}")
}

pub const GATE_SK: &str = "GATE";

pub fn slot_sk(index: u32) -> String {
    format!("SLOT#{index}")
}

/// How many slots one admission tries before the delivery waits.
pub const SLOT_TRIES: u32 = 3;

/// One of a destination's `max_in_flight` slots, held for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub index: u32,
    pub holder: String,
}

/// The shared state of one destination. Times are epoch milliseconds; 0 means unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateState {
    /// GCRA's theoretical arrival time, in epoch microseconds.
    pub tat_us: i64,
    /// Consecutive transient failures.
    pub fails: u32,
    /// Non-zero while the breaker is open or half-open: open until then, half-open after.
    pub open_until_ms: i64,
    pub opened_at_ms: i64,
    /// The lease of the one probe allowed while half-open.
    pub probe_until_ms: i64,
    /// No call before this (a 429's Retry-After).
    pub paused_until_ms: i64,
    /// The failure-rate window: when it began, its calls, its failed calls.
    pub window_start_ms: i64,
    pub window_calls: u32,
    pub window_failed: u32,
    /// Latest last: `{ms}|{state}|{why}`.
    pub transitions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl GateState {
    pub fn breaker(&self, now_ms: i64) -> BreakerState {
        if self.open_until_ms == 0 {
            BreakerState::Closed
        } else if now_ms < self.open_until_ms {
            BreakerState::Open
        } else {
            BreakerState::HalfOpen
        }
    }
}

/// Why a delivery waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    RateLimit,
    BreakerOpen,
    /// Half-open, and another dispatcher holds the probe.
    ProbeBusy,
    /// A `429 Retry-After` paused the destination.
    Paused,
    /// `max_in_flight` calls are under way.
    InFlight,
    /// A token came back from its write too long after its slot ([`TOKEN_LATE_BY`]).
    LateToken,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::RateLimit => "rate_limit",
            HoldReason::BreakerOpen => "breaker_open",
            HoldReason::ProbeBusy => "breaker_probe_busy",
            HoldReason::Paused => "paused",
            HoldReason::InFlight => "max_in_flight",
            HoldReason::LateToken => "rate_limit_late",
        }
    }

    /// Whether the breaker's alarm counts it.
    pub fn is_breaker(self) -> bool {
        matches!(self, HoldReason::BreakerOpen | HoldReason::ProbeBusy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Call now; `probe` if this call decides a half-open breaker; `slot` to give back
    /// after the call ([`Gate::release`]).
    Go {
        probe: bool,
        slot: Option<Slot>,
    },
    Hold {
        until_ms: i64,
        why: HoldReason,
    },
}

/// The spacing of calls under a rate limit, relative to `1 s / per_second`
/// (per mille): 1 % wider.
pub const SPACING_PER_MILLE: i64 = 1_010;

/// The time allowed between a token and its call's arrival at the destination (the
/// claim is already made, but the call still has to leave the dispatcher and cross
/// the network): a burst is honoured less the calls of this much time at the rate, so
/// that calls delayed by up to this much never add up to more than `per_second +
/// burst` in a second at the destination.
pub const TRANSIT_ALLOWANCE: Duration = Duration::from_millis(250);

/// How late after its slot a call may still leave. GCRA spaces the slots; a call
/// leaves when its token's write has come back, and a slow write (a loaded store)
/// would put it among the calls of later slots. A token back later than this is not
/// used (its slot has passed, it cannot be given back) and the delivery waits,
/// uncharged, for another. The rest of [`TRANSIT_ALLOWANCE`] is the call's own way
/// to the destination.
pub const TOKEN_LATE_BY: Duration = Duration::from_millis(150);

/// How many of a container's recent token round trips its estimate is taken from.
const ROUND_TRIPS_KEPT: usize = 8;

/// What a granted token allows once its write is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Now,
    /// Back earlier than its slot less the burst's tolerance: call after this wait
    /// (at most the round trip the container expected and did not take).
    After(Duration),
    /// Back more than [`TOKEN_LATE_BY`] after its slot: not used.
    Spoiled,
}

/// Every call then leaves within `[slot − tolerance, slot + TOKEN_LATE_BY]`: with
/// slots spaced by the interval, no second at the destination holds more than
/// `per_second + burst` calls, however long the token's write took.
pub fn token_use(slot_us: i64, back_us: i64, tolerance_us: i64) -> TokenUse {
    if back_us > slot_us + TOKEN_LATE_BY.as_micros() as i64 {
        TokenUse::Spoiled
    } else if back_us < slot_us - tolerance_us {
        TokenUse::After(Duration::from_micros((slot_us - tolerance_us - back_us).unsigned_abs()))
    } else {
        TokenUse::Now
    }
}

/// GCRA's parameters: the emission interval and the tolerance, in microseconds.
pub fn gcra(limit: &RateLimit) -> (i64, i64) {
    let per_second = i64::from(limit.per_second.max(1));
    let interval = (1_000 * SPACING_PER_MILLE + per_second - 1) / per_second;
    let burst = interval * i64::from(limit.burst().max(1) - 1);
    (interval, (burst - TRANSIT_ALLOWANCE.as_micros() as i64).max(0))
}

/// The pure GCRA step (microseconds): the new `tat` if a call at `now` is allowed,
/// else when it would be.
pub fn gcra_step(tat_us: i64, now_us: i64, interval: i64, tolerance: i64) -> Result<i64, i64> {
    if tat_us - now_us <= tolerance {
        Ok(tat_us.max(now_us) + interval)
    } else {
        Err(tat_us - tolerance)
    }
}

/// Microseconds to the millisecond at or after them.
pub fn ms_at_or_after(us: i64) -> i64 {
    us.div_euclid(1_000) + i64::from(us.rem_euclid(1_000) != 0)
}

/// Until when (epoch ms) a bucket seen in `state` has no token for a call asked for
/// `at_us`, if it has none. `tat` only ever grows, so a state seen earlier never shows
/// a full bucket that is not: a delivery held on it would have been refused its token
/// too. Checked before the claim, it spares a held delivery the claim, the refused
/// token and the unclaim.
pub fn bucket_full_until(limit: &RateLimit, state: &GateState, at_us: i64) -> Option<i64> {
    let (interval, tolerance) = gcra(limit);
    gcra_step(state.tat_us, at_us, interval, tolerance).err()
}

/// What stops a call before the rate limit is consulted: a pause, an open breaker.
pub fn blocked(state: &GateState, now_ms: i64) -> Option<(i64, HoldReason)> {
    if state.paused_until_ms > now_ms {
        return Some((state.paused_until_ms, HoldReason::Paused));
    }
    match state.breaker(now_ms) {
        BreakerState::Open => Some((state.open_until_ms, HoldReason::BreakerOpen)),
        BreakerState::HalfOpen if state.probe_until_ms > now_ms => {
            Some((state.probe_until_ms.min(now_ms + 1_000), HoldReason::ProbeBusy))
        }
        _ => None,
    }
}

/// How long a held message stays invisible: the wait, rounded up to whole seconds
/// (at least one), plus jitter that doubles with each receive (up to [`MAX_JITTER`]),
/// so a backlog behind a limit spreads out instead of returning all at once.
pub fn hold_secs(wait_ms: i64, receive_count: u32, rng: &mut impl Rng) -> i32 {
    let wait = (wait_ms.max(0) + 999) / 1_000;
    let spread = (1i64 << receive_count.clamp(1, 7).saturating_sub(1)).min(MAX_JITTER.as_secs() as i64);
    (wait.max(1) + rng.random_range(0..=spread)) as i32
}

/// Why `policy` opens a closed breaker in `state` (after counting a failure), if it does.
pub fn trips(policy: &BreakerPolicy, state: &GateState) -> Option<String> {
    match policy.failure_rate {
        None => (state.fails >= policy.failures).then(|| format!("{} consecutive transient failures", state.fails)),
        Some(rate) => {
            let calls = state.window_calls.max(1);
            let share = f64::from(state.window_failed) / f64::from(calls);
            (state.window_calls >= policy.min_calls && share >= rate).then(|| {
                format!(
                    "{} of the last {} calls failed ({:.0} % >= {:.0} %)",
                    state.window_failed,
                    state.window_calls,
                    share * 100.0,
                    rate * 100.0
                )
            })
        }
    }
}

/// A transition one dispatcher made, to be logged and counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub to: BreakerState,
    pub why: String,
}

pub fn transition_entry(now_ms: i64, t: &Transition) -> String {
    format!("{now_ms}|{}|{}", t.to.as_str(), t.why)
}

#[derive(Debug, thiserror::Error)]
#[error("destination gate unavailable: {0}")]
pub struct GateError(pub String);

/// The shared state's operations, each one conditional write (or read) on DynamoDB.
#[async_trait]
pub trait GateStore: Send + Sync {
    async fn read(&self, destination: &str) -> Result<GateState, GateError>;

    /// Takes one token for a call at `at_us` (epoch microseconds): `Ok(its slot)` —
    /// the theoretical arrival time GCRA gave it, `tat` before the update — or
    /// `Err(when one is free)`, each with the state after (or seen).
    async fn take_token(
        &self,
        destination: &str,
        at_us: i64,
        limit: &RateLimit,
    ) -> Result<(Result<i64, i64>, GateState), GateError>;

    /// Takes the half-open probe's lease until `lease_until_ms`; false if another holds it.
    async fn claim_probe(&self, destination: &str, now_ms: i64, lease_until_ms: i64) -> Result<bool, GateError>;

    /// Counts a transient failure in a row (`ADD fails 1`); the state after.
    async fn count_failure(&self, destination: &str) -> Result<GateState, GateError>;

    /// Counts a call in the failure-rate window that began within `window_ms` (or starts
    /// a new one); the state after.
    async fn count_in_window(
        &self,
        destination: &str,
        now_ms: i64,
        window_ms: i64,
        failed: bool,
    ) -> Result<GateState, GateError>;

    /// Opens a closed breaker (or, `reopen`, a half-open one) until `until_ms`,
    /// recording `t` after `seen`'s transitions; false if another dispatcher did.
    async fn open(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
        t: &Transition,
        reopen: bool,
        seen: &GateState,
    ) -> Result<bool, GateError>;

    /// Resets the failure count and closes the breaker; `Some` if this call closed it.
    async fn succeeded(&self, destination: &str, now_ms: i64) -> Result<Option<Transition>, GateError>;

    /// Pauses every call until `until_ms` (never shortens a pause).
    async fn pause(&self, destination: &str, until_ms: i64) -> Result<(), GateError>;

    /// Takes slot `index` for `holder` until `lease_until_ms` if it is free (or its
    /// lease has ended).
    async fn take_slot(
        &self,
        destination: &str,
        index: u32,
        holder: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, GateError>;

    /// Gives a slot back (only if `slot.holder` still holds it).
    async fn release_slot(&self, destination: &str, slot: &Slot) -> Result<(), GateError>;
}

/// The gate as a dispatcher container uses it: the store and a cache of what it last saw.
pub struct Gate {
    store: Box<dyn GateStore>,
    seen: Mutex<HashMap<String, (GateState, std::time::Instant)>>,
    /// This container's latest token round trips (µs), latest last.
    round_trips: Mutex<std::collections::VecDeque<i64>>,
}

impl Gate {
    pub fn new(store: impl GateStore + 'static) -> Self {
        Self { store: Box::new(store), seen: Mutex::new(HashMap::new()), round_trips: Mutex::default() }
    }

    /// How far ahead of now a token is asked for: the median of the container's
    /// recent round trips, so that a call's slot is when it will leave.
    fn ahead_us(&self) -> i64 {
        let kept = self.round_trips.lock().unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<i64> = kept.iter().copied().collect();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied().unwrap_or(0)
    }

    fn note_round_trip(&self, us: i64) {
        let mut kept = self.round_trips.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == ROUND_TRIPS_KEPT {
            kept.pop_front();
        }
        kept.push_back(us);
    }

    fn remember(&self, destination: &str, state: GateState) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(destination.to_owned(), (state, std::time::Instant::now()));
    }

    fn cached(&self, destination: &str) -> Option<GateState> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(destination).filter(|(_, at)| at.elapsed() < FRESH_FOR).map(|(s, _)| s.clone())
    }

    pub async fn state(&self, destination: &str) -> Result<GateState, GateError> {
        if let Some(s) = self.cached(destination) {
            return Ok(s);
        }
        let state = self.store.read(destination).await?;
        self.remember(destination, state.clone());
        Ok(state)
    }

    /// Whether a delivery to `destination` may call it now. `probe_lease_ms`: how long
    /// a probe may take (the destination's worst case).
    pub async fn admit(
        &self,
        destination: &Destination,
        now_ms: i64,
        probe_lease_ms: i64,
    ) -> Result<Admission, GateError> {
        let name = destination.name.as_str();
        let state = self.state(name).await?;
        if let Some((until_ms, why)) = blocked(&state, now_ms) {
            return Ok(Admission::Hold { until_ms, why });
        }
        if let Some(limit) = &destination.rate_limit {
            let ahead = self.ahead_us();
            if let Some(free_at) = bucket_full_until(limit, &state, now_ms.saturating_mul(1_000) + ahead) {
                return Ok(Admission::Hold { until_ms: ms_at_or_after(free_at - ahead), why: HoldReason::RateLimit });
            }
        }
        let slot = match destination.max_in_flight {
            Some(k) => match self.take_slot(name, k, now_ms, now_ms + probe_lease_ms).await? {
                Some(slot) => Some(slot),
                None => return Ok(Admission::Hold { until_ms: now_ms + 1_000, why: HoldReason::InFlight }),
            },
            None => None,
        };
        if destination.breaker.is_some() && state.breaker(now_ms) == BreakerState::HalfOpen {
            if self.store.claim_probe(name, now_ms, now_ms + probe_lease_ms).await? {
                return Ok(Admission::Go { probe: true, slot });
            }
            if let Some(slot) = &slot {
                self.release(destination, slot).await;
            }
            return Ok(Admission::Hold { until_ms: now_ms + 1_000, why: HoldReason::ProbeBusy });
        }
        Ok(Admission::Go { probe: false, slot })
    }

    /// The rate limit's token, taken immediately before the call (after the claim, so
    /// that the spacing of tokens is the spacing of calls at the destination), asked
    /// for when the call will leave: now plus the round trip the container expects.
    /// `None`: call now (a token back early waits here until its slot allows, see
    /// [`token_use`]); else until when, and why, the call must wait — the write returns
    /// the whole item, so a pause or an opening since the cached state is seen here too.
    pub async fn take_token(
        &self,
        destination: &Destination,
        now_ms: i64,
    ) -> Result<Option<(i64, HoldReason)>, GateError> {
        let Some(limit) = &destination.rate_limit else { return Ok(None) };
        let name = destination.name.as_str();
        let (_, tolerance) = gcra(limit);
        let now_us = now_ms.saturating_mul(1_000);
        let ahead = self.ahead_us();
        let asked = tokio::time::Instant::now();
        let (token, after) = self.store.take_token(name, now_us + ahead, limit).await?;
        let round_trip = i64::try_from(asked.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.note_round_trip(round_trip);
        self.remember(name, after.clone());
        let slot = match token {
            Ok(slot) => slot,
            Err(free_at) => return Ok(Some((ms_at_or_after(free_at - ahead), HoldReason::RateLimit))),
        };
        if let Some(held) = blocked(&after, now_ms) {
            return Ok(Some(held));
        }
        let back = now_us.saturating_add(round_trip);
        match token_use(slot, back, tolerance) {
            TokenUse::Now => Ok(None),
            TokenUse::After(wait) => {
                tokio::time::sleep(wait).await;
                Ok(None)
            }
            TokenUse::Spoiled => Ok(Some((ms_at_or_after(back), HoldReason::LateToken))),
        }
    }

    /// A free slot of `k`, trying up to [`SLOT_TRIES`] from a random one.
    async fn take_slot(&self, name: &str, k: u32, now_ms: i64, lease_until_ms: i64) -> Result<Option<Slot>, GateError> {
        let (start, holder) = {
            let mut rng = rand::rng();
            (rng.random_range(0..k), format!("{:016x}", rng.random::<u64>()))
        };
        for t in 0..k.min(SLOT_TRIES) {
            let index = (start + t) % k;
            if self.store.take_slot(name, index, &holder, now_ms, lease_until_ms).await? {
                return Ok(Some(Slot { index, holder }));
            }
        }
        Ok(None)
    }

    /// Gives a slot back; a failure only leaves it taken until its lease ends.
    pub async fn release(&self, destination: &Destination, slot: &Slot) {
        if let Err(e) = self.store.release_slot(&destination.name, slot).await {
            tracing::warn!(error = %e, slot = slot.index, "could not give an in-flight slot back; it frees itself at its lease's end");
        }
    }

    /// Records a call's outcome: `Some(transient)` for a failure the breaker counts,
    /// with the `Retry-After` it carried; `None` for a success.
    pub async fn record(
        &self,
        destination: &Destination,
        now_ms: i64,
        failure: Option<Option<Duration>>,
        probe: bool,
    ) -> Result<Option<Transition>, GateError> {
        let name = destination.name.as_str();
        if let Some(after) = failure.flatten().filter(|d| !d.is_zero()) {
            let until = now_ms.saturating_add(after.as_millis() as i64);
            self.store.pause(name, until).await?;
            if let Some(mut s) = self.cached(name) {
                s.paused_until_ms = s.paused_until_ms.max(until);
                self.remember(name, s);
            }
        }
        let Some(policy) = &destination.breaker else { return Ok(None) };
        let failed = failure.is_some();
        let window_ms = (policy.window_secs as i64).saturating_mul(1_000);
        let counted = match (policy.failure_rate, failed) {
            (Some(_), _) => Some(self.store.count_in_window(name, now_ms, window_ms, failed).await?),
            (None, true) => Some(self.store.count_failure(name).await?),
            (None, false) => None,
        };
        if let Some(state) = &counted {
            self.remember(name, state.clone());
        }
        if !failed {
            // Most successes need no write: nothing to reset.
            let quiet = self.cached(name).is_some_and(|s| s.fails == 0 && s.open_until_ms == 0);
            if quiet && !probe {
                return Ok(None);
            }
            let t = self.store.succeeded(name, now_ms).await?;
            if let Some(mut s) = self.cached(name) {
                s.fails = 0;
                s.open_until_ms = 0;
                s.probe_until_ms = 0;
                self.remember(name, s);
            }
            return Ok(t);
        }
        let Some(state) = counted else { return Ok(None) };
        let reopen = probe && state.open_until_ms > 0;
        let why = if reopen {
            Some("the half-open probe failed".to_owned())
        } else if state.open_until_ms == 0 {
            trips(policy, &state)
        } else {
            None
        };
        let Some(why) = why else { return Ok(None) };
        let t = Transition { to: BreakerState::Open, why };
        let until = now_ms + (policy.cooldown_secs as i64) * 1_000;
        if !self.store.open(name, now_ms, until, &t, reopen, &state).await? {
            return Ok(None);
        }
        let mut opened = state;
        opened.open_until_ms = until;
        opened.probe_until_ms = 0;
        self.remember(name, opened);
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests;
