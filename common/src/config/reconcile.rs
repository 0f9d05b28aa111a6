//! How a flow reads back what it wrote, for the reconciler:
//!
//! ```toml
//! reconcile = { path = "/api/contacts/{id}", id = ".email", compare = "{email, name, status}" }
//! #             method = "GET", window_secs = 86400,
//! #             list = { path = "/api/contacts", records = ".contacts", id = ".email" }
//! ```
//!
//! `id` (jq on the request body the flow sent) fills `{id}` in `path`; `compare` (jq)
//! projects both the sent body and the destination's answer, and the projections are
//! compared field by field. With `list`, the destination's own listing names what it
//! holds that no delivery of the window explains.

use serde::Deserialize;

use super::{in_range, invalid, ConfigError};
use crate::mapping::JqProgram;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReconcile {
    #[serde(default = "default_method")]
    method: String,
    path: String,
    id: String,
    compare: String,
    #[serde(default = "default_window")]
    window_secs: u64,
    list: Option<RawList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    path: String,
    records: String,
    id: String,
}

fn default_method() -> String {
    "GET".to_owned()
}

fn default_window() -> u64 {
    86_400
}

/// Up to the archive's longest sensible retention (the read-back re-maps archived
/// envelopes, so the window cannot reach further back than the archive does).
pub const WINDOW_SECS: std::ops::RangeInclusive<u64> = 60..=90 * 86_400;

#[derive(Debug)]
pub struct Reconcile {
    pub method: http::Method,
    /// With `{id}` where the id goes (URL-encoded).
    pub path: String,
    pub id: JqProgram,
    pub compare: JqProgram,
    pub window_secs: u64,
    pub list: Option<ReconcileList>,
}

#[derive(Debug)]
pub struct ReconcileList {
    pub path: String,
    pub records: JqProgram,
    pub id: JqProgram,
}

impl Reconcile {
    /// Its jq programs, for `Config::check_programs`.
    pub fn programs(&self) -> impl Iterator<Item = &JqProgram> {
        let list = self.list.iter().flat_map(|l| [&l.records, &l.id]);
        [&self.id, &self.compare].into_iter().chain(list)
    }

    /// The read-back path of one delivery.
    pub fn path_for(&self, id: &str) -> String {
        let encoded: String = id
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.path.replace("{id}", &encoded)
    }
}

pub(super) fn build(flow: &str, raw: RawReconcile) -> Result<Reconcile, ConfigError> {
    let at = format!("flow {flow}: reconcile");
    let method = http::Method::from_bytes(raw.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("{at}.method {:?} is not a method", raw.method)))?;
    for (what, path) in [("path", Some(&raw.path)), ("list.path", raw.list.as_ref().map(|l| &l.path))] {
        if path.is_some_and(|p| !p.starts_with('/')) {
            return Err(invalid(format!("{at}.{what} must start with /")));
        }
    }
    if !raw.path.contains("{id}") {
        return Err(invalid(format!("{at}.path must say where the id goes: {{id}}")));
    }
    in_range(&at, "window_secs", raw.window_secs, WINDOW_SECS)?;
    let jq = |what: &str, text: &str| JqProgram::deferred(&format!("{at}.{what}"), text);
    Ok(Reconcile {
        method,
        path: raw.path,
        id: jq("id", &raw.id),
        compare: jq("compare", &raw.compare),
        window_secs: raw.window_secs,
        list: match raw.list {
            Some(l) => {
                Some(ReconcileList { path: l.path, records: jq("list.records", &l.records), id: jq("list.id", &l.id) })
            }
            None => None,
        },
    })
}
