//! The gate in memory, for unit tests of the dispatcher's logic: the same operations
//! as [`super::DynamoGate`], each under one lock.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;

#[derive(Debug, Default)]
pub struct MemoryGate {
    items: Mutex<HashMap<String, GateState>>,
    slots: Mutex<HashMap<(String, u32), (String, i64)>>,
    /// How long a token's write takes (a loaded store), for the tests of late tokens.
    token_latency: Duration,
}

impl MemoryGate {
    /// A gate whose token writes answer after `latency`.
    pub fn with_token_latency(latency: Duration) -> Self {
        Self { token_latency: latency, ..Self::default() }
    }

    fn with<T>(&self, destination: &str, f: impl FnOnce(&mut GateState) -> T) -> T {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        f(items.entry(destination.to_owned()).or_default())
    }
}

fn log(state: &mut GateState, now_ms: i64, t: &Transition) {
    state.transitions.push(transition_entry(now_ms, t));
    let start = state.transitions.len().saturating_sub(KEEP_TRANSITIONS);
    state.transitions.drain(..start);
}

#[async_trait]
impl GateStore for MemoryGate {
    async fn read(&self, destination: &str) -> Result<GateState, GateError> {
        Ok(self.with(destination, |s| s.clone()))
    }

    async fn take_token(
        &self,
        destination: &str,
        at_us: i64,
        limit: &RateLimit,
    ) -> Result<(Result<i64, i64>, GateState), GateError> {
        let (interval, tolerance) = gcra(limit);
        if !self.token_latency.is_zero() {
            tokio::time::sleep(self.token_latency).await;
        }
        Ok(self.with(destination, |s| match gcra_step(s.tat_us, at_us, interval, tolerance) {
            Ok(tat) => {
                s.tat_us = tat;
                (Ok(tat - interval), s.clone())
            }
            Err(at) => (Err(at), s.clone()),
        }))
    }

    async fn claim_probe(&self, destination: &str, now_ms: i64, lease_until_ms: i64) -> Result<bool, GateError> {
        Ok(self.with(destination, |s| {
            let free = s.breaker(now_ms) == BreakerState::HalfOpen && s.probe_until_ms <= now_ms;
            if free {
                s.probe_until_ms = lease_until_ms;
            }
            free
        }))
    }

    async fn count_failure(&self, destination: &str) -> Result<GateState, GateError> {
        Ok(self.with(destination, |s| {
            s.fails += 1;
            s.clone()
        }))
    }

    async fn count_in_window(
        &self,
        destination: &str,
        now_ms: i64,
        window_ms: i64,
        failed: bool,
    ) -> Result<GateState, GateError> {
        Ok(self.with(destination, |s| {
            if s.window_start_ms <= now_ms - window_ms {
                (s.window_start_ms, s.window_calls, s.window_failed) = (now_ms, 0, 0);
            }
            s.window_calls += 1;
            s.window_failed += u32::from(failed);
            s.clone()
        }))
    }

    async fn open(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
        t: &Transition,
        reopen: bool,
        _seen: &GateState,
    ) -> Result<bool, GateError> {
        Ok(self.with(destination, |s| {
            let may = if reopen { s.breaker(now_ms) == BreakerState::HalfOpen } else { s.open_until_ms == 0 };
            if may {
                s.open_until_ms = until_ms;
                if s.opened_at_ms == 0 {
                    s.opened_at_ms = now_ms;
                }
                s.probe_until_ms = 0;
                log(s, now_ms, t);
            }
            may
        }))
    }

    async fn succeeded(&self, destination: &str, now_ms: i64) -> Result<Option<Transition>, GateError> {
        Ok(self.with(destination, |s| {
            s.fails = 0;
            if s.open_until_ms == 0 {
                return None;
            }
            s.open_until_ms = 0;
            s.opened_at_ms = 0;
            s.probe_until_ms = 0;
            let t = Transition { to: BreakerState::Closed, why: "a call succeeded".to_owned() };
            log(s, now_ms, &t);
            Some(t)
        }))
    }

    async fn take_slot(
        &self,
        destination: &str,
        index: u32,
        holder: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, GateError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry((destination.to_owned(), index)).or_insert_with(|| (String::new(), 0));
        if slot.1 > now_ms {
            return Ok(false);
        }
        *slot = (holder.to_owned(), lease_until_ms);
        Ok(true)
    }

    async fn release_slot(&self, destination: &str, slot: &Slot) -> Result<(), GateError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = slots.get_mut(&(destination.to_owned(), slot.index)) {
            if held.0 == slot.holder {
                held.1 = 0;
            }
        }
        Ok(())
    }

    async fn pause(&self, destination: &str, until_ms: i64) -> Result<(), GateError> {
        self.with(destination, |s| s.paused_until_ms = s.paused_until_ms.max(until_ms));
        Ok(())
    }
}
