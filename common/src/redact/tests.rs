use serde_json::json;

use super::scan::luhn;
use super::*;

fn line(fields: Value) -> String {
    format!("{fields}\n")
}

/// Masks with `r` and checks the result is still one JSON object and a newline.
fn masked(r: &Redactor, text: &str) -> String {
    let out = r.redact(text).into_owned();
    assert!(out.ends_with('\n'), "{out}");
    serde_json::from_str::<Value>(out.trim_end()).unwrap_or_else(|e| panic!("{e}: not JSON any more: {out}"));
    out
}

fn field(out: &str, name: &str) -> Value {
    serde_json::from_str::<Value>(out.trim_end()).unwrap()[name].clone()
}

#[test]
fn emails_are_masked_wherever_they_stand_in_a_string() {
    let r = Redactor::new();
    let text = line(json!({
        "message": "sent to Jane.Doe+crm@mail.example.co.uk, cc ops@example.com.",
        "body": "{\"email\":\"jane@example.com\"}\nnext: x@y.io",
    }));
    let out = masked(&r, &text);
    for value in ["Jane.Doe+crm@mail.example.co.uk", "ops@example.com", "jane@example.com", "x@y.io"] {
        assert!(!out.contains(value), "{value} in {out}");
    }
    assert_eq!(field(&out, "message"), "sent to [redacted:email], cc [redacted:email].");
    assert_eq!(field(&out, "body"), "{\"email\":\"[redacted:email]\"}\nnext: [redacted:email]");
}

#[test]
fn things_with_an_at_sign_that_are_not_emails_are_left_alone() {
    let r = Redactor::new();
    for text in ["user@localhost", "@handle", "a@b", "v1@2.0", "name@.com", "npm i pkg@1.2.3"] {
        let l = line(json!({ "message": text }));
        assert_eq!(r.redact(&l), l, "{text}");
    }
}

#[test]
fn phone_numbers_in_international_or_grouped_form_are_masked() {
    let r = Redactor::new();
    for phone in
        ["+14155550123", "+1 415 555 0123", "+44 20 7946 0958", "(415) 555-0123", "415-555-0123", "06 12 34 56 78"]
    {
        let out = masked(&r, &line(json!({ "message": format!("call {phone} now"), "phone": phone })));
        assert_eq!(field(&out, "message"), "call [redacted:phone] now", "{phone}");
        assert_eq!(field(&out, "phone"), "[redacted:phone]", "{phone}");
    }
}

#[test]
fn card_numbers_are_masked_when_luhn_valid_also_as_bare_json_numbers() {
    let r = Redactor::new();
    for card in
        ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "3782 822463 10005"]
    {
        let out = masked(&r, &line(json!({ "message": format!("card {card}."), "pan": card })));
        assert_eq!(field(&out, "message"), "card [redacted:card].", "{card}");
        assert_eq!(field(&out, "pan"), "[redacted:card]", "{card}");
    }
    let out = masked(&r, "{\"pan\":4111111111111111,\"n\":[5500000000000004,1]}\n");
    assert_eq!(out, "{\"pan\":\"[redacted:card]\",\"n\":[\"[redacted:card]\",1]}\n");
    let not_luhn = line(json!({ "message": "order 4111111111111112" }));
    assert_eq!(r.redact(&not_luhn), not_luhn);
}

#[test]
fn uuids_timestamps_hex_keys_and_other_ids_are_not_mangled() {
    let r = Redactor::new();
    let mut values: Vec<String> = vec![
        "123e4567-e89b-12d3-a456-426614174000".into(),
        "12345678-1234-1234-1234-123456789012".into(),
        "2024-11-23T14:27:00.123Z".into(),
        "2024-11-23T14:27:00+01:00".into(),
        "2024-11-23 14:27:00".into(),
        "2024-11-23".into(),
        "1732370000000".into(),
        "1732370000".into(),
        "127.0.0.1:3000".into(),
        "HTTP 401 from crm after 3 attempts".into(),
        "evt_3MtwBwLkdIwHu7ix28a3tqPa".into(),
        "pi_4111111111111111".into(),
        "sha256 of the body".into(),
        "v1,short".into(),
        "1.2.3-4111111111111111".into(),
        "amount 123456789.50 EUR".into(),
        "3f786850e387550fdab836ed7e6dc881de23001b3f786850e387550fdab836ed".into(),
        "4111111111111111111111111".into(),
    ];
    for i in 0..200u32 {
        values.push(uuid::Uuid::new_v4().to_string());
        values.push(crate::envelope::sha256_hex(&i.to_be_bytes()));
        values.push(crate::runtime::rfc3339(1_600_000_000_000 + i64::from(i) * 7_919_000_003));
    }
    for v in values {
        let l = line(json!({ "timestamp": v, "message": format!("id {v}"), "n": 1732370000123u64 }));
        assert_eq!(r.redact(&l), l, "{v}");
    }
}

#[test]
fn registered_secrets_are_masked_raw_escaped_and_escaped_twice() {
    let r = Redactor::new().with_secret("sk_live_abc123").with_secret("pa\"ss\\word");
    let payload = json!({ "auth": "pa\"ss\\word" }).to_string();
    let text = line(json!({
        "message": "key sk_live_abc123 refused",
        "err": "Bearer sk_live_abc123xyz",
        "quoted": "pa\"ss\\word",
        "body": payload,
    }));
    let out = masked(&r, &text);
    assert!(!out.contains("sk_live_abc123") && !out.contains("ss\\\\word"), "{out}");
    assert_eq!(field(&out, "message"), "key [redacted:secret] refused");
    assert_eq!(field(&out, "err"), "Bearer [redacted:secret]xyz");
    assert_eq!(field(&out, "quoted"), "[redacted:secret]");
    assert_eq!(field(&out, "body"), "{\"auth\":\"[redacted:secret]\"}");
}

#[test]
fn short_secrets_are_not_registered_and_a_secret_is_not_cut_through_an_escape() {
    let r = Redactor::new().with_secret("abc").with_secret("nhello world");
    let text = line(json!({ "a": "abc", "b": "\nhello world" }));
    assert_eq!(r.redact(&text), text, "no 'n' of a \\n escape is taken for the secret's");
    assert_eq!(format!("{r:?}"), "Redactor { secrets: 1, fields: [] }");
}

#[test]
fn sensitive_fields_are_masked_at_any_depth_and_inside_logged_json() {
    let r = Redactor::new().with_field("customer_name").with_field("Address");
    let inner = json!({ "customer_name": "Jane Doe", "address": { "city": "Lyon" }, "id": 7 }).to_string();
    let text = line(
        json!({ "message": "mapped", "customer_name": "Jane Doe", "body": inner, "list": [{ "ADDRESS": "1 rue" }], "none": { "customer_name": null } }),
    );
    let out = masked(&r, &text);
    assert!(!out.contains("Jane") && !out.contains("Lyon") && !out.contains("1 rue"), "{out}");
    assert_eq!(field(&out, "customer_name"), "[redacted:field]");
    let body: Value = serde_json::from_str(field(&out, "body").as_str().unwrap()).unwrap();
    assert_eq!(body, json!({ "customer_name": "[redacted:field]", "address": "[redacted:field]", "id": 7 }));
    assert_eq!(field(&out, "list"), json!([{ "ADDRESS": "[redacted:field]" }]));
    assert_eq!(field(&out, "none"), json!({ "customer_name": null }));
    let untouched = line(json!({ "message": "customer_name is required" }));
    assert_eq!(r.redact(&untouched), untouched, "a line without the field keeps its exact text");
}

#[test]
fn the_loggers_own_fields_are_never_taken_for_sensitive_ones() {
    let r = Redactor::new().with_field("name").with_field("message").with_field("level");
    let text = line(json!({
        "timestamp": "2026-01-01T00:00:00Z", "level": "INFO", "message": "delivered",
        "span": { "name": "delivery", "flow": "f" }, "spans": [{ "name": "record" }],
    }));
    assert_eq!(r.redact(&text), text);
    let text =
        line(json!({ "message": "m", "span": { "name": "delivery", "level": "x" }, "body": "{\"name\":\"Jane\"}" }));
    let out = masked(&r, &text);
    assert_eq!(field(&out, "span"), json!({ "name": "delivery", "level": "[redacted:field]" }));
    assert_eq!(field(&out, "body"), "{\"name\":\"[redacted:field]\"}");
}

#[test]
fn signatures_and_jwts_are_masked_by_their_shape() {
    let r = Redactor::new();
    let standard =
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,bm90LWEtcmVhbC1zaWduYXR1cmUtYnV0LWxvbmctZW5vdWdo";
    let stripe = "t=1614265330,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";
    let github = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzd2l0Y2h5YXJkIn0.c2lnbmF0dXJlLWJ5dGVz";
    let text = line(json!({ "standard": standard, "stripe": stripe, "github": github, "m": format!("Bearer {jwt}") }));
    let out = masked(&r, &text);
    assert_eq!(field(&out, "standard"), "[redacted:signature] [redacted:signature]");
    assert_eq!(field(&out, "stripe"), "t=1614265330,[redacted:signature]");
    assert_eq!(field(&out, "github"), "[redacted:signature]");
    assert_eq!(field(&out, "m"), "Bearer [redacted:secret]");
}

#[test]
fn credential_fields_are_masked_without_being_registered() {
    let r = Redactor::new();
    let headers =
        json!({ "authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": "k-1", "content-type": "application/json" });
    let text = line(json!({ "message": "request", "headers": headers.to_string(), "client_secret": "pi_1_secret_2" }));
    let out = masked(&r, &text);
    let logged: Value = serde_json::from_str(field(&out, "headers").as_str().unwrap()).unwrap();
    let expected = json!({ "authorization": "[redacted:field]", "X-Api-Key": "[redacted:field]", "content-type": "application/json" });
    assert_eq!(logged, expected);
    assert_eq!(field(&out, "client_secret"), "[redacted:field]");
    let message = line(json!({ "message": "access token obtained", "secret_id": "switchyard/dev/destination/crm" }));
    assert_eq!(r.redact(&message), message, "words and other keys are not fields");
}

#[test]
fn text_that_is_not_json_is_masked_too() {
    let r = Redactor::new().with_secret("hunter2hunter2");
    assert_eq!(
        r.redact("login jane@example.com with \"hunter2hunter2\" from +33 6 12 34 56 78\n"),
        "login [redacted:email] with \"[redacted:secret]\" from [redacted:phone]\n"
    );
}

#[test]
fn a_secret_after_a_backslash_in_text_that_is_not_json_is_masked() {
    // Found by the redaction property test: the backslash was read as starting a
    // JSON escape, which took the secret's first character and left it unmasked.
    let r = Redactor::new().with_secret("+=++__");
    assert_eq!(r.redact("plain \\+=++__ text"), "plain \\[redacted:secret] text");
    assert_eq!(r.redact("C:\\jane@example.com"), "C:\\[redacted:email]");
}

#[test]
fn luhn_is_the_standard_check() {
    assert!(luhn("79927398713"));
    assert!(!luhn("79927398710"));
    assert!(luhn("4111111111111111"));
}

#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_writer_masks_whole_lines_even_when_written_in_pieces() {
    let capture = Capture::default();
    let make = RedactingMakeWriter::new({
        let c = capture.clone();
        move || c.clone()
    });
    {
        let mut w = make.make_writer();
        w.write_all(b"{\"message\":\"to jane@exa").unwrap();
        assert!(capture.0.lock().unwrap().is_empty(), "nothing leaves before the line is complete");
        w.write_all(b"mple.com\"}\n{\"m\":\"+14155550123\"}").unwrap();
    }
    let written = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert_eq!(written, "{\"message\":\"to [redacted:email]\"}\n{\"m\":\"[redacted:phone]\"}");
}

#[test]
fn the_process_wide_registry_masks_what_was_registered() {
    register_secret("registry-test-secret-4f1c");
    register_sensitive_field("registry_test_field");
    let out = redact("{\"a\":\"registry-test-secret-4f1c\",\"registry_test_field\":\"x\"}\n");
    assert_eq!(out, "{\"a\":\"[redacted:secret]\",\"registry_test_field\":\"[redacted:field]\"}\n");
}
