//! The log line: one flat JSON object per event, carrying the fields of every
//! enclosing span.
//!
//! tracing-subscriber's own JSON format writes either the innermost span's fields
//! (`with_current_span`) or each span as a separate object (`with_span_list`). Neither
//! lets an operator search for `event_id` and find every line about that event: the
//! mapper's park line runs in a `flow` span nested in the `envelope` span, so with the
//! innermost span only, it carried the flow but not the event. [`FlatJson`] merges the
//! fields of all enclosing spans, root to leaf, into the line itself; an inner span's
//! field overrides an outer one of the same name, and the event's own fields override
//! both. So a line carries the correlation id, event id, source, flow and destination
//! wherever they are known, whatever the nesting.
//!
//! A line reads `{"timestamp":…,"level":…,<span fields>,<event fields>,"message":…,
//! "span":{"name":<innermost span>}}`. Field names that would clash with those four
//! keys are written with a `field.` prefix, so a line never holds a key twice.

use std::fmt;

use serde_json::{Number, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::redact::RedactingMakeWriter;

/// Keys the formatter writes itself.
const OWN_KEYS: [&str; 4] = ["timestamp", "level", "message", "span"];

/// The event formatter (see the module doc). Span fields must be recorded with
/// [`JsonFields`], which keeps each span's fields as a JSON object.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                let Some(recorded) = extensions.get::<FormattedFields<JsonFields>>() else { continue };
                // JsonFields writes a JSON object; an empty string means no fields yet.
                if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(recorded) {
                    for (key, value) in map.into_iter().filter(|(k, v)| !unsampled_trace(k, v)) {
                        fields.put(key, value);
                    }
                }
            }
        }
        let mut visitor = EventVisitor { fields: &mut fields, message: None };
        event.record(&mut visitor);
        let message = visitor.message.take();

        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        // serde_json's map is ordered by key unless told otherwise; write the object
        // by hand to keep the documented order.
        let mut out = String::with_capacity(256);
        out.push('{');
        push_entry(&mut out, "timestamp", &Value::String(timestamp));
        push_entry(&mut out, "level", &Value::String(event.metadata().level().as_str().to_owned()));
        for (key, value) in &fields.entries {
            push_entry(&mut out, key, value);
        }
        if let Some(message) = message {
            push_entry(&mut out, "message", &Value::String(message));
        }
        if let Some(name) = innermost {
            push_entry(&mut out, "span", &serde_json::json!({ "name": name }));
        }
        out.push('}');
        writeln!(writer, "{out}")
    }
}

/// The runtime's `xrayTraceId` of a request X-Ray does not sample (`Sampled=0`, every
/// request while tracing is off, the default): nothing in X-Ray carries that id, and
/// it was a fifth of a delivery line. A sampled trace id stays on the line.
fn unsampled_trace(key: &str, value: &Value) -> bool {
    key == "xrayTraceId" && value.as_str().is_some_and(|id| id.ends_with("Sampled=0"))
}

fn push_entry(out: &mut String, key: &str, value: &Value) {
    if !out.ends_with('{') {
        out.push(',');
    }
    // A string and a Value always serialize.
    out.push_str(&serde_json::to_string(key).unwrap_or_default());
    out.push(':');
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

/// A line's fields in first-seen order, each name once (the last value set wins).
#[derive(Debug, Default)]
struct Fields {
    entries: Vec<(String, Value)>,
}

impl Fields {
    fn put(&mut self, key: String, value: Value) {
        let key = if OWN_KEYS.contains(&key.as_str()) { format!("field.{key}") } else { key };
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }
}

struct EventVisitor<'a> {
    fields: &'a mut Fields,
    message: Option<String>,
}

impl EventVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::String(s)) => self.message = Some(s),
            (name, value) => self.fields.put(name.trim_start_matches("r#").to_owned(), value),
        }
    }
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities are not JSON numbers.
        let value = Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` arrives here too, as a Debug wrapper that prints Display.
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// The process's subscriber: [`FlatJson`] lines, filtered by `RUST_LOG` (default
/// `info`), each masked by the redacting writer on its way to `writer`.
pub fn subscriber<W>(writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_env_filter(filter)
        .with_writer(RedactingMakeWriter::new(writer))
        .finish()
}

/// Lines logged under the production subscriber, kept in memory (for tests).
pub mod capture {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        /// The production subscriber, writing into this buffer.
        pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
            let writer = self.clone();
            super::subscriber(move || writer.clone())
        }

        /// Everything logged so far.
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).expect("UTF-8 lines")
        }

        pub fn lines(&self) -> Vec<String> {
            self.text().lines().map(str::to_owned).collect()
        }

        /// Makes this buffer the process's log sink (the production format and
        /// redaction), as `runtime::init_logging` does for stdout.
        pub fn install(&self) {
            let writer = self.clone();
            crate::runtime::init_logging_to(move || writer.clone());
        }
    }
}

#[cfg(test)]
mod tests;
