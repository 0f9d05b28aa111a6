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

/// The SDK config a Lambda function runs with: region, credentials and endpoint from
/// the variables Lambda sets (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`; `AWS_ENDPOINT_URL` for a local endpoint), the SDK's standard
/// retries and 3.1-second connect timeout, and the https client of `tls`.
///
/// It is what [`aws_config`] resolves inside Lambda, where there are no profile files,
/// no instance metadata and no web identity token, without linking the code that looks
/// for them (the default provider chains, the profile parser, the IMDS and STS
/// clients): 0.21–0.25 MB less in each function's `bootstrap.zip` (README, "Cost of an
/// event").
/// Operator tools (`switchyard-ops`, the local runner) keep [`aws_config`]: on a laptop
/// the profile chain is what finds the credentials.
pub fn lambda_sdk_config() -> Result<aws_config::SdkConfig, String> {
    lambda_sdk_config_from(optional_env)
}

/// [`lambda_sdk_config`] with the variables read through `var` (set but empty counts as
/// unset, as `aws_config` has it).
fn lambda_sdk_config_from(
    var: impl Fn(&str) -> Result<Option<String>, String>,
) -> Result<aws_config::SdkConfig, String> {
    use aws_sdk_sqs::config::SharedCredentialsProvider;
    let set = |name: &str| var(name).map(|v| v.filter(|v| !v.is_empty()));
    let region = match set("AWS_REGION")? {
        Some(region) => Some(region),
        None => set("AWS_DEFAULT_REGION")?,
    };
    let credentials = aws_config::environment::EnvironmentVariableCredentialsProvider::new();
    let mut sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(region.map(aws_config::Region::new))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .retry_config(aws_config::retry::RetryConfig::standard())
        .timeout_config(aws_config::timeout::TimeoutConfig::builder().connect_timeout(SDK_CONNECT_TIMEOUT).build())
        .http_client(crate::tls::sdk_https_client());
    if let Some(url) = set("AWS_ENDPOINT_URL")? {
        sdk = sdk.endpoint_url(url);
    }
    Ok(sdk.build())
}

/// The connect timeout `aws_config` gives every client (its `SDK_DEFAULT_CONNECT_TIMEOUT`).
const SDK_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(3100);

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
    async {
        // `init_logging` falls back to `info` on a bad filter; a cold start does not.
        if let Some(filter) = optional_env("RUST_LOG")? {
            check_log_filter(&filter)?;
        }
        build(lambda_sdk_config()?).await
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
    use std::collections::HashMap;

    fn lambda_config(vars: &[(&str, &str)]) -> aws_config::SdkConfig {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        super::lambda_sdk_config_from(|name| Ok(vars.get(name).cloned())).unwrap()
    }

    #[test]
    fn a_lambda_sdk_config_takes_region_and_endpoint_from_lambdas_variables_with_the_sdks_retries_and_timeouts() {
        let sdk = lambda_config(&[("AWS_REGION", "eu-west-1"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")]);
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert_eq!(sdk.retry_config().map(|r| r.max_attempts()), Some(3));
        assert_eq!(
            sdk.timeout_config().and_then(|t| t.connect_timeout()),
            Some(std::time::Duration::from_millis(3100))
        );
        assert!(sdk.credentials_provider().is_some() && sdk.identity_cache().is_some() && sdk.http_client().is_some());
        assert_eq!(sdk.behavior_version(), Some(aws_config::BehaviorVersion::latest()));
    }

    #[test]
    fn a_lambda_sdk_config_falls_back_to_the_default_region_and_has_no_endpoint_when_none_or_an_empty_one_is_set() {
        let sdk = lambda_config(&[("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "us-east-2"), ("AWS_ENDPOINT_URL", "")]);
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("us-east-2"));
        assert_eq!(sdk.endpoint_url(), None);
        assert!(lambda_config(&[]).region().is_none());
    }

    #[test]
    fn a_lambda_sdk_config_refuses_a_variable_that_is_not_unicode_naming_it() {
        let err = super::lambda_sdk_config_from(|name| {
            if name == "AWS_REGION" {
                Err(format!("environment variable {name} is not valid Unicode"))
            } else {
                Ok(None)
            }
        })
        .unwrap_err();
        assert!(err.contains("AWS_REGION"), "{err}");
    }

    #[test]
    fn a_log_filter_that_does_not_parse_is_refused_naming_rust_log() {
        assert_eq!(super::check_log_filter("info,switchyard_mapper=debug"), Ok(()));
        let err = super::check_log_filter("switchyard=loud").unwrap_err();
        assert!(err.starts_with("RUST_LOG is not a valid log filter"), "{err}");
    }
}
