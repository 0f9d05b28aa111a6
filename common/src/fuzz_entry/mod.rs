//! What each fuzz target does with its bytes, in one place: the cargo-fuzz targets
//! in `fuzz/` call these functions, and `common/tests/fuzz_corpus.rs` replays the
//! committed corpus and every crash found through the very same functions in an
//! ordinary `cargo test`.
//!
//! Each entry point accepts any bytes, never fails on bad input (bad input is the
//! point) and panics only when an invariant of the code under test breaks; a panic
//! is what the fuzzer reports as a crash. The byte layout of each target's input is
//! documented on its function so that seeds can be written by hand (see
//! `fuzz/seed_corpus.py`).

mod signature;

pub use self::signature::{github_signature, hmac_signature, shopify_signature, standard_signature, stripe_signature};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{Config, ConfigError};
use crate::envelope::{Delivery, Envelope};
use crate::redact::{Redactor, MIN_SECRET_LEN};

/// A target's entry point: takes any bytes, panics only when an invariant breaks.
pub type Entry = fn(&[u8]);

/// Every target of this crate by name (the name of its directory under
/// `fuzz/corpus/` and `fuzz/artifacts/`, and of its `fuzz/fuzz_targets/*.rs`).
pub const TARGETS: [(&str, Entry); 9] = [
    ("signature_stripe", stripe_signature),
    ("signature_github", github_signature),
    ("signature_shopify", shopify_signature),
    ("signature_standard", standard_signature),
    ("signature_hmac", hmac_signature),
    ("envelope", envelope),
    ("delivery", delivery),
    ("flow_file", flow_file),
    ("redact", redact),
];

/// `data` as UTF-8 text; the message parsers take `&str` (SQS bodies are text).
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// An ingest-queue message body: [`Envelope::from_json`] must refuse or accept it
/// without panicking, and what it accepts must survive being written and read again.
pub fn envelope(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(envelope) = Envelope::from_json(text) else { return };
    let rendered = serde_json::to_string(&envelope).expect("an envelope always serializes");
    let back = Envelope::from_json(&rendered).expect("a rendered envelope parses again");
    assert!(same_json(&back.data, &envelope.data), "envelope data changed in a round trip");
    let strip = |e: Envelope| Envelope { data: Value::Null, ..e };
    assert_eq!(strip(back), strip(envelope), "envelope attributes changed in a round trip");
}

/// A dispatch-queue message body, like [`envelope`] for [`Delivery::from_json`].
pub fn delivery(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(delivery) = Delivery::from_json(text) else { return };
    let rendered = serde_json::to_string(&delivery).expect("a delivery always serializes");
    let back = Delivery::from_json(&rendered).expect("a rendered delivery parses again");
    assert!(same_json(&back.body, &delivery.body), "delivery body changed in a round trip");
    let strip = |d: Delivery| Delivery { body: Value::Null, ..d };
    assert_eq!(strip(back), strip(delivery), "delivery attributes changed in a round trip");
}

/// Equal JSON, except that floats only need to print the same: serde_json parses
/// some decimal floats one ulp off (without its `float_roundtrip` feature), so a
/// float may legitimately move by one ulp between a parse and a re-parse.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The mapping the flow-file target reads when its input names none.
const DEFAULT_MAPPING: &str = "{email: .data.object.receipt_email}";
/// The contract the flow-file target reads when its input names none.
const DEFAULT_CONTRACT: &str = r#"{"type": "object", "required": ["email"]}"#;

/// A flow file: `TOML [NUL mapping [NUL contract]]`. [`Config::parse`] reads the
/// mapping for every `mapping = …` path and the contract for every `contract = …`
/// path (a small fixed one of each when the input has none), so the fuzzer varies
/// the TOML, the jq program and the JSON schema. Whatever parses must hang together.
pub fn flow_file(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let mut parts = text.splitn(3, '\0');
    let toml = parts.next().unwrap_or_default();
    let mapping = parts.next().unwrap_or(DEFAULT_MAPPING);
    let contract = parts.next().unwrap_or(DEFAULT_CONTRACT);
    let read = |path: &str| -> Result<String, ConfigError> {
        Ok(if path.ends_with(".json") { contract } else { mapping }.to_owned())
    };
    let Ok(config) = Config::parse("fuzz.toml", toml, read) else { return };
    for flow in &config.flows {
        assert!(config.sources.contains_key(&flow.source), "flow {} has an unknown source", flow.name);
        assert!(config.destinations.contains_key(&flow.destination), "flow {} has an unknown destination", flow.name);
        assert!(flow.path.starts_with('/'), "flow {} has a relative path", flow.name);
    }
    for destination in config.destinations.values() {
        assert!(destination.base_url.starts_with("http"), "destination {} is not http(s)", destination.name);
    }
}

/// A secret and a log line: `secret NEWLINE line`. The line itself is masked (it
/// must stay valid JSON when it was), and so is a line the logger would write with
/// the secret between the two halves of `line` in a field: the secret must be gone
/// from it, raw and JSON-escaped, whatever surrounds it.
pub fn redact(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (secret, line) = text.split_once('\n').unwrap_or((&text, ""));
    let redactor = Redactor::new().with_secret(secret);

    let masked = redactor.redact(line);
    if serde_json::from_str::<Value>(line).is_ok() {
        let still_json = serde_json::from_str::<Value>(&masked);
        assert!(still_json.is_ok(), "masking broke a JSON line: {line:?} became {masked:?}");
    }

    if secret.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let cut = line.char_indices().nth(line.chars().count() / 2).map_or(line.len(), |(i, _)| i);
    let (before, after) = line.split_at(cut);
    let logged = |middle: &str| {
        let message = format!("{before}{middle}{after}");
        serde_json::json!({"level": "INFO", "fields": {"message": message}, "target": "fuzz"}).to_string()
    };
    let line = logged(secret);
    let masked = redactor.redact(&line);
    let escaped = serde_json::to_string(secret).expect("a string serializes");
    let escaped = &escaped[1..escaped.len() - 1];
    let without = logged("");
    for form in [secret, escaped] {
        // A form the line carries without the secret is not a leak; neither is one
        // that only appears across a mask's label (`]` + what follows it).
        let leaked = !without.contains(form) && unmasked_pieces(&masked).any(|piece| piece.contains(form));
        assert!(!leaked, "secret left in a logged line: {line:?} became {masked:?}");
    }
}

/// What masking writes (see `auth::redact`): a piece of output between two of these
/// is original text.
const LABELS: [&str; 6] = [
    "[redacted:secret]",
    "[redacted:email]",
    "[redacted:phone]",
    "[redacted:card]",
    "[redacted:signature]",
    "[redacted:field]",
];

/// The pieces of a masked line between the labels masking wrote.
fn unmasked_pieces(masked: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(masked);
    std::iter::from_fn(move || {
        let text = rest?;
        let next = LABELS.iter().filter_map(|label| text.find(label).map(|at| (at, label.len()))).min();
        match next {
            Some((at, len)) => {
                rest = Some(&text[at + len..]);
                Some(&text[..at])
            }
            None => rest.take(),
        }
    })
}

/// What replaying one target's committed inputs found.
#[derive(Debug)]
pub struct Replay {
    /// How many seeds `fuzz/corpus/<target>/` holds.
    pub seeds: usize,
    /// The inputs (seeds or crashes) that still panic.
    pub failed: Vec<String>,
}

/// Feeds every committed seed (`<fuzz_dir>/corpus/<target>/`) and crash
/// (`<fuzz_dir>/artifacts/<target>/`) to `run`, as the stable replay tests do.
pub fn replay_committed(fuzz_dir: &Path, target: &str, run: Entry) -> Replay {
    let seeds = files_in(&fuzz_dir.join("corpus").join(target));
    let crashes = files_in(&fuzz_dir.join("artifacts").join(target));
    let failed = seeds
        .iter()
        .chain(&crashes)
        .filter(|file| {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    Replay { seeds: seeds.len(), failed }
}

/// The files directly in `dir` (none when it does not exist), dotfiles left out,
/// in a stable order.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.retain(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')));
    files.sort();
    files
}
