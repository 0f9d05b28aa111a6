//! The flow file: sources, destinations and flows, versioned with the code.
//!
//! Everything is checked when the file is loaded — unknown references, jq programs
//! that do not compile, schemas that are not schemas — so a config error shows up in
//! `make test` and at cold start, never on the first event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::contract::{Contract, ContractError};
use crate::envelope::Mode;
use crate::mapping::{JqProgram, MappingError};
use crate::signature::Scheme;

/// The config files compiled into the binaries (`config/` at build time), so a
/// deployed function needs nothing beside its `bootstrap`.
pub mod poll;
pub mod reconcile;

pub use poll::PollSource;
pub use reconcile::Reconcile;

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not a valid flow file: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(transparent)]
    Contract(#[from] ContractError),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Webhook sources, and polling ones (`kind = "poll"`, see [`poll`]): each table
    /// is read as one or the other by its `kind`.
    #[serde(default)]
    sources: BTreeMap<String, toml::Value>,
    #[serde(default)]
    destinations: BTreeMap<String, RawDestination>,
    #[serde(default)]
    flows: Vec<RawFlow>,
}

// No deny_unknown_fields here: serde cannot combine it with the flattened scheme.
#[derive(Debug, Deserialize)]
struct RawSource {
    #[serde(flatten)]
    scheme: Scheme,
    secret: Option<String>,
    #[serde(default = "default_tolerance")]
    tolerance_secs: i64,
    #[serde(default = "default_rotation_grace")]
    rotation_grace_secs: i64,
    event_id: Option<String>,
    event_type: Option<String>,
    event_type_header: Option<String>,
    /// Keep every accepted envelope in the stage's archive bucket (when it has one).
    #[serde(default = "default_archive")]
    archive: bool,
}

fn default_archive() -> bool {
    true
}

fn default_tolerance() -> i64 {
    300
}

fn default_rotation_grace() -> i64 {
    24 * 3600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    base_url: String,
    #[serde(default)]
    auth: Auth,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    retry: RetryPolicy,
    signing: Option<RawSigning>,
    rate_limit: Option<RateLimit>,
    max_in_flight: Option<u32>,
    breaker: Option<BreakerPolicy>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: String,
    version: u32,
    source: String,
    #[serde(default)]
    event_types: Vec<String>,
    filter: Option<String>,
    mapping: String,
    contract: Option<String>,
    destination: String,
    #[serde(default = "default_method")]
    method: String,
    path: String,
    #[serde(default)]
    mode: Mode,
    ordering_key: Option<String>,
    entity_version: Option<String>,
    idempotency_key: Option<String>,
    entity_key: Option<String>,
    slo: Option<Slo>,
    /// How to read back what it wrote (the reconciler).
    reconcile: Option<reconcile::RawReconcile>,
    /// Payload field names whose values must never reach a log line.
    #[serde(default)]
    sensitive: Vec<String>,
}

fn default_method() -> String {
    "POST".to_owned()
}

/// How the dispatcher authenticates to a destination. Secret values live in Secrets
/// Manager as JSON objects under `switchyard/{stage}/{secret}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    /// `{"api_key": "..."}` sent in `header`.
    ApiKey {
        #[serde(default = "default_api_key_header")]
        header: String,
        secret: String,
    },
    /// `{"token": "..."}` sent as `Authorization: Bearer <token>`.
    Bearer { secret: String },
    /// `{"username": "...", "password": "..."}` sent as HTTP Basic.
    Basic { secret: String },
    /// `{"client_id": "...", "client_secret": "..."}` exchanged at `token_url` for an
    /// access token (RFC 6749 §4.4), which is sent as a bearer token and reused until
    /// shortly before it expires.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        token_url: String,
        #[serde(default)]
        scope: Option<String>,
        #[serde(default)]
        audience: Option<String>,
        secret: String,
    },
    /// `{"url": "https://hooks.example.com/services/T0/B0/XXXX"}`: an incoming-webhook
    /// URL that is itself the credential (a team chat's). Its path and query are sent
    /// to the destination's `base_url`, whose host it must name; flows to such a
    /// destination have `path = "/"`.
    WebhookUrl { secret: String },
}

fn default_api_key_header() -> String {
    "X-Api-Key".to_owned()
}

impl Auth {
    pub fn secret(&self) -> Option<&str> {
        match self {
            Auth::None => None,
            Auth::ApiKey { secret, .. }
            | Auth::Bearer { secret }
            | Auth::Basic { secret }
            | Auth::WebhookUrl { secret }
            | Auth::OAuth2ClientCredentials { secret, .. } => Some(secret),
        }
    }

    /// The snake_case kind, as written in the flow file (for logs and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::ApiKey { .. } => "api_key",
            Auth::Bearer { .. } => "bearer",
            Auth::Basic { .. } => "basic",
            Auth::OAuth2ClientCredentials { .. } => "oauth2_client_credentials",
            Auth::WebhookUrl { .. } => "webhook_url",
        }
    }

    /// What can be checked without the secret: header names, the token URL.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Auth::ApiKey { header, .. } if http::HeaderName::from_bytes(header.as_bytes()).is_err() => {
                Err(format!("auth header {header:?} is not a valid header name"))
            }
            Auth::OAuth2ClientCredentials { token_url, .. }
                if !(token_url.starts_with("https://") || token_url.starts_with("http://")) =>
            {
                Err("auth token_url must be an http(s) URL".to_owned())
            }
            _ if self.secret().is_some_and(str::is_empty) => Err("auth secret must not be empty".to_owned()),
            _ => Ok(()),
        }
    }
}

/// How the dispatcher signs what it sends, e.g.
/// `signing = { scheme = "standard_webhooks", secret = "destination/crm-signing" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    pub scheme: SigningScheme,
    /// Secret id suffix; defaults to `destination/{name}-signing`. The value is a
    /// `whsec_…` string or `{"secret": "whsec_…"}`.
    pub secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningScheme {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (standardwebhooks.com).
    StandardWebhooks,
}

impl SigningScheme {
    pub fn scheme(self) -> Scheme {
        match self {
            SigningScheme::StandardWebhooks => Scheme::StandardWebhooks,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    scheme: SigningScheme,
    secret: Option<String>,
}

/// How fast a destination may be called, shared by every dispatcher:
/// `rate_limit = { per_second = 10, burst = 10 }`. A token bucket (GCRA) kept on one
/// item of the ledger table (`gate`); a delivery over the limit waits on its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    /// Calls allowed back to back after a quiet spell; defaults to `per_second`.
    pub burst: Option<u32>,
}

impl RateLimit {
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.per_second)
    }
}

/// The circuit breaker of a destination, shared by every dispatcher:
/// `breaker = { failures = 5, cooldown_secs = 30 }` opens it after 5 consecutive
/// transient failures; `breaker = { failure_rate = 0.5, window_secs = 60, min_calls = 20 }`
/// instead opens it when at least half of the calls of the last minute failed (once
/// there were 20). How long it may stay open before it pages someone is the template's
/// `BreakerAlarmMinutes` (one place, the alarm's).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Consecutive transient failures (timeouts, refused connections, 5xx, 429) that open it.
    pub failures: u32,
    /// When set, the share of failed calls in a window that opens it, instead of `failures`.
    pub failure_rate: Option<f64>,
    /// The failure rate's window (a fixed window, restarted when it has passed).
    pub window_secs: u64,
    /// Calls the window must hold before its rate counts.
    pub min_calls: u32,
    /// How long it stays open before one probe (half-open) may call the destination.
    pub cooldown_secs: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self { failures: 5, failure_rate: None, window_secs: 60, min_calls: 20, cooldown_secs: 30 }
    }
}

/// A flow's latency objective: the share of its events (`objective`) that reach the
/// destination's 2xx within `within_secs` of intake accepting them. Each delivered or
/// parked event spends `1 / (1 − objective)` of a unit of error budget when late (or
/// parked) and none otherwise, so a burn rate is `spent / events`, whatever the objective.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub within_secs: u64,
    pub objective: f64,
}

impl Slo {
    /// What one event spends of the error budget: 0 when on time.
    pub fn budget_spent(&self, lag_ms: Option<i64>) -> f64 {
        let late = lag_ms.is_none_or(|ms| ms > (self.within_secs as i64).saturating_mul(1_000));
        if late {
            1.0 / (1.0 - self.objective)
        } else {
            0.0
        }
    }
}

/// The retry budget of a destination: how many attempts, how far apart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// A delivery older than this (since it was first queued) is parked, whatever
    /// attempts are left.
    pub max_age_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, base_delay_ms: 2_000, max_delay_ms: 300_000, max_age_secs: 24 * 3600 }
    }
}

#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub scheme: Scheme,
    /// Secret id suffix, e.g. `source/stripe`.
    pub secret: String,
    pub tolerance_secs: i64,
    /// How long after a new secret became current (its version's creation) the
    /// previous one is still accepted; 0 accepts the current secret only.
    pub rotation_grace_secs: i64,
    /// JSON pointer to the provider's event id in the payload.
    pub event_id: Option<String>,
    /// JSON pointer to the event type in the payload.
    pub event_type: Option<String>,
    pub event_type_header: Option<String>,
    /// Whether its accepted envelopes are archived (`archive = false` opts out; the
    /// stage must also have an archive bucket).
    pub archive: bool,
}

#[derive(Debug)]
pub struct Destination {
    pub name: String,
    pub base_url: String,
    pub auth: Auth,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub signing: Option<Signing>,
    pub rate_limit: Option<RateLimit>,
    /// At most this many calls at once, across every dispatcher.
    pub max_in_flight: Option<u32>,
    pub breaker: Option<BreakerPolicy>,
}

impl Destination {
    /// Whether any dispatcher must consult the shared gate before calling.
    pub fn is_gated(&self) -> bool {
        self.rate_limit.is_some() || self.max_in_flight.is_some() || self.breaker.is_some()
    }
}

#[derive(Debug)]
pub struct Flow {
    pub name: String,
    pub version: u32,
    pub source: String,
    /// Empty means every event type of the source.
    pub event_types: Vec<String>,
    pub filter: Option<JqProgram>,
    pub mapping: JqProgram,
    pub contract: Option<Contract>,
    pub destination: String,
    pub method: http::Method,
    pub path: String,
    pub mode: Mode,
    /// jq: the entity key; the flow then dispatches through the FIFO queue pair.
    pub ordering_key: Option<JqProgram>,
    /// jq: an integer version of the entity (e.g. an `updated` timestamp); needs `ordering_key`.
    pub entity_version: Option<JqProgram>,
    pub idempotency_key: Option<JqProgram>,
    /// jq: the business key operators look events up by (`switchyard-ops find --key`);
    /// stored hashed (`ledger::entity_hash`), never in clear.
    pub entity_key: Option<JqProgram>,
    /// A latency objective: `slo = { within_secs = 120, objective = 0.995 }`.
    pub slo: Option<Slo>,
    /// How the reconciler reads back what it wrote.
    pub reconcile: Option<Reconcile>,
}

impl Flow {
    /// Another version of this flow with its own mapping and mode: what a dark or a
    /// backtested version is in a test. It takes the same events to the same place;
    /// filter, contract and key expressions are not carried over.
    pub fn another_version(&self, version: u32, mode: Mode, mapping: JqProgram) -> Flow {
        Flow {
            name: self.name.clone(),
            version,
            source: self.source.clone(),
            event_types: self.event_types.clone(),
            filter: None,
            mapping,
            contract: None,
            destination: self.destination.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            mode,
            ordering_key: None,
            entity_version: None,
            idempotency_key: None,
            entity_key: None,
            slo: None,
            reconcile: None,
        }
    }

    pub fn accepts_type(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

/// Which of the flow file's jq programs [`Config::check_programs`] compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Programs {
    /// Each flow's mapping, filter and key expressions: what the mapper runs.
    Flows,
    /// The polling sources' cursor, record, id and version expressions.
    Polls,
    /// Those and the flows' `reconcile` expressions.
    All,
}

#[derive(Debug)]
pub struct Config {
    /// Webhook sources (intake's `/hooks/{name}`).
    pub sources: BTreeMap<String, Source>,
    /// Polling sources (the poller's).
    pub polls: BTreeMap<String, PollSource>,
    pub destinations: BTreeMap<String, Destination>,
    pub flows: Vec<Flow>,
}

impl Config {
    /// Loads a flow file from disk; mapping and contract paths are relative to it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let read = |rel: &str| {
            let p = dir.join(rel);
            std::fs::read_to_string(&p)
                .map_err(|e| ConfigError::Read { path: p.display().to_string(), message: e.to_string() })
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse(&path.display().to_string(), &text, read)
    }

    /// The flow file compiled into the binary from `config/flows.toml`.
    pub fn bundled() -> Result<Self, ConfigError> {
        let read = |rel: &str| {
            let rel = rel.trim_start_matches("./");
            bundled::FILES
                .iter()
                .find(|(name, _)| *name == rel)
                .map(|(_, text)| (*text).to_owned())
                .ok_or_else(|| ConfigError::Read { path: rel.to_owned(), message: "not bundled".to_owned() })
        };
        let text = read("flows.toml")?;
        Self::parse("flows.toml (bundled)", &text, read)
    }

    /// `SWITCHYARD_CONFIG` names a flow file on disk; without it, the bundled one.
    /// Destination URLs differ per stage: `SWITCHYARD_DESTINATION_{NAME}_URL` overrides
    /// `base_url` (name upper-cased, `-` as `_`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let optional = |name: &str| crate::runtime::optional_env(name).map_err(ConfigError::Invalid);
        let mut config = match optional("SWITCHYARD_CONFIG")? {
            Some(path) if !path.is_empty() => Self::load(Path::new(&path))?,
            _ => Self::bundled()?,
        };
        config.apply_destination_env()?;
        for p in config.polls.values_mut() {
            if let Some(url) = optional(&p.url_variable())? {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(format!("{} must be an http(s) URL", p.url_variable())));
                }
                p.url = url.trim_end_matches('/').to_owned();
            }
        }
        Ok(config)
    }

    /// Points each destination named by a `SWITCHYARD_DESTINATION_{NAME}_URL` variable
    /// at that URL. Shared by `from_env` and the local runner, so that a destination is
    /// resolved the same way wherever the functions run.
    pub fn apply_destination_env(&mut self) -> Result<(), ConfigError> {
        for d in self.destinations.values_mut() {
            let var = destination_url_var(&d.name);
            if let Some(url) = crate::runtime::optional_env(&var).map_err(ConfigError::Invalid)? {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(format!("{var} must be an http(s) URL")));
                }
                d.base_url = url.trim_end_matches('/').to_owned();
            }
            if let Auth::OAuth2ClientCredentials { token_url, .. } = &mut d.auth {
                let var = destination_token_url_var(&d.name);
                if let Some(url) = crate::runtime::optional_env(&var).map_err(ConfigError::Invalid)? {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return Err(invalid(format!("{var} must be an http(s) URL")));
                    }
                    *token_url = url;
                }
            }
        }
        Ok(())
    }

    pub fn parse(
        path: &str,
        text: &str,
        read: impl Fn(&str) -> Result<String, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;

        let mut sources = BTreeMap::new();
        let mut polls = BTreeMap::new();
        for (name, table) in raw.sources {
            check_name("source", &name)?;
            let parse_err = |e: toml::de::Error| ConfigError::Parse {
                path: path.to_owned(),
                message: format!("source {name}: {}", e.message()),
            };
            if poll::is_poll(&table) {
                let raw: poll::RawPoll = table.try_into().map_err(parse_err)?;
                polls.insert(name.clone(), poll::build(&name, raw)?);
                continue;
            }
            let s: RawSource = table.try_into().map_err(parse_err)?;
            for (what, pointer) in [("event_id", &s.event_id), ("event_type", &s.event_type)] {
                if let Some(p) = pointer {
                    if !(p.is_empty() || p.starts_with('/')) {
                        return Err(invalid(format!(
                            "source {name}: {what} must be a JSON pointer like \"/id\", got {p:?}"
                        )));
                    }
                }
            }
            s.scheme.validate().map_err(|e| invalid(format!("source {name}: {e}")))?;
            let at = format!("source {name}");
            in_range(&at, "tolerance_secs", s.tolerance_secs, ranges::TOLERANCE_SECS)?;
            in_range(&at, "rotation_grace_secs", s.rotation_grace_secs, ranges::ROTATION_GRACE_SECS)?;
            let secret = s.secret.unwrap_or_else(|| format!("source/{name}"));
            sources.insert(
                name.clone(),
                Source {
                    name,
                    scheme: s.scheme,
                    secret,
                    tolerance_secs: s.tolerance_secs,
                    rotation_grace_secs: s.rotation_grace_secs,
                    event_id: s.event_id,
                    event_type: s.event_type,
                    event_type_header: s.event_type_header,
                    archive: s.archive,
                },
            );
        }

        let mut destinations = BTreeMap::new();
        for (name, d) in raw.destinations {
            check_name("destination", &name)?;
            if !(d.base_url.starts_with("https://") || d.base_url.starts_with("http://")) {
                return Err(invalid(format!("destination {name}: base_url must be an http(s) URL")));
            }
            let at = format!("destination {name}");
            in_range(&at, "timeout_ms", d.timeout_ms, ranges::TIMEOUT_MS)?;
            in_range(&at, "retry.max_attempts", d.retry.max_attempts, ranges::MAX_ATTEMPTS)?;
            in_range(&at, "retry.max_delay_ms", d.retry.max_delay_ms, ranges::MAX_DELAY_MS)?;
            in_range(&at, "retry.base_delay_ms", d.retry.base_delay_ms, 0..=d.retry.max_delay_ms)?;
            in_range(&at, "retry.max_age_secs", d.retry.max_age_secs, ranges::MAX_AGE_SECS)?;
            d.auth.validate().map_err(|e| invalid(format!("destination {name}: {e}")))?;
            if let Some(r) = &d.rate_limit {
                in_range(&at, "rate_limit.per_second", r.per_second, ranges::PER_SECOND)?;
                in_range(&at, "rate_limit.burst", r.burst(), ranges::BURST)?;
            }
            if let Some(k) = d.max_in_flight {
                in_range(&at, "max_in_flight", k, ranges::MAX_IN_FLIGHT)?;
            }
            if let Some(b) = &d.breaker {
                in_range(&at, "breaker.failures", b.failures, ranges::BREAKER_FAILURES)?;
                in_range(&at, "breaker.cooldown_secs", b.cooldown_secs, ranges::COOLDOWN_SECS)?;
                in_range(&at, "breaker.window_secs", b.window_secs, ranges::WINDOW_SECS)?;
                in_range(&at, "breaker.min_calls", b.min_calls, ranges::MIN_CALLS)?;
                if b.failure_rate.is_some_and(|r| !(r > 0.0 && r <= 1.0)) {
                    return Err(invalid(format!("{at}: breaker.failure_rate must be a share above 0 and at most 1")));
                }
            }
            let signing = d.signing.map(|s| Signing {
                scheme: s.scheme,
                secret: s.secret.unwrap_or_else(|| format!("destination/{name}-signing")),
            });
            destinations.insert(
                name.clone(),
                Destination {
                    name,
                    base_url: d.base_url.trim_end_matches('/').to_owned(),
                    auth: d.auth,
                    timeout: Duration::from_millis(d.timeout_ms),
                    retry: d.retry,
                    signing,
                    rate_limit: d.rate_limit,
                    max_in_flight: d.max_in_flight,
                    breaker: d.breaker,
                },
            );
        }

        let mut flows: Vec<Flow> = Vec::new();
        for f in raw.flows {
            check_name("flow", &f.name)?;
            let at = |what: &str| format!("flow {} v{}: {what}", f.name, f.version);
            // Versions of one flow side by side: at most one live, the others dark
            // (compared with it by `switchyard-ops flows diff`) or off.
            if flows.iter().any(|g| g.name == f.name && g.version == f.version) {
                return Err(invalid(at("declared twice (bump version instead)")));
            }
            if f.mode == Mode::Live {
                if let Some(g) = flows.iter().find(|g| g.name == f.name && g.mode == Mode::Live) {
                    return Err(invalid(at(&format!(
                        "v{} is live too: one version of a flow is live, the others dark or off",
                        g.version
                    ))));
                }
            }
            if let Some(slo) = &f.slo {
                if !(1..=86_400).contains(&slo.within_secs) {
                    return Err(invalid(at("slo.within_secs must be between 1 and 86400")));
                }
                if !(slo.objective > 0.0 && slo.objective < 1.0) {
                    return Err(invalid(at("slo.objective must be a share strictly between 0 and 1, e.g. 0.995")));
                }
            }
            if !sources.contains_key(&f.source) && !polls.contains_key(&f.source) {
                return Err(invalid(at(&format!("unknown source {:?}", f.source))));
            }
            if !destinations.contains_key(&f.destination) {
                return Err(invalid(at(&format!("unknown destination {:?}", f.destination))));
            }
            if !f.path.starts_with('/') {
                return Err(invalid(at("path must start with /")));
            }
            if matches!(destinations[&f.destination].auth, Auth::WebhookUrl { .. }) && f.path != "/" {
                return Err(invalid(at(
                    "path must be \"/\": its destination takes the whole path from its webhook_url secret",
                )));
            }
            if f.entity_version.is_some() && f.ordering_key.is_none() {
                return Err(invalid(at("entity_version needs an ordering_key (the entity it versions)")));
            }
            for field in &f.sensitive {
                crate::redact::register_sensitive_field(field);
            }
            let method = http::Method::from_bytes(f.method.to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid(at(&format!("invalid method {:?}", f.method))))?;
            let mapping = JqProgram::deferred(&f.mapping, &read(&f.mapping)?);
            let contract = match &f.contract {
                Some(rel) => {
                    let text = read(rel)?;
                    let schema: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| invalid(at(&format!("contract {rel}: {e}"))))?;
                    Some(Contract::new(rel, schema))
                }
                None => None,
            };
            let expr = |label: &str, src: &Option<String>| {
                src.as_deref().map(|s| JqProgram::deferred(&format!("{}.{label}", f.name), s))
            };
            flows.push(Flow {
                filter: expr("filter", &f.filter),
                ordering_key: expr("ordering_key", &f.ordering_key),
                entity_version: expr("entity_version", &f.entity_version),
                idempotency_key: expr("idempotency_key", &f.idempotency_key),
                entity_key: expr("entity_key", &f.entity_key),
                slo: f.slo,
                reconcile: f.reconcile.map(|r| reconcile::build(&f.name, r)).transpose()?,
                name: f.name,
                version: f.version,
                source: f.source,
                event_types: f.event_types,
                mapping,
                contract,
                destination: f.destination,
                method,
                path: f.path,
                mode: f.mode,
            });
        }
        Ok(Config { sources, polls, destinations, flows })
    }

    /// Compiles the flow file's jq programs of one kind (loading only keeps their text,
    /// see [`JqProgram::deferred`]): the cold start of each function that runs jq
    /// compiles what it runs — the mapper [`Programs::Flows`], the poller
    /// [`Programs::Polls`], the reconciler and the local runner [`Programs::All`] — and
    /// refuses a flow file with a program that does not compile, before the first
    /// event. Compiling costs about 1 ms per program (jaq compiles its standard library
    /// with each), so a function does not compile what it never runs.
    pub fn check_programs(&self, of: Programs) -> Result<(), ConfigError> {
        let flows = self.flows.iter().flat_map(|f| {
            let keys = [&f.filter, &f.ordering_key, &f.entity_version, &f.idempotency_key, &f.entity_key];
            std::iter::once(&f.mapping).chain(keys.into_iter().flatten())
        });
        let reconcile = self.flows.iter().filter_map(|f| f.reconcile.as_ref()).flat_map(|r| r.programs());
        let polls = self.polls.values().flat_map(|p| p.programs());
        let programs: Box<dyn Iterator<Item = &JqProgram>> = match of {
            Programs::Flows => Box::new(flows),
            Programs::Polls => Box::new(polls),
            Programs::All => Box::new(flows.chain(reconcile).chain(polls)),
        };
        for program in programs {
            program.check()?;
        }
        Ok(())
    }

    /// Compiles every flow's contract schema (loading only parses them, see
    /// [`Contract`]): the mapper's cold start and the local runner refuse a flow file
    /// whose contract is not a valid schema.
    pub fn check_contracts(&self) -> Result<(), ConfigError> {
        for contract in self.flows.iter().filter_map(|f| f.contract.as_ref()) {
            contract.check()?;
        }
        Ok(())
    }

    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.get(name)
    }

    /// Whether the envelopes of `source` are archived (`archive = true`, the default;
    /// an unknown source's too, so that nothing is lost for lack of a setting).
    pub fn archives(&self, source: &str) -> bool {
        match (self.sources.get(source), self.polls.get(source)) {
            (Some(s), _) => s.archive,
            (None, Some(p)) => p.archive,
            (None, None) => true,
        }
    }

    /// Whether flow `name` has a dark version beside its live one: then its live
    /// deliveries record their requests too, for `switchyard-ops flows diff`.
    pub fn has_dark_version(&self, name: &str) -> bool {
        self.flows.iter().any(|f| f.name == name && f.mode == Mode::Dark)
    }

    /// Version `version` of flow `name`.
    pub fn flow(&self, name: &str, version: u32) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name && f.version == version)
    }

    /// The version of flow `name` that sends for real.
    pub fn live_flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().filter(|f| f.name == name && f.mode == Mode::Live).max_by_key(|f| f.version)
    }
}

/// The variable that overrides an OAuth2 destination's `token_url`.
pub fn destination_token_url_var(destination: &str) -> String {
    format!("SWITCHYARD_DESTINATION_{}_TOKEN_URL", destination.to_ascii_uppercase().replace('-', "_"))
}

/// The variable that overrides a destination's `base_url`: name upper-cased, `-` as `_`.
pub fn destination_url_var(destination: &str) -> String {
    format!("SWITCHYARD_DESTINATION_{}_URL", destination.to_ascii_uppercase().replace('-', "_"))
}

/// The allowed range of every number in the flow file, so no value overflows where
/// it is used (`max_age_secs * 1000`) or outlives what SQS can hold.
pub mod ranges {
    use std::ops::RangeInclusive;

    /// Up to an hour of clock skew between a provider and us.
    pub const TOLERANCE_SECS: RangeInclusive<i64> = 1..=3_600;
    /// Up to 30 days: the rotation schedule.
    pub const ROTATION_GRACE_SECS: RangeInclusive<i64> = 0..=30 * 86_400;
    /// Up to a minute per call, so a dispatcher batch ends within its function timeout.
    pub const TIMEOUT_MS: RangeInclusive<u64> = 1..=60_000;
    pub const MAX_ATTEMPTS: RangeInclusive<u32> = 1..=100;
    /// Up to 12 hours: the longest an SQS message can be kept invisible.
    pub const MAX_DELAY_MS: RangeInclusive<u64> = 1..=12 * 3_600_000;
    /// Up to 14 days: the longest SQS retains a message.
    pub const MAX_AGE_SECS: RangeInclusive<u64> = 1..=14 * 86_400;
    pub const PER_SECOND: RangeInclusive<u32> = 1..=10_000;
    pub const BURST: RangeInclusive<u32> = 1..=10_000;
    pub const MAX_IN_FLIGHT: RangeInclusive<u32> = 1..=1_000;
    pub const BREAKER_FAILURES: RangeInclusive<u32> = 1..=1_000;
    /// Up to 15 minutes: the longest SQS can delay a sent message.
    pub const COOLDOWN_SECS: RangeInclusive<u64> = 1..=900;
    pub const WINDOW_SECS: RangeInclusive<u64> = 1..=3_600;
    pub const MIN_CALLS: RangeInclusive<u32> = 1..=100_000;
}

fn in_range<T>(at: &str, field: &str, value: T, range: std::ops::RangeInclusive<T>) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(format!("{at}: {field} must be from {} to {}, got {value}", range.start(), range.end())))
    }
}

fn check_name(what: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("{what} name {name:?} must be 1-64 of a-z, 0-9, - and _")))
    }
}

#[cfg(test)]
mod tests;
