//! The error taxonomy of DESIGN.md, decided once and used by every SQS worker.
//!
//! Module errors stay typed (`thiserror`); at the edge of a worker each one is turned
//! into a [`Failure`], whose [`FailureClass`] alone decides what happens to the message.

use std::fmt;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
