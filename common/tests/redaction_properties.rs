//! Properties of log redaction over generated lines: a registered secret or an
//! e-mail address, put anywhere in a line with anything around it, is gone from
//! the line the redactor lets out, whether the line is the logger's JSON (the
//! value in a field, or in JSON logged as a string) or plain text.

use proptest::prelude::*;
use serde_json::json;
use switchyard_common::redact::Redactor;

/// Anything printable around the seeded value, quotes, backslashes and non-ASCII
/// included.
const SURROUNDINGS: &str = r#"[ -~]{0,24}|\PC{0,24}"#;

/// The lines a value ends up in when logged between `before` and `after`.
fn lines_with(before: &str, value: &str, after: &str) -> Vec<String> {
    let message = format!("{before}{value}{after}");
    let inner = json!({"payload": {"note": message.clone()}}).to_string();
    vec![
        json!({"level": "INFO", "fields": {"message": message.clone()}, "target": "dispatcher"}).to_string(),
        json!({"level": "WARN", "fields": {"message": "mapped", "body": inner}, "spans": [{"name": "record"}]})
            .to_string(),
        format!("plain {message} text"),
    ]
}

fn secrets() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_+/=.-]{6,48}", "(sk_live_|whsec_|xoxb-)[A-Za-z0-9]{8,32}", r#"[ -~]{6,32}"#, r#"\PC{6,16}"#,]
}

fn emails() -> impl Strategy<Value = String> {
    let label = "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?";
    ("[A-Za-z0-9]([A-Za-z0-9._%+-]{0,14}[A-Za-z0-9])?", proptest::collection::vec(label, 1..3), "[a-z]{2,6}")
        .prop_map(|(local, labels, tld)| format!("{local}@{}.{tld}", labels.join(".")))
}

/// Characters that end an address in text: none of them can be part of one.
fn delimiters() -> impl Strategy<Value = char> {
    prop::sample::select(vec![' ', ',', ';', '<', '>', '(', ')', '"', '\'', '!', '?', '\n', '\t'])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_registered_secret_never_survives_redaction_wherever_it_sits_in_a_line(
        secret in secrets(),
        before in SURROUNDINGS,
        after in SURROUNDINGS,
    ) {
        let redactor = Redactor::new().with_secret(&secret);
        let escaped = serde_json::to_string(&secret).unwrap();
        let escaped = &escaped[1..escaped.len() - 1];
        for (line, without) in lines_with(&before, &secret, &after).iter().zip(lines_with(&before, "", &after)) {
            let masked = redactor.redact(line);
            for form in [secret.as_str(), escaped] {
                // Surroundings that hold the secret themselves prove nothing.
                if !without.contains(form) {
                    prop_assert!(!masked.contains(form), "{:?} left in {:?}", form, masked);
                }
            }
        }
    }

    #[test]
    fn an_email_address_never_survives_redaction_wherever_it_sits_in_a_line(
        email in emails(),
        before in SURROUNDINGS,
        open in delimiters(),
        close in delimiters(),
        after in SURROUNDINGS,
    ) {
        let redactor = Redactor::new();
        let (before, after) = (format!("{before}{open}"), format!("{close}{after}"));
        for line in lines_with(&before, &email, &after) {
            let masked = redactor.redact(&line);
            prop_assert!(!masked.contains(&email), "{:?} left in {:?}", email, masked);
            prop_assert!(masked.contains("[redacted:email]"), "{:?}", masked);
        }
    }

    #[test]
    fn redacting_a_json_line_leaves_valid_json(
        secret in secrets(),
        email in emails(),
        before in SURROUNDINGS,
        after in SURROUNDINGS,
    ) {
        let redactor = Redactor::new().with_secret(&secret);
        let value = format!("{secret} {email}");
        for line in lines_with(&before, &value, &after).into_iter().take(2) {
            let masked = redactor.redact(&line);
            prop_assert!(serde_json::from_str::<serde_json::Value>(&masked).is_ok(), "{:?}", masked);
        }
    }
}
