//! Log redaction: every line the logger writes is scanned and masked before it
//! leaves the process, so logs never carry secrets, signatures or personal data.
//!
//! A line is masked where it holds
//! - a value registered as secret at runtime ([`register_secret`], called by whoever
//!   reads a secret), in its raw and its JSON-escaped forms;
//! - something that looks like an email address, a phone number (international
//!   `+…`, or grouped with spaces, hyphens or parentheses — a bare run of digits is
//!   left alone, it is far more often an id or a timestamp), or a card number (13–19
//!   digits starting 2–6, optionally grouped, Luhn-valid);
//! - the value of a field named sensitive ([`register_sensitive_field`]), at any
//!   depth, also inside JSON that was logged as a string.
//!
//! Masking works on the text of the line and keeps it valid JSON: a replacement is
//! `[redacted:kind]`, quoted when it replaces a bare JSON number, and nothing is
//! masked across a string boundary or through the middle of an escape sequence.
//! UUIDs, ISO 8601 timestamps, hex keys and epoch timestamps do not match: a number
//! glued to letters, `.`, `:` or `-` is part of something else. Lines are only
//! re-serialized (with keys in sorted order) when a sensitive field was masked.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{PoisonError, RwLock};

use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

/// Shorter values are not registered: masking every "abc" in every line would hide
/// more than it protects, and a secret that short is no secret.
pub const MIN_SECRET_LEN: usize = 6;
/// The registry keeps the newest secrets (tokens are registered as they are issued).
const MAX_SECRETS: usize = 1024;

static REGISTRY: RwLock<Redactor> = RwLock::new(Redactor::new());

/// Masks `value` in every log line from now on.
/// Cheap when `value` is already known (the usual case: a cached secret is
/// registered on every use).
pub fn register_secret(value: &str) {
    if REGISTRY.read().unwrap_or_else(PoisonError::into_inner).knows_secret(value) {
        return;
    }
    REGISTRY.write().unwrap_or_else(PoisonError::into_inner).add_secret(value);
}

/// Masks the value of every field called `name` (case-insensitive) from now on.
pub fn register_sensitive_field(name: &str) {
    REGISTRY.write().unwrap_or_else(PoisonError::into_inner).add_field(name);
}

/// `line` with everything registered or recognised masked.
pub fn redact(line: &str) -> Cow<'_, str> {
    REGISTRY.read().unwrap_or_else(PoisonError::into_inner).redact(line)
}

/// Fields whose values are credentials wherever they appear (header names included,
/// for a logged header map).
const CREDENTIAL_FIELDS: [&str; 17] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api_key",
    "password",
    "client_secret",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "secret",
    "webhook-signature",
    "stripe-signature",
    "x-hub-signature-256",
    "x-shopify-hmac-sha256",
];

/// A secret and the forms it takes in a JSON line: escaped once as a JSON string
/// value, twice when that JSON was itself logged as a string (or `Debug`-quoted).
struct Secret {
    forms: Vec<String>,
}

/// The masking rules; the process-wide instance is behind [`redact`].
#[derive(Default)]
pub struct Redactor {
    secrets: VecDeque<Secret>,
    /// Lower-case.
    fields: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("secrets", &self.secrets.len()).field("fields", &self.fields).finish()
    }
}

fn json_escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_owned()
}

impl Redactor {
    pub const fn new() -> Self {
        Self { secrets: VecDeque::new(), fields: Vec::new() }
    }

    pub fn with_secret(mut self, value: &str) -> Self {
        self.add_secret(value);
        self
    }

    pub fn with_field(mut self, name: &str) -> Self {
        self.add_field(name);
        self
    }

    fn knows_secret(&self, value: &str) -> bool {
        value.chars().count() < MIN_SECRET_LEN || self.secrets.iter().any(|s| s.forms[0] == value)
    }

    pub fn add_secret(&mut self, value: &str) {
        if self.knows_secret(value) {
            return;
        }
        let once = json_escaped(value);
        let twice = json_escaped(&once);
        let mut forms = vec![value.to_owned()];
        for form in [once, twice] {
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
        if self.secrets.len() == MAX_SECRETS {
            self.secrets.pop_front();
        }
        self.secrets.push_back(Secret { forms });
    }

    pub fn add_field(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        if !name.is_empty() && !self.fields.contains(&name) {
            self.fields.push(name);
        }
    }

    /// `line` (one log line, usually a JSON object and a newline) with everything
    /// registered or recognised masked; borrowed when there was nothing to mask.
    pub fn redact<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let forms = self.secrets.iter().flat_map(|s| s.forms.iter().map(String::as_str));
        let masked = scan::mask_text(line, forms);
        match mask_fields(&masked, &self.fields) {
            Some(fields_masked) => Cow::Owned(fields_masked),
            None => masked,
        }
    }
}

/// The line re-serialized with sensitive fields masked, or `None` when it has none
/// (or is not JSON). `fields` are lower-case, in addition to [`CREDENTIAL_FIELDS`].
fn mask_fields(line: &str, fields: &[String]) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    let mut names = CREDENTIAL_FIELDS.iter().copied().chain(fields.iter().map(String::as_str));
    if !names.any(|f| lower.contains(f)) {
        return None;
    }
    let sensitive = |key: &str| {
        let key = key.to_ascii_lowercase();
        CREDENTIAL_FIELDS.contains(&key.as_str()) || fields.contains(&key)
    };
    let body = line.trim_end();
    let tail = &line[body.len()..];
    let mut value: Value = serde_json::from_str(body).ok()?;
    let changed = match &mut value {
        Value::Object(top) => top.iter_mut().fold(false, |changed, (key, v)| {
            let own = match key.as_str() {
                // The logger's own structure is never a payload field: a flow's
                // `name` must not mask the span's name.
                k if LOGGER_FIELDS.contains(&k) => false,
                "span" => mask_span(v, &sensitive),
                "spans" => v.as_array_mut().is_some_and(|spans| {
                    spans.iter_mut().fold(false, |changed, span| mask_span(span, &sensitive) | changed)
                }),
                k if sensitive(k) => mask_field(v),
                _ => mask_value(v, &sensitive, 1),
            };
            own | changed
        }),
        other => mask_value(other, &sensitive, 0),
    };
    changed.then(|| format!("{value}{tail}"))
}

/// Top-level keys the JSON formatter writes itself.
const LOGGER_FIELDS: [&str; 8] =
    ["timestamp", "level", "target", "message", "filename", "line_number", "threadName", "threadId"];

/// A span object: its `name` is the span's, every other field is masked as usual.
fn mask_span(span: &mut Value, sensitive: &dyn Fn(&str) -> bool) -> bool {
    let Some(fields) = span.as_object_mut() else { return false };
    fields.iter_mut().filter(|(k, _)| k.as_str() != "name").fold(false, |changed, (k, v)| {
        let own = if sensitive(k) { mask_field(v) } else { mask_value(v, sensitive, 2) };
        own | changed
    })
}

fn mask_field(v: &mut Value) -> bool {
    if v.is_null() || v.as_str() == Some(FIELD_MASK) {
        return false;
    }
    *v = Value::String(FIELD_MASK.to_owned());
    true
}

/// Masks sensitive fields in `value`, looking into strings that hold JSON too;
/// returns whether anything changed.
fn mask_value(value: &mut Value, sensitive: &dyn Fn(&str) -> bool, depth: usize) -> bool {
    if depth > 16 {
        return false;
    }
    match value {
        Value::Object(map) => {
            let mut changed = false;
            for (key, v) in map.iter_mut() {
                if sensitive(key) {
                    changed |= mask_field(v);
                } else {
                    changed |= mask_value(v, sensitive, depth + 1);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| mask_value(v, sensitive, depth + 1) | changed),
        Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
            let Ok(mut inner) = serde_json::from_str::<Value>(s) else { return false };
            let changed = mask_value(&mut inner, sensitive, depth + 1);
            if changed {
                *s = inner.to_string();
            }
            changed
        }
        _ => false,
    }
}

const FIELD_MASK: &str = "[redacted:field]";

/// A [`MakeWriter`] whose writers mask each line (see [`redact`]) before passing
/// it on to the wrapped one.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer_for(meta))
    }
}

/// Holds what is written until a line is complete (or the writer is dropped), then
/// writes it masked. The formatter writes one event per writer, but this does not
/// rely on it writing the line in one piece.
pub struct RedactingWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, pending: Vec::new() }
    }

    fn emit(&mut self, upto: usize) -> io::Result<()> {
        let chunk: Vec<u8> = self.pending.drain(..upto).collect();
        let text = String::from_utf8_lossy(&chunk);
        self.inner.write_all(redact(&text).as_bytes())
    }

    fn emit_complete_lines(&mut self) -> io::Result<()> {
        match self.pending.iter().rposition(|&c| c == b'\n') {
            Some(last) => self.emit(last + 1),
            None => Ok(()),
        }
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if buf.contains(&b'\n') {
            self.emit_complete_lines()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit_complete_lines()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let _ = self.emit(self.pending.len());
        }
        let _ = self.inner.flush();
    }
}

mod scan;
#[cfg(test)]
mod tests;
