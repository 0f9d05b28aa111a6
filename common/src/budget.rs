//! Numbers that must agree, checked in one place.
//!
//! Retry budgets are counted in the ledger, where attempts happen. SQS's redrive
//! (`maxReceiveCount`) is only a backstop: it must stay out of reach of every budget,
//! or SQS moves a message to the DLQ before the dispatcher has tried it as often as
//! its destination allows (and with no reason). On a FIFO queue a message is received
//! again, untried, every time a message ahead of it in its group is retried within the
//! same batch, so its receive count can reach the attempts of the (at most
//! [`FIFO_MAX_BATCH`] − 1) messages ahead of it plus its own.
//!
//! The dispatcher's function timeout must hold at least one record's worst case
//! ([`worst_case_record`]); a FIFO batch runs its records one after the other and
//! starts a record only while its worst case still fits before the deadline, so a
//! batch of ten never outlives the function.

use std::time::Duration;

use crate::config::{Auth, Config, Destination};

/// AWS's largest batch for a FIFO event source (and for any `ReceiveMessage`).
pub const FIFO_MAX_BATCH: u32 = 10;

/// Receives that are not attempts and not caused by a neighbour: another worker held
/// the claim, the ledger was unreachable, the deadline left no room.
pub const RETURNS_HEADROOM: u32 = 10;

/// What one record spends on AWS calls around the destination call (claim, record,
/// park, visibility), on top of the destination's own timeouts.
pub const AWS_CALLS_MARGIN: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error(
        "destination {destination}: retry.max_attempts = {max_attempts} needs the queues' redrive maxReceiveCount \
         to be at least {needed} (max_attempts x {FIFO_MAX_BATCH} + {RETURNS_HEADROOM}), but {queue} has {actual}: \
         SQS would park messages before their retry budget is spent. Raise the template's RedriveMaxReceiveCount \
         or lower max_attempts"
    )]
    BackstopTooLow { destination: String, max_attempts: u32, needed: u32, queue: String, actual: u32 },
    #[error(
        "destination {destination}: one delivery may take up to {worst_ms} ms (timeout_ms {timeout_ms} x {calls} \
         calls + {margin_ms} ms of AWS calls) but the dispatcher's timeout is {function_ms} ms: raise the \
         template's DispatcherTimeoutSecs or lower timeout_ms"
    )]
    FunctionTimeoutTooShort {
        destination: String,
        worst_ms: u128,
        timeout_ms: u128,
        calls: u32,
        margin_ms: u128,
        function_ms: u128,
    },
    #[error("queue {queue} has no redrive policy: a poison message would loop forever")]
    NoRedrive { queue: String },
}

/// The smallest `maxReceiveCount` that no message of a destination can reach while
/// it still has attempts left.
pub fn min_receive_count(destination: &Destination) -> u32 {
    destination.retry.max_attempts.saturating_mul(FIFO_MAX_BATCH).saturating_add(RETURNS_HEADROOM)
}

/// Checks every destination's budget against the `maxReceiveCount` of `queue`.
/// The receive count at which a message the gate keeps holding back (a long backlog
/// behind a rate limit, a long outage behind an open breaker) is re-sent as a fresh
/// message: every hold is a receive, and the receives left must still cover the
/// destination's whole budget ([`min_receive_count`]).
pub fn hold_requeue_at(destination: &Destination, max_receive_count: u32) -> u32 {
    max_receive_count.saturating_sub(min_receive_count(destination)).max(1)
}

pub fn check_backstop(config: &Config, queue: &str, max_receive_count: u32) -> Result<(), BudgetError> {
    for d in config.destinations.values() {
        let needed = min_receive_count(d);
        if max_receive_count < needed {
            return Err(BudgetError::BackstopTooLow {
                destination: d.name.clone(),
                max_attempts: d.retry.max_attempts,
                needed,
                queue: queue.to_owned(),
                actual: max_receive_count,
            });
        }
    }
    Ok(())
}

/// Destination calls one record may make, each bounded by the destination's timeout:
/// the call and its repeat after a 401/403 refresh, and for OAuth2 the token fetch
/// before each.
fn calls_per_record(destination: &Destination) -> u32 {
    match destination.auth {
        Auth::OAuth2ClientCredentials { .. } => 4,
        _ => 2,
    }
}

/// The longest one record can take in the dispatcher.
pub fn worst_case_record(destination: &Destination) -> Duration {
    destination.timeout.saturating_mul(calls_per_record(destination)).saturating_add(AWS_CALLS_MARGIN)
}

/// The longest any record of `config` can take (what a FIFO batch reserves before
/// starting the next record).
pub fn worst_case_any_record(config: &Config) -> Duration {
    config.destinations.values().map(worst_case_record).max().unwrap_or(AWS_CALLS_MARGIN)
}

/// Every destination's worst case must fit in the function's timeout, or a record
/// could never be started (and would come back forever).
pub fn check_function_timeout(config: &Config, function_timeout: Duration) -> Result<(), BudgetError> {
    for d in config.destinations.values() {
        let worst = worst_case_record(d);
        if worst > function_timeout {
            return Err(BudgetError::FunctionTimeoutTooShort {
                destination: d.name.clone(),
                worst_ms: worst.as_millis(),
                timeout_ms: d.timeout.as_millis(),
                calls: calls_per_record(d),
                margin_ms: AWS_CALLS_MARGIN.as_millis(),
                function_ms: function_timeout.as_millis(),
            });
        }
    }
    Ok(())
}

/// `maxReceiveCount` from a queue's `RedrivePolicy` attribute (a JSON string; the
/// count is a number on AWS and a string in some tools).
pub fn max_receive_count(queue: &str, redrive_policy: Option<&str>) -> Result<u32, BudgetError> {
    let none = || BudgetError::NoRedrive { queue: queue.to_owned() };
    let policy: serde_json::Value = serde_json::from_str(redrive_policy.ok_or_else(none)?).map_err(|_| none())?;
    match &policy["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .and_then(|n| u32::try_from(n).ok())
    .ok_or_else(none)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(destination: &str) -> Config {
        let text = format!(
            r#"
            [sources.s]
            scheme = "hmac"
            header = "X-Sig"
            [destinations.d]
            base_url = "https://d.example"
            {destination}
            "#
        );
        Config::parse("test.toml", &text, |_| Ok(String::new())).expect("config")
    }

    #[test]
    fn a_backstop_ten_times_the_budget_plus_headroom_is_enough() {
        let c = config("retry = { max_attempts = 5 }");
        assert_eq!(check_backstop(&c, "q", 60), Ok(()));
    }

    #[test]
    fn a_backstop_equal_to_the_retry_budget_is_refused_with_what_it_needs() {
        let c = config("retry = { max_attempts = 5 }");
        let err = check_backstop(&c, "switchyard-dev-dispatch", 5).unwrap_err();
        assert!(matches!(err, BudgetError::BackstopTooLow { needed: 60, actual: 5, .. }), "{err:?}");
        assert!(err.to_string().contains("RedriveMaxReceiveCount"));
    }

    #[test]
    fn an_oauth2_destination_reserves_four_calls_per_record() {
        let c = config(
            r#"timeout_ms = 5000
            auth = { kind = "oauth2_client_credentials", token_url = "https://t.example/token", secret = "destination/d" }"#,
        );
        assert_eq!(worst_case_record(&c.destinations["d"]), Duration::from_secs(23));
        assert!(check_function_timeout(&c, Duration::from_secs(23)).is_ok());
        let err = check_function_timeout(&c, Duration::from_secs(15)).unwrap_err();
        assert!(err.to_string().contains("DispatcherTimeoutSecs"), "{err}");
    }

    #[test]
    fn the_redrive_count_is_read_as_a_number_or_a_string_and_its_absence_is_an_error() {
        assert_eq!(max_receive_count("q", Some(r#"{"deadLetterTargetArn":"a","maxReceiveCount":100}"#)), Ok(100));
        assert_eq!(max_receive_count("q", Some(r#"{"deadLetterTargetArn":"a","maxReceiveCount":"7"}"#)), Ok(7));
        assert_eq!(max_receive_count("q", None), Err(BudgetError::NoRedrive { queue: "q".into() }));
        assert!(max_receive_count("q", Some("not json")).is_err());
    }
}
