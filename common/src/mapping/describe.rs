//! jaq's errors as short reasons: compile errors with their position, run-time
//! errors told apart from errors the program raised, payload values left out.

use jaq_core::load;
use jaq_core::{compile, Error};
use jaq_json::Val;

use super::convert::val_type;
use super::redact::{redact, Redact};
use super::{MappingError, DENIED};

/// Error messages end up in message attributes and ledger records; keep them short.
const MAX_MESSAGE_CHARS: usize = 300;

/// Tell an error the program raised from one jaq raised while running it.
///
/// jaq builds its own errors from text and values ("cannot use {value} as object");
/// `into_val` renders those as a string equal to the error's display. A raised
/// string displays quoted, so it never equals its own display.
pub(super) fn classify(name: String, err: Error<Val>) -> MappingError {
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

pub(super) fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_owned(),
    }
}

pub(super) fn describe_load_errors(errs: &load::Errors<&str, ()>) -> String {
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

pub(super) fn describe_compile_errors(errs: &compile::Errors<&str, ()>) -> String {
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
