//! Polling sources: systems without webhooks, read on a schedule.
//!
//! ```toml
//! [sources.legacy-orders]
//! kind = "poll"
//! url = "https://orders.example.com/api/orders"   # per stage: SWITCHYARD_SOURCE_LEGACY_ORDERS_URL
//! auth = { kind = "bearer", secret = "source/legacy-orders" }
//! every_secs = 60
//! params = { limit = "100" }
//! cursor = { param = "updated_since", initial = "1970-01-01T00:00:00Z", next = ".next_cursor" }
//! more = ".has_more"
//! records = ".orders"
//! id = ".id"
//! version = ".updated_at"
//! event_type = "order.updated"
//! ```
//!
//! Each page is `GET url?{params}&{cursor.param}={cursor}`; `records` (jq on the
//! page) lists its records, each becoming one envelope whose event id is
//! `{id}@{version}` (both jq on the record), so a record is accepted again only when
//! its version changes. `cursor.next` (jq on the page) is where the next page starts
//! — an `updated_since` timestamp or a page token, whichever the API speaks; `more`
//! (jq, a boolean) says whether to read the next page now (default: a page that had
//! records and a next cursor). The cursor is kept in the ledger and advanced only
//! after the page's records are on the ingest queue.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{in_range, invalid, Auth, ConfigError, Destination, RateLimit, RetryPolicy};
use crate::mapping::JqProgram;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoll {
    #[allow(dead_code)]
    kind: String,
    url: String,
    #[serde(default)]
    auth: Auth,
    #[serde(default = "default_every")]
    every_secs: u64,
    #[serde(default)]
    params: BTreeMap<String, String>,
    cursor: RawCursor,
    more: Option<String>,
    records: String,
    id: String,
    version: String,
    event_type: String,
    rate_limit: Option<RateLimit>,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_max_pages")]
    max_pages: u32,
    #[serde(default = "super::default_archive")]
    archive: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCursor {
    param: String,
    #[serde(default)]
    initial: String,
    next: String,
}

fn default_every() -> u64 {
    60
}

fn default_timeout() -> u64 {
    10_000
}

fn default_max_pages() -> u32 {
    100
}

/// Ranges of a polling source's numbers.
pub mod ranges {
    use std::ops::RangeInclusive;

    /// From a minute (the scheduler's finest rate) to a day.
    pub const EVERY_SECS: RangeInclusive<u64> = 60..=86_400;
    pub const TIMEOUT_MS: RangeInclusive<u64> = 1..=60_000;
    pub const MAX_PAGES: RangeInclusive<u32> = 1..=10_000;
    pub const PER_SECOND: RangeInclusive<u32> = 1..=1_000;
}

#[derive(Debug)]
pub struct PollSource {
    pub name: String,
    pub url: String,
    pub auth: Auth,
    /// How often it is read (the poller runs every minute and reads what is due).
    pub every: Duration,
    /// Extra query parameters on every page.
    pub params: BTreeMap<String, String>,
    /// The query parameter that carries the cursor, and the cursor of the first run.
    pub cursor_param: String,
    pub cursor_initial: String,
    pub next_cursor: JqProgram,
    pub more: Option<JqProgram>,
    pub records: JqProgram,
    pub id: JqProgram,
    pub version: JqProgram,
    pub event_type: String,
    pub rate_limit: Option<RateLimit>,
    pub timeout: Duration,
    /// At most this many pages per run; the next run goes on from the cursor.
    pub max_pages: u32,
    pub archive: bool,
}

impl PollSource {
    /// Its jq programs, for `Config::check_programs`.
    pub fn programs(&self) -> impl Iterator<Item = &JqProgram> {
        [&self.next_cursor, &self.records, &self.id, &self.version].into_iter().chain(&self.more)
    }

    /// The variable that overrides its `url` per stage.
    pub fn url_variable(&self) -> String {
        format!("SWITCHYARD_SOURCE_{}_URL", self.name.to_ascii_uppercase().replace('-', "_"))
    }

    /// The source as something to call: its URL, credentials and timeout, read with
    /// the dispatcher's own code (every auth kind, the refresh after a 401/403).
    pub fn endpoint(&self) -> Destination {
        Destination {
            name: format!("source {}", self.name),
            base_url: self.url.clone(),
            auth: self.auth.clone(),
            timeout: self.timeout,
            retry: RetryPolicy::default(),
            signing: None,
            rate_limit: None,
            max_in_flight: None,
            breaker: None,
        }
    }

    /// The least time between two page requests its rate limit allows.
    pub fn page_interval(&self) -> Duration {
        self.rate_limit.as_ref().map_or(Duration::ZERO, |r| Duration::from_secs(1) / r.per_second.max(1))
    }
}

/// Whether a `[sources.NAME]` table declares a polling source.
pub(super) fn is_poll(table: &toml::Value) -> bool {
    table.get("kind").and_then(|k| k.as_str()) == Some("poll")
}

pub(super) fn build(name: &str, raw: RawPoll) -> Result<PollSource, ConfigError> {
    let at = format!("source {name}");
    if !(raw.url.starts_with("https://") || raw.url.starts_with("http://")) {
        return Err(invalid(format!("{at}: url must be an http(s) URL")));
    }
    in_range(&at, "every_secs", raw.every_secs, ranges::EVERY_SECS)?;
    in_range(&at, "timeout_ms", raw.timeout_ms, ranges::TIMEOUT_MS)?;
    in_range(&at, "max_pages", raw.max_pages, ranges::MAX_PAGES)?;
    if let Some(r) = &raw.rate_limit {
        in_range(&at, "rate_limit.per_second", r.per_second, ranges::PER_SECOND)?;
    }
    raw.auth.validate().map_err(|e| invalid(format!("{at}: {e}")))?;
    if matches!(raw.auth, Auth::WebhookUrl { .. }) {
        return Err(invalid(format!(
            "{at}: a polling source authenticates with none, api_key, bearer, basic or oauth2_client_credentials"
        )));
    }
    if raw.cursor.param.is_empty() || raw.event_type.is_empty() {
        return Err(invalid(format!("{at}: cursor.param and event_type must not be empty")));
    }
    let jq = |what: &str, text: &str| JqProgram::deferred(&format!("{at} {what}"), text);
    Ok(PollSource {
        name: name.to_owned(),
        url: raw.url.trim_end_matches('/').to_owned(),
        auth: raw.auth,
        every: Duration::from_secs(raw.every_secs),
        params: raw.params,
        cursor_param: raw.cursor.param,
        cursor_initial: raw.cursor.initial,
        next_cursor: jq("cursor.next", &raw.cursor.next),
        more: raw.more.as_deref().map(|m| jq("more", m)),
        records: jq("records", &raw.records),
        id: jq("id", &raw.id),
        version: jq("version", &raw.version),
        event_type: raw.event_type,
        rate_limit: raw.rate_limit,
        timeout: Duration::from_millis(raw.timeout_ms),
        max_pages: raw.max_pages,
        archive: raw.archive,
    })
}
