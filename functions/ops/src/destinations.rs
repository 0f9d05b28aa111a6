//! `switchyard-ops destinations`: each destination's protection as configured (rate
//! limit, breaker) and as it stands now (the shared gate item in the ledger table).

use serde_json::{json, Value};
use switchyard_common::config::Destination;
use switchyard_common::gate::{BreakerState, GateState};
use switchyard_common::runtime::rfc3339;

/// One destination's row: its settings and its gate's state at `now_ms`.
pub fn to_json(d: &Destination, state: &GateState, now_ms: i64) -> Value {
    let breaker = state.breaker(now_ms);
    json!({
        "destination": d.name,
        "base_url": d.base_url,
        "auth": d.auth.kind(),
        "rate_limit": d.rate_limit.map(|r| json!({"per_second": r.per_second, "burst": r.burst()})),
        "max_in_flight": d.max_in_flight,
        "breaker": d.breaker.map(|b| match b.failure_rate {
            None => json!({"failures": b.failures, "cooldown_secs": b.cooldown_secs}),
            Some(rate) => json!({
                "failure_rate": rate,
                "window_secs": b.window_secs,
                "min_calls": b.min_calls,
                "cooldown_secs": b.cooldown_secs,
            }),
        }),
        "state": {
            "breaker": breaker.as_str(),
            "consecutive_failures": state.fails,
            "open_since": (breaker != BreakerState::Closed && state.opened_at_ms > 0).then(|| rfc3339(state.opened_at_ms)),
            "open_until": (breaker == BreakerState::Open).then(|| rfc3339(state.open_until_ms)),
            "paused_until": (state.paused_until_ms > now_ms).then(|| rfc3339(state.paused_until_ms)),
            "transitions": state.transitions.iter().rev().take(5).collect::<Vec<_>>(),
        },
    })
}

pub fn render_text(rows: &[(&Destination, GateState)], now_ms: i64) -> String {
    let mut out = String::new();
    for (d, state) in rows {
        let limit =
            d.rate_limit.map_or("no rate limit".to_owned(), |r| format!("{}/s, burst {}", r.per_second, r.burst()));
        let policy = d.breaker.map_or("no breaker".to_owned(), |b| match b.failure_rate {
            None => format!("breaker after {} failures, {} s cool-down", b.failures, b.cooldown_secs),
            Some(rate) => format!(
                "breaker at {:.0} % failed of >= {} calls in {} s, {} s cool-down",
                rate * 100.0,
                b.min_calls,
                b.window_secs,
                b.cooldown_secs
            ),
        });
        out.push_str(&format!("{}  {}  ({}; {limit}; {policy})\n", d.name, d.base_url, d.auth.kind()));
        let breaker = state.breaker(now_ms);
        let mut line = format!("  breaker {}", breaker.as_str());
        match breaker {
            BreakerState::Open => {
                line.push_str(&format!(" since {} until {}", rfc3339(state.opened_at_ms), rfc3339(state.open_until_ms)))
            }
            BreakerState::HalfOpen => {
                line.push_str(&format!(" since {}, one probe at a time", rfc3339(state.opened_at_ms)))
            }
            BreakerState::Closed if d.breaker.is_some_and(|b| b.failure_rate.is_some()) => line.push_str(&format!(
                ", {} of {} calls failed in the current window",
                state.window_failed, state.window_calls
            )),
            BreakerState::Closed => line.push_str(&format!(", {} consecutive failures", state.fails)),
        }
        if state.paused_until_ms > now_ms {
            line.push_str(&format!("; paused (Retry-After) until {}", rfc3339(state.paused_until_ms)));
        }
        out.push_str(&line);
        out.push('\n');
        for t in state.transitions.iter().rev().take(5) {
            let mut parts = t.splitn(3, '|');
            let at = parts.next().and_then(|ms| ms.parse().ok()).map(rfc3339).unwrap_or_default();
            out.push_str(&format!(
                "    {at}  {:<9} {}\n",
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_common::config::Config;

    #[test]
    fn an_open_breaker_shows_since_until_and_its_last_transition_first() {
        let config = Config::parse(
            "t.toml",
            r#"
            [sources.s]
            scheme = "hmac"
            header = "X-Sig"
            [destinations.crm]
            base_url = "https://crm.example"
            rate_limit = { per_second = 10, burst = 20 }
            breaker = { failures = 5, cooldown_secs = 30 }
            "#,
            |_| Ok(String::new()),
        )
        .unwrap();
        let d = config.destination("crm").unwrap();
        let state = GateState {
            fails: 5,
            opened_at_ms: 1_000,
            open_until_ms: 31_000,
            transitions: vec![
                "500|closed|a call succeeded".into(),
                "1000|open|5 consecutive transient failures".into(),
            ],
            ..GateState::default()
        };
        let text = render_text(&[(d, state.clone())], 2_000);
        assert!(text.contains("10/s, burst 20"), "{text}");
        assert!(text.contains("breaker open since 1970-01-01T00:00:01.000Z until 1970-01-01T00:00:31.000Z"), "{text}");
        let open = text.find("5 consecutive").unwrap();
        assert!(open < text.find("a call succeeded").unwrap(), "latest first: {text}");
        let v = to_json(d, &state, 40_000);
        assert_eq!(v["state"]["breaker"], "half_open");
        assert_eq!(v["rate_limit"]["burst"], 20);
    }
}
