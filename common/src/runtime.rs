//! What every `main.rs` does once per container: JSON logs, the SDK config, clocks.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Structured JSON logs on stdout, one object per line, with the fields of every
/// enclosing span (correlation id, event id, source, flow, destination) on every line
/// (`logging::FlatJson`). `RUST_LOG` sets the level (default `info`). Every line is
/// masked on its way out (`redact`): secrets, signatures and personal data never reach
/// the logs.
pub fn init_logging() {
    init_logging_to(std::io::stdout);
}

/// [`init_logging`] with lines going to `writer` instead of stdout — the same
/// format and the same redaction (the end-to-end tests capture logs this way).
pub fn init_logging_to<W>(writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // A second init (tests, the local runner) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(crate::logging::subscriber(writer));
}

/// The SDK config from the environment; `AWS_ENDPOINT_URL` points it at a local
/// endpoint, with nothing else changed. Its https client is the project's one TLS
/// stack (`tls`).
pub async fn aws_config() -> aws_config::SdkConfig {
    crate::tls::aws_config_loader().load().await
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What every `main` does before serving: JSON logs, the SDK config, and the
/// function's dependencies built once. A failure is logged with its reason and stops
/// the cold start, so a bad setting never meets an event.
pub async fn cold_start<D, F, Fut>(build: F) -> Result<D, String>
where
    F: FnOnce(aws_config::SdkConfig) -> Fut,
    Fut: std::future::Future<Output = Result<D, String>>,
{
    init_logging();
    let sdk = aws_config().await;
    async {
        // `init_logging` falls back to `info` on a bad filter; a cold start does not.
        if let Some(filter) = optional_env("RUST_LOG")? {
            check_log_filter(&filter)?;
        }
        build(sdk).await
    }
    .await
    .inspect_err(|e| tracing::error!(error = %e, "cannot start"))
}

/// The longest a cold start waits for its [`warm_up`].
pub const WARM_UP_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// One step of a cold start's warm-up.
pub type WarmUpStep<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// Runs a cold start's warm-up steps together, for at most [`WARM_UP_BUDGET`]: the
/// connections the first event needs (in AWS, a TLS handshake each, hundreds of ms for
/// the first DynamoDB call) and the secrets it reads are opened and cached during
/// init, side by side, instead of one after another inside the first event. A step
/// that fails or is cut short only leaves that work to the first event.
pub async fn warm_up(steps: Vec<WarmUpStep<'_>>) {
    let _ = tokio::time::timeout(WARM_UP_BUDGET, futures_util::future::join_all(steps)).await;
}

/// A required environment variable, or a message that says which one is missing.
pub fn env(name: &str) -> Result<String, String> {
    optional_env(name)?.ok_or_else(|| format!("environment variable {name} is not set"))
}

/// An optional environment variable: `None` when unset, an error naming it when it is
/// set but not valid Unicode (a set-but-unreadable value is never taken for unset).
pub fn optional_env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("environment variable {name} is not valid Unicode")),
    }
}

/// `RUST_LOG` must be a filter `tracing_subscriber` understands.
fn check_log_filter(filter: &str) -> Result<(), String> {
    EnvFilter::try_new(filter).map(drop).map_err(|e| format!("RUST_LOG is not a valid log filter: {e}"))
}

/// Waits until `interval` has passed since the last call that went through `last`
/// (none yet: at once), then marks this one: one request at a time at most every
/// `interval` (a replay's `--rate`, a polling source's `rate_limit`).
pub async fn pace(interval: std::time::Duration, last: &mut Option<std::time::Instant>) {
    if let Some(at) = *last {
        let wait = interval.saturating_sub(at.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    *last = Some(std::time::Instant::now());
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_filter_that_does_not_parse_is_refused_naming_rust_log() {
        assert_eq!(super::check_log_filter("info,switchyard_mapper=debug"), Ok(()));
        let err = super::check_log_filter("switchyard=loud").unwrap_err();
        assert!(err.starts_with("RUST_LOG is not a valid log filter"), "{err}");
    }
}
