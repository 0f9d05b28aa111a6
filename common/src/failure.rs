//! The error taxonomy of DESIGN.md, decided once and used by every SQS worker.
//!
//! Module errors stay typed (`thiserror`); at the edge of a worker each one is turned
//! into a [`Failure`], whose [`FailureClass`] alone decides what happens to the message.

use std::fmt;
use std::time::{Duration, SystemTime};

/// Marks the reason of a failed call whose request may have reached the destination
/// (it was sent, then no answer came: a timeout, a connection broken mid-call). Such an
/// attempt's outcome is unknown: the destination may have acted on it.
/// It leads the reason, so no truncation of a long reason can drop it.
pub const MAYBE_ARRIVED: &str = "sent, no answer:";

/// Whether a recorded reason is that of an attempt whose outcome is unknown.
pub fn maybe_arrived(reason: &str) -> bool {
    reason.starts_with(MAYBE_ARRIVED)
}

/// The first words of a park reason when some attempt's outcome was unknown.
pub const OUTCOME_UNKNOWN: &str = "outcome unknown:";

/// What to do with a message that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Retry with capped exponential backoff; the redrive policy is the backstop.
    Transient,
    /// The destination refused our credentials: refresh once, then treated as transient.
    Auth,
    /// Retrying cannot help: straight to the DLQ with the reason.
    Terminal,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Auth => "auth",
            FailureClass::Terminal => "terminal",
        }
    }

    /// The class written by [`FailureClass::as_str`] (as the ledger stores it).
    pub fn parse(s: &str) -> Option<Self> {
        [FailureClass::Transient, FailureClass::Auth, FailureClass::Terminal].into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure of one record. `reason` is short, stable and free of
/// payload values and secrets: it ends up in DLQ attributes and the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub reason: String,
    /// A delay the other side asked for (`Retry-After`); a floor for the backoff.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self { class: FailureClass::Transient, reason: reason.into(), retry_after: None }
    }

    pub fn auth(reason: impl Into<String>) -> Self {
        Self { class: FailureClass::Auth, reason: reason.into(), retry_after: None }
    }

    pub fn terminal(reason: impl Into<String>) -> Self {
        Self { class: FailureClass::Terminal, reason: reason.into(), retry_after: None }
    }

    pub fn with_retry_after(mut self, delay: Option<Duration>) -> Self {
        self.retry_after = delay;
        self
    }

    pub fn is_terminal(&self) -> bool {
        self.class == FailureClass::Terminal
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.reason)
    }
}

/// How an HTTP status from a destination is classified (DESIGN.md, error taxonomy).
pub fn classify_status(status: u16) -> Option<FailureClass> {
    match status {
        200..=299 => None,
        401 | 403 => Some(FailureClass::Auth),
        408 | 409 | 429 => Some(FailureClass::Transient),
        500..=599 => Some(FailureClass::Transient),
        _ => Some(FailureClass::Terminal),
    }
}

/// A `Retry-After` header value (RFC 9110 §10.2.3) as a delay from `now`: either
/// delay-seconds or an HTTP-date (a date already past means "now"). Anything else is
/// ignored: the backoff applies as if the header were absent.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_as_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:30:30 GMT", now), Some(Duration::from_secs(150)));
        // The obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(retry_after("Wed Oct 21 07:28:10 2015", now), Some(Duration::from_secs(10)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO), "a past date is now");
        assert_eq!(retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn a_garbage_retry_after_is_ignored() {
        let now = SystemTime::now();
        for garbage in ["", "soon", "-5", "1.5", "2 minutes", "Wed, 32 Oct 2015 07:28:00 GMT", "0x10", "+3"] {
            assert_eq!(retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn statuses_are_classified_as_the_taxonomy_says() {
        assert_eq!(classify_status(201), None);
        assert_eq!(classify_status(401), Some(FailureClass::Auth));
        assert_eq!(classify_status(403), Some(FailureClass::Auth));
        for s in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(s), Some(FailureClass::Transient), "{s}");
        }
        for s in [300, 400, 404, 410, 413, 422] {
            assert_eq!(classify_status(s), Some(FailureClass::Terminal), "{s}");
        }
    }
}
