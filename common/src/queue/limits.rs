//! What SQS accepts, checked before anything is sent: a message SQS would refuse is
//! refused here with a typed reason, so no caller retries what can never succeed.
//!
//! - Characters: a message body and its attribute values may hold only `#x9 | #xA |
//!   #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF`. serde_json writes U+FFFE
//!   and U+FFFF raw; [`to_sqs_json`] escapes them as `\uXXXX` instead, which is the
//!   same JSON value, so the event stays byte-for-byte recoverable.
//! - Size: 256 KiB per message (body plus attribute names, types and values) and per
//!   `SendMessageBatch` request, at most ten entries per batch. AWS raised the
//!   message limit to 1 MiB in 2025 for queues configured so; 256 KiB holds for every
//!   queue, whatever its `MaximumMessageSize`.

use std::io;
use std::ops::Range;

use serde::Serialize;

use super::OutboundMessage;

/// The largest message SQS takes: body plus attributes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The largest `SendMessageBatch` request: the sum of its messages.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// The most entries in one `SendMessageBatch`.
pub const MAX_BATCH: usize = 10;

/// Why a message can never be sent, however often it is tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsendable {
    #[error("too_large: the message is {bytes} bytes, over SQS's limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the message {part} holds U+{code:04X}, a character SQS refuses")]
    Character { part: &'static str, code: u32 },
    #[error("the message cannot be written as JSON: {0}")]
    Json(String),
}

/// Whether SQS accepts `c` in a message body or attribute value.
pub fn is_sqs_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `value` as JSON that SQS accepts: like `serde_json::to_string`, with the characters
/// SQS refuses written as `\uXXXX` escapes (control characters serde_json escapes
/// already; U+FFFE and U+FFFF it does not).
pub fn to_sqs_json<T: Serialize + ?Sized>(value: &T) -> Result<String, Unsendable> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, SqsSafe);
    value.serialize(&mut serializer).map_err(|e| Unsendable::Json(e.to_string()))?;
    String::from_utf8(out).map_err(|e| Unsendable::Json(e.to_string()))
}

/// `text` with every character SQS refuses replaced by U+FFFD. For attribute values,
/// which are labels for people and filters (the body stays the exact record).
pub fn sqs_safe_text(text: &str) -> String {
    text.chars().map(|c| if is_sqs_char(c) { c } else { char::REPLACEMENT_CHARACTER }).collect()
}

/// serde_json's compact format, escaping in strings what SQS refuses.
struct SqsSafe;

impl serde_json::ser::Formatter for SqsSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| !is_sqs_char(c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            // Every refused character is in the Basic Multilingual Plane: one escape.
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

impl OutboundMessage {
    /// The size SQS counts: the body and each attribute's name, data type and value.
    pub fn size(&self) -> usize {
        let attributes: usize =
            self.attributes.iter().map(|(name, value)| name.len() + "String".len() + value.len()).sum();
        self.body.len() + attributes
    }

    /// Whether SQS would take this message: its size and its characters.
    pub fn check(&self) -> Result<(), Unsendable> {
        let bytes = self.size();
        if bytes > MAX_MESSAGE_BYTES {
            return Err(Unsendable::TooLarge { bytes, limit: MAX_MESSAGE_BYTES });
        }
        let refused = |part: &'static str, text: &str| {
            text.chars().find(|&c| !is_sqs_char(c)).map(|c| Unsendable::Character { part, code: c as u32 })
        };
        let found = refused("body", &self.body)
            .or_else(|| self.attributes.values().find_map(|v| refused("attribute", v)))
            .or_else(|| self.attributes.keys().find_map(|k| refused("attribute name", k)));
        found.map_or(Ok(()), Err)
    }
}

/// Splits `messages` into `SendMessageBatch` calls: at most [`MAX_BATCH`] entries and
/// [`MAX_BATCH_BYTES`] each, in order. Every message must have passed
/// [`OutboundMessage::check`], so each fits a batch of its own.
pub fn batches(messages: &[OutboundMessage]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        let size = m.size();
        if i > start && (i - start == MAX_BATCH || bytes + size > MAX_BATCH_BYTES) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(start..messages.len());
    }
    out
}

/// Checks every message before any is sent, so a refused one leaves nothing
/// half-sent; the error names the first refused message's position.
pub fn check_all(messages: &[OutboundMessage]) -> Result<(), super::QueueError> {
    for (index, m) in messages.iter().enumerate() {
        m.check().map_err(|problem| super::QueueError::Unsendable { index, problem })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn sqs_json_escapes_refused_characters_and_parses_back_to_the_same_value() {
        let value = json!({
            "nonchar": "a\u{FFFE}b\u{FFFF}c",
            "control": "\u{1}\u{0}\u{1F}",
            "\u{FFFE}key": ["\u{D7FF}", "\u{E000}", "\u{FFFD}", "\u{10000}", "\u{10FFFF}", "é", "\t\n\r"],
        });
        let text = to_sqs_json(&value).unwrap();
        assert!(text.chars().all(is_sqs_char), "{text:?}");
        assert!(text.contains(r"a\ufffeb\uffffc"), "{text}");
        assert!(text.contains("\u{10FFFF}") && text.contains("\u{E000}"), "allowed characters stay as they are");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
        assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn sqs_json_is_serde_json_when_nothing_needs_escaping() {
        let value = json!({"id": "evt_1", "n": [1, 2.5, -3], "s": "quote \" backslash \\ é 😀"});
        assert_eq!(to_sqs_json(&value).unwrap(), serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn the_character_ranges_are_those_sqs_documents() {
        for c in ['\u{9}', '\u{A}', '\u{D}', ' ', '\u{D7FF}', '\u{E000}', '\u{FFFD}', '\u{10000}', '\u{10FFFF}'] {
            assert!(is_sqs_char(c), "{:X}", c as u32);
        }
        for c in ['\u{0}', '\u{1}', '\u{8}', '\u{B}', '\u{1F}', '\u{FFFE}', '\u{FFFF}'] {
            assert!(!is_sqs_char(c), "{:X}", c as u32);
        }
        assert_eq!(sqs_safe_text("a\u{1}b\u{FFFE}"), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn a_message_with_a_refused_character_or_over_the_size_is_unsendable() {
        assert_eq!(OutboundMessage::new("ok").check(), Ok(()));
        assert_eq!(
            OutboundMessage::new("a\u{FFFE}").check(),
            Err(Unsendable::Character { part: "body", code: 0xFFFE })
        );
        let at_limit = OutboundMessage::new("x".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(at_limit.check(), Ok(()));
        // Attributes count: name + "String" + value.
        let over = at_limit.attribute("k", "v");
        assert_eq!(over.size(), MAX_MESSAGE_BYTES + 1 + 6 + 1);
        assert!(matches!(over.check(), Err(Unsendable::TooLarge { .. })));
        assert!(over.check().unwrap_err().to_string().starts_with("too_large: "));
    }

    #[test]
    fn batches_hold_at_most_ten_messages_and_256_kib() {
        let small = vec![OutboundMessage::new("x"); 23];
        assert_eq!(batches(&small), vec![0..10, 10..20, 20..23]);
        assert!(batches(&[]).is_empty());

        let big = |kib: usize| OutboundMessage::new("y".repeat(kib * 1024));
        let mixed = vec![big(100), big(100), big(100), big(250), big(1), big(6), big(256)];
        let split = batches(&mixed);
        assert_eq!(split, vec![0..2, 2..3, 3..5, 5..6, 6..7]);
        for range in &split {
            let bytes: usize = mixed[range.clone()].iter().map(OutboundMessage::size).sum();
            assert!(bytes <= MAX_BATCH_BYTES && range.len() <= MAX_BATCH, "{range:?}: {bytes}");
        }
    }
}
