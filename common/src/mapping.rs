//! jq mappings, evaluated in-process with jaq.
//!
//! A flow's mapping is compiled once at cold start (a broken mapping is a config
//! error, found before the first event) and then run for every event. Every
//! failure is a [`MappingError`] whose [`MappingError::reason`] is safe to store
//! in the ledger and on the DLQ message: it never carries payload values.

use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::{compile, data, Ctx, Vars};
use jaq_json::{Num, Val};
use serde_json::Value;
use std::fmt;

type Data = data::JustLut<Val>;

/// Deepest nesting accepted in a mapping's input or output. serde_json refuses to
/// parse more than 128 levels, so no real payload comes near this; the bound keeps
/// the recursive value conversions from exhausting the stack on hand-built values.
const MAX_DEPTH: usize = 256;

/// Outputs counted before giving up when a program yields too many: a program
/// like `repeat(.)` never stops, so the count is "at least".
const MAX_COUNTED_OUTPUTS: usize = 100;

/// Error messages end up in message attributes and ledger records; keep them short.
const MAX_MESSAGE_CHARS: usize = 300;

/// Native filters a mapping may not call. `env` would expose the Lambda's
/// environment (which holds the execution role's session credentials) to a payload
/// bound for a third party; `now` would make a mapping's output depend on when it
/// ran, so golden fixtures and DLQ replays would no longer reproduce a request.
const DENIED: [&str; 2] = ["env", "now"];

/// A compiled jq program. Cheap to run many times; `Send + Sync`.
pub struct JqProgram {
    name: String,
    filter: jaq_core::Filter<Data>,
}

impl fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JqProgram").field("name", &self.name).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("mapping {name} does not compile: {message}")]
    Compile { name: String, message: String },
    /// The program raised an error, e.g. `error("receipt_email is missing")`;
    /// `message` is the raised string, unquoted.
    #[error("mapping {name} raised: {message}")]
    Raised { name: String, message: String },
    /// jaq itself failed while running the program, e.g. `.a.b` on a string.
    #[error("mapping {name} failed: {message}")]
    Runtime { name: String, message: String },
    #[error("mapping {name} produced no output, expected exactly one")]
    NoOutput { name: String },
    /// `count` stops at 100: a program may produce outputs forever.
    #[error("mapping {name} produced {count} outputs, expected exactly one")]
    ManyOutputs { name: String, count: usize },
    #[error("mapping {name} produced {found}, expected a string or number key")]
    NotAKey { name: String, found: &'static str },
    #[error("mapping {name}: {which} is nested deeper than {limit} levels")]
    TooDeep { name: String, which: &'static str, limit: usize },
}

impl MappingError {
    /// A short, stable, human-readable reason, used as the DLQ reason.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

impl JqProgram {
    /// Compile `program`; `name` (e.g. the mapping file name) is used in messages.
    pub fn compile(name: &str, program: &str) -> Result<Self, MappingError> {
        let compile_error =
            |message: String| MappingError::Compile { name: name.to_owned(), message: truncate(&message) };
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code: program, path: () })
            .map_err(|errs| compile_error(describe_load_errors(&errs)))?;
        let filter = jaq_core::Compiler::default()
            .with_funs(natives())
            .compile(modules)
            .map_err(|errs| compile_error(describe_compile_errors(&errs)))?;
        Ok(Self { name: name.to_owned(), filter })
    }

    /// Run on one input; the program must produce exactly one output.
    pub fn run_one(&self, input: &Value) -> Result<Value, MappingError> {
        let input = to_val(input, 0).ok_or_else(|| self.too_deep("input"))?;
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input));
        let first = match outputs.next() {
            None => return Err(MappingError::NoOutput { name: self.name.clone() }),
            Some(first) => first.map_err(|exn| self.exception(exn))?,
        };
        let mut count = 1;
        for next in outputs.take(MAX_COUNTED_OUTPUTS - 1) {
            // An error after the first output still means the program failed.
            next.map_err(|exn| self.exception(exn))?;
            count += 1;
        }
        if count > 1 {
            return Err(MappingError::ManyOutputs { name: self.name.clone(), count });
        }
        from_val(&first, 0).map_err(|failure| match failure {
            Unrepresentable::TooDeep => self.too_deep("output"),
            Unrepresentable::NonStringKey(found) => MappingError::Runtime {
                name: self.name.clone(),
                message: format!("output object has a {found} key; JSON keys are strings"),
            },
        })
    }

    /// Run a key expression (ordering key, idempotency key, version): exactly one
    /// output, a string or a number (rendered as JSON text).
    pub fn run_key(&self, input: &Value) -> Result<String, MappingError> {
        match self.run_one(input)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(MappingError::NotAKey { name: self.name.clone(), found: json_type(&other) }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn too_deep(&self, which: &'static str) -> MappingError {
        MappingError::TooDeep { name: self.name.clone(), which, limit: MAX_DEPTH }
    }

    fn exception(&self, exn: jaq_core::Exn<'_, Val>) -> MappingError {
        let name = self.name.clone();
        match exn.get_err() {
            Ok(err) => classify(name, err),
            // jaq's own `unwrap_valr` would exit the process on `halt`; a Lambda must not.
            Err(exn) => match exn.get_halt() {
                Ok(code) => MappingError::Runtime {
                    name,
                    message: format!("halt({code}) is not supported in a mapping; use error(\"...\")"),
                },
                Err(_) => {
                    MappingError::Runtime { name, message: "internal jaq control flow escaped the program".to_owned() }
                }
            },
        }
    }
}

/// The standard library, minus [`DENIED`], with `debug` and `stderr` made silent:
/// they would copy payload values (personal data) into the function's logs.
fn natives() -> impl Iterator<Item = jaq_core::native::Fun<Data>> {
    let silent: [jaq_core::native::Fun<Data>; 2] = [
        jaq_core::native::run(("debug_empty", Box::new([]), |_| Box::new(core::iter::empty()))),
        jaq_core::native::run(("stderr_empty", Box::new([]), |_| Box::new(core::iter::empty()))),
    ];
    jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| !DENIED.contains(name) && !silent.iter().any(|(silenced, _, _)| silenced == name))
        .collect::<Vec<_>>()
        .into_iter()
        .chain(silent)
}

/// Tell an error the program raised from one jaq raised while running it.
///
/// jaq builds its own errors from text and values ("cannot use {value} as object");
/// `into_val` renders those as a string equal to the error's display. A raised
/// string displays quoted, so it never equals its own display.
fn classify(name: String, err: jaq_core::Error<Val>) -> MappingError {
    let shown = err.to_string();
    match err.into_val() {
        Val::TStr(b) | Val::BStr(b) if b[..] == *shown.as_bytes() => MappingError::Runtime {
            name,
            // jaq's messages embed the offending input value: keep only its type.
            message: truncate(&redact(&shown, Redact::AllValues)),
        },
        Val::TStr(b) | Val::BStr(b) => MappingError::Raised {
            name,
            // Natives such as `fromjson` or `fromdate` raise strings that quote their
            // input ("cannot parse \"...\" as JSON"); an author's own words stay.
            message: truncate(&redact(&String::from_utf8_lossy(&b), Redact::QuotedOnly)),
        },
        other => MappingError::Raised { name, message: format!("{} value (not shown)", val_type(&other)) },
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Redact {
    QuotedOnly,
    AllValues,
}

/// Replace JSON literals in a message by their type: `"alice@example.com"` becomes
/// `<string>`; with `AllValues` also numbers, arrays and objects.
fn redact(text: &str, mode: Redact) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let after_word = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let starts_number =
            (c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))) && !after_word;
        if c == '"' {
            i = skip_string(&chars, i);
            out.push_str("<string>");
        } else if mode == Redact::AllValues && (c == '[' || c == '{') {
            i = skip_container(&chars, i);
            out.push_str(if c == '[' { "<array>" } else { "<object>" });
        } else if mode == Redact::AllValues && starts_number {
            i += 1;
            while let Some(&d) = chars.get(i) {
                let exponent_sign = (d == '+' || d == '-') && matches!(chars[i - 1], 'e' | 'E');
                if !(d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E') || exponent_sign) {
                    break;
                }
                i += 1;
            }
            out.push_str("<number>");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Index just past the JSON string starting at `start` (or the end of the text).
fn skip_string(chars: &[char], start: usize) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// Index just past the balanced array or object starting at `start`.
fn skip_container(chars: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' => {
                i = skip_string(chars, i);
                continue;
            }
            '[' | '{' => depth += 1,
            ']' | '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_owned(),
    }
}

fn describe_load_errors(errs: &load::Errors<&str, ()>) -> String {
    let mut described = Vec::new();
    for (file, err) in errs {
        match err {
            load::Error::Io(io) => {
                described.extend(io.iter().map(|(path, msg)| format!("cannot load module `{path}`: {msg}")))
            }
            load::Error::Lex(lex) => described.extend(lex.iter().map(|(expect, found)| {
                let expected = match expect {
                    // `as_str` panics on delimiters other than these four.
                    load::lex::Expect::Delim(d) if !matches!(*d, "(" | "[" | "{" | "\"") => {
                        format!("closing delimiter for `{d}`")
                    }
                    other => other.as_str().to_owned(),
                };
                format!("expected {expected}{}", locate(file.code, found))
            })),
            load::Error::Parse(parse) => described.extend(
                parse.iter().map(|(expect, found)| format!("expected {}{}", expect.as_str(), locate(file.code, found))),
            ),
        }
    }
    described.join("; ")
}

fn describe_compile_errors(errs: &compile::Errors<&str, ()>) -> String {
    let mut described = Vec::new();
    for (file, undefined) in errs {
        for (symbol, kind) in undefined {
            let what = match kind {
                compile::Undefined::Filter(arity) => format!("`{symbol}/{arity}`"),
                _ => format!("`{symbol}`"),
            };
            let hint = if DENIED.contains(symbol) {
                " (not available in mappings: a mapping must not read the environment or the clock)"
            } else {
                ""
            };
            described.push(format!("undefined {} {what}{hint}{}", kind.as_str(), locate(file.code, symbol)));
        }
    }
    described.join("; ")
}

/// " at line L, column C near `snippet`" for a slice of `code`, or "" when jaq
/// handed us a slice from elsewhere (e.g. the standard library).
fn locate(code: &str, part: &str) -> String {
    let (start, end) = (code.as_ptr() as usize, code.as_ptr() as usize + code.len());
    let at = part.as_ptr() as usize;
    if at < start || at > end {
        return String::new();
    }
    let offset = at - start;
    let Some(before) = code.get(..offset) else {
        return String::new();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let snippet: String = part.lines().next().unwrap_or("").trim_end().chars().take(30).collect();
    if snippet.is_empty() {
        format!(" at line {line}, column {column} (end of program)")
    } else {
        format!(" at line {line}, column {column} near `{snippet}`")
    }
}

fn to_val(value: &Value, depth: usize) -> Option<Val> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(Num::from_integral(u))
            } else {
                Val::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Val::from(s.clone()),
        Value::Array(items) => items.iter().map(|v| to_val(v, depth + 1)).collect::<Option<Val>>()?,
        Value::Object(fields) => Val::obj(
            fields.iter().map(|(k, v)| Some((Val::from(k.clone()), to_val(v, depth + 1)?))).collect::<Option<_>>()?,
        ),
    })
}

enum Unrepresentable {
    TooDeep,
    NonStringKey(&'static str),
}

fn from_val(val: &Val, depth: usize) -> Result<Value, Unrepresentable> {
    if depth > MAX_DEPTH {
        return Err(Unrepresentable::TooDeep);
    }
    Ok(match val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => from_num(n),
        Val::TStr(b) | Val::BStr(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(items) => Value::Array(items.iter().map(|v| from_val(v, depth + 1)).collect::<Result<_, _>>()?),
        Val::Obj(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| match k {
                    Val::TStr(b) | Val::BStr(b) => {
                        Ok((String::from_utf8_lossy(b).into_owned(), from_val(v, depth + 1)?))
                    }
                    other => Err(Unrepresentable::NonStringKey(val_type(other))),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Numbers as jq prints them: NaN is null, infinities clamp to the largest double.
fn from_num(n: &Num) -> Value {
    let float = |f: f64| {
        if f.is_nan() {
            Value::Null
        } else {
            let finite = f.clamp(f64::MIN, f64::MAX);
            serde_json::Number::from_f64(finite).map_or(Value::Null, Value::Number)
        }
    };
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::Float(f) => float(*f),
        // Big integers and decimals: their JSON text, as close as an f64 or i64 gets.
        other => {
            let text = other.to_string();
            match serde_json::from_str::<serde_json::Number>(&text) {
                Ok(number) => Value::Number(number),
                Err(_) => float(text.parse::<f64>().unwrap_or(f64::NAN)),
            }
        }
    }
}

fn val_type(val: &Val) -> &'static str {
    match val {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::TStr(_) | Val::BStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;
    use serde_json::json;

    const STRIPE_TO_CRM: &str = include_str!("../../config/mappings/stripe_payment_to_crm_contact.jq");
    const CRM_CONTACT: &str = include_str!("../../config/contracts/crm_contact.schema.json");

    fn program(code: &str) -> JqProgram {
        JqProgram::compile("test.jq", code).expect("compiles")
    }

    fn stripe_to_crm() -> JqProgram {
        JqProgram::compile("stripe_payment_to_crm_contact.jq", STRIPE_TO_CRM).expect("compiles")
    }

    /// A `payment_intent.succeeded` event as Stripe sends it (trimmed of fields
    /// the mapping ignores, but shaped like the real thing).
    fn payment_intent_succeeded() -> Value {
        json!({
            "id": "evt_3PqRsT2eZvKYlo2C1a2b3c4d",
            "object": "event",
            "api_version": "2024-06-20",
            "created": 1718000000,
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": "req_8fJk2LmN0pQr", "idempotency_key": "b7c1d6e2-5f3a-4c8e-9a1b-2d3e4f5a6b7c"},
            "type": "payment_intent.succeeded",
            "data": {
                "object": {
                    "id": "pi_3PqRsT2eZvKYlo2C1x2y3z4w",
                    "object": "payment_intent",
                    "amount": 4999,
                    "amount_capturable": 0,
                    "amount_received": 4999,
                    "capture_method": "automatic",
                    "client_secret": "pi_3PqRsT2eZvKYlo2C1x2y3z4w_secret_abc",
                    "created": 1717999990,
                    "currency": "eur",
                    "customer": "cus_QabcDEF123",
                    "description": "Order #1042",
                    "latest_charge": "ch_3PqRsT2eZvKYlo2C1q2w3e4r",
                    "livemode": false,
                    "metadata": {"order_id": "1042"},
                    "payment_method": "pm_1PqRsT2eZvKYlo2Cabcdefgh",
                    "payment_method_types": ["card"],
                    "receipt_email": "jenny.rosen@example.com",
                    "shipping": {
                        "address": {
                            "city": "Berlin", "country": "DE", "line1": "Unter den Linden 1",
                            "line2": null, "postal_code": "10117", "state": null
                        },
                        "carrier": null,
                        "name": "Jenny Rosen",
                        "phone": null,
                        "tracking_number": null
                    },
                    "status": "succeeded"
                }
            }
        })
    }

    #[test]
    fn compile_error_is_reported_with_the_name_and_position() {
        let err = JqProgram::compile("broken.jq", "{email: .a,\n  name: (.b | }").unwrap_err();
        let MappingError::Compile { name, message } = &err else {
            panic!("expected a compile error, got {err:?}");
        };
        assert_eq!(name, "broken.jq");
        assert!(message.contains("line 2"), "{message}");
        assert!(err.reason().starts_with("mapping broken.jq does not compile: "));
    }

    #[test]
    fn undefined_filter_is_a_compile_error() {
        let err = JqProgram::compile("typo.jq", ".email | ascii_upcas").unwrap_err();
        let reason = err.reason();
        assert!(reason.contains("undefined filter `ascii_upcas/0`"), "{reason}");
        assert!(reason.contains("line 1, column 10"), "{reason}");
    }

    #[test]
    fn environment_and_clock_are_not_available_to_mappings() {
        for code in ["env.AWS_SECRET_ACCESS_KEY", "now"] {
            let err = JqProgram::compile("sneaky.jq", code).unwrap_err();
            assert!(err.reason().contains("not available in mappings"), "{err}");
        }
    }

    #[test]
    fn mapping_produces_an_object() {
        let out = program("{id: .id, total: (.items | map(.price) | add)}")
            .run_one(&json!({"id": "o1", "items": [{"price": 2}, {"price": 3}]}))
            .unwrap();
        assert_eq!(out, json!({"id": "o1", "total": 5}));
    }

    #[test]
    fn raised_error_surfaces_with_its_message() {
        let err = program(r#"error("receipt_email is missing")"#).run_one(&json!({})).unwrap_err();
        assert!(
            matches!(&err, MappingError::Raised { message, .. } if message == "receipt_email is missing"),
            "{err:?}"
        );
        assert_eq!(err.reason(), "mapping test.jq raised: receipt_email is missing");
    }

    #[test]
    fn raised_non_string_value_is_not_shown() {
        let err = program("error(.)").run_one(&json!({"email": "a@b.example"})).unwrap_err();
        assert!(matches!(&err, MappingError::Raised { .. }), "{err:?}");
        assert!(!err.reason().contains("a@b.example"), "{err}");
    }

    #[test]
    fn no_output_is_an_error() {
        let err = program("empty").run_one(&json!(1)).unwrap_err();
        assert!(matches!(err, MappingError::NoOutput { .. }), "{err:?}");
    }

    #[test]
    fn two_outputs_are_an_error() {
        let err = program(".a, .b").run_one(&json!({})).unwrap_err();
        assert!(matches!(err, MappingError::ManyOutputs { count: 2, .. }), "{err:?}");
    }

    #[test]
    fn endless_outputs_are_counted_up_to_a_cap() {
        let err = program("repeat(1)").run_one(&json!(null)).unwrap_err();
        assert!(matches!(err, MappingError::ManyOutputs { count: 100, .. }), "{err:?}");
    }

    #[test]
    fn error_after_the_first_output_is_the_error() {
        let err = program(r#"1, error("second failed")"#).run_one(&json!(null)).unwrap_err();
        assert!(matches!(err, MappingError::Raised { .. }), "{err:?}");
    }

    #[test]
    fn run_key_renders_strings_and_numbers_and_refuses_null() {
        let input = json!({"id": "evt_1", "seq": 42, "ratio": 1.5});
        assert_eq!(program(".id").run_key(&input).unwrap(), "evt_1");
        assert_eq!(program(".seq").run_key(&input).unwrap(), "42");
        assert_eq!(program(".ratio").run_key(&input).unwrap(), "1.5");
        let err = program(".missing").run_key(&input).unwrap_err();
        assert!(matches!(err, MappingError::NotAKey { found: "null", .. }), "{err:?}");
        let err = program(".").run_key(&input).unwrap_err();
        assert!(matches!(err, MappingError::NotAKey { found: "object", .. }), "{err:?}");
    }

    #[test]
    fn runtime_type_error_is_an_error_without_the_value() {
        let err = program(".email.domain").run_one(&json!({"email": "jenny.rosen@example.com"})).unwrap_err();
        let MappingError::Runtime { message, .. } = &err else {
            panic!("expected a runtime error, got {err:?}");
        };
        assert!(!message.contains("jenny"), "{message}");
        assert!(message.contains("<string>"), "{message}");
    }

    #[test]
    fn native_errors_do_not_quote_the_input() {
        let err = program("fromjson").run_one(&json!("jenny.rosen@example.com")).unwrap_err();
        assert!(!err.reason().contains("jenny"), "{err}");
        let err = program("1 + .").run_one(&json!("4242424242424242")).unwrap_err();
        assert!(!err.reason().contains("4242"), "{err}");
    }

    #[test]
    fn halt_is_an_error_not_an_exit() {
        let err = program("halt_error").run_one(&json!("bye")).unwrap_err();
        assert!(matches!(err, MappingError::Runtime { .. }), "{err:?}");
    }

    #[test]
    fn debug_passes_values_through_without_logging() {
        assert_eq!(program("debug | .a").run_one(&json!({"a": 1})).unwrap(), json!(1));
    }

    #[test]
    fn std_functions_work() {
        let input = json!({"name": "jenny", "n": 7, "items": [1, 2, 3, 4]});
        let cases = [
            (".name | ascii_upcase", json!("JENNY")),
            (".nickname // \"none\"", json!("none")),
            ("[.items[] | select(. > 2)]", json!([3, 4])),
            ("[has(\"name\"), has(\"nickname\")]", json!([true, false])),
            (".n | tostring", json!("7")),
            (".items | length", json!(4)),
            ("[.items[] | . * 2] | add", json!(20)),
            ("\"a-b-c\" | split(\"-\")", json!(["a", "b", "c"])),
            (".name | test(\"^j\")", json!(true)),
        ];
        for (code, expected) in cases {
            assert_eq!(program(code).run_one(&input).unwrap(), expected, "{code}");
        }
    }

    #[test]
    fn odd_inputs_and_numbers_do_not_panic() {
        let huge = serde_json::from_str::<Value>("1e300").unwrap();
        assert_eq!(program(". * 1e10").run_one(&huge).unwrap(), json!(f64::MAX));
        assert_eq!(program("nan").run_one(&json!(null)).unwrap(), json!(null));
        assert_eq!(program(".").run_one(&json!(u64::MAX)).unwrap(), json!(u64::MAX));
        let big = program("12345678901234567890123 * 10").run_one(&json!(null)).unwrap();
        assert!(big.is_number(), "{big}");
        for input in [json!(3), json!("s"), json!([1]), json!(true)] {
            let err = program(".data.object.id").run_one(&input).unwrap_err();
            assert!(matches!(err, MappingError::Runtime { .. }), "{err:?}");
        }
        assert_eq!(program(".data.object.id").run_one(&json!(null)).unwrap(), json!(null));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH + 10 {
            deep = json!([deep]);
        }
        let err = program(".").run_one(&deep).unwrap_err();
        assert!(matches!(err, MappingError::TooDeep { which: "input", .. }), "{err:?}");
        // Tear down iteratively: serde_json drops nested values recursively.
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or(Value::Null);
        }

        let code = format!("reduce range({}) as $i (1; [.])", MAX_DEPTH + 10);
        let err = program(&code).run_one(&json!(null)).unwrap_err();
        assert!(matches!(err, MappingError::TooDeep { which: "output", .. }), "{err:?}");
    }

    #[test]
    fn non_string_object_keys_are_an_error() {
        let err = program("{(1): 2}").run_one(&json!(null));
        assert!(err.is_err(), "{err:?}");
    }

    #[test]
    fn program_is_send_and_sync_and_debug_shows_only_the_name() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<JqProgram>();
        assert_eq!(format!("{:?}", program(".")), r#"JqProgram { name: "test.jq" }"#);
    }

    #[test]
    fn stripe_payment_maps_to_the_exact_crm_contact() {
        let contact = stripe_to_crm().run_one(&payment_intent_succeeded()).unwrap();
        assert_eq!(
            contact,
            json!({
                "email": "jenny.rosen@example.com",
                "name": "Jenny Rosen",
                "source": "stripe_payment",
                "total_spent_minor": 4999,
                "currency": "EUR",
                "status": "customer"
            })
        );
    }

    #[test]
    fn stripe_payment_without_shipping_has_a_null_name() {
        let mut event = payment_intent_succeeded();
        event["data"]["object"]["shipping"] = Value::Null;
        let contact = stripe_to_crm().run_one(&event).unwrap();
        assert_eq!(contact["name"], Value::Null);
    }

    #[test]
    fn stripe_payment_without_receipt_email_raises() {
        let expected = "receipt_email is missing: a contact needs an email";
        for email in [None, Some(Value::Null), Some(json!("")), Some(json!("   "))] {
            let mut event = payment_intent_succeeded();
            let pi = event["data"]["object"].as_object_mut().unwrap();
            match email {
                None => pi.remove("receipt_email"),
                Some(v) => pi.insert("receipt_email".into(), v),
            };
            let err = stripe_to_crm().run_one(&event).unwrap_err();
            assert!(matches!(&err, MappingError::Raised { message, .. } if message == expected), "{err:?}");
            assert_eq!(err.reason(), format!("mapping stripe_payment_to_crm_contact.jq raised: {expected}"));
        }
    }

    #[test]
    fn stripe_contact_satisfies_the_crm_contract() {
        let schema: Value = serde_json::from_str(CRM_CONTACT).unwrap();
        let contract = Contract::compile("crm_contact", &schema).unwrap();
        let contact = stripe_to_crm().run_one(&payment_intent_succeeded()).unwrap();
        contract.validate(&contact).unwrap();

        let mut event = payment_intent_succeeded();
        event["data"]["object"]["shipping"] = Value::Null;
        contract.validate(&stripe_to_crm().run_one(&event).unwrap()).unwrap();
    }
}
