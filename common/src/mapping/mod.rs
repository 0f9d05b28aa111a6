//! jq mappings, evaluated in-process with jaq.
//!
//! A flow's mapping is compiled once at cold start (a broken mapping is a config
//! error, found before the first event) and then run for every event. Every
//! failure is a [`MappingError`] whose [`MappingError::reason`] is safe to store
//! in the ledger and on the DLQ message: it never carries payload values.
//!
//! The module is split by idea: this file compiles and runs programs; `describe`
//! turns jaq's errors into short reasons, `redact` strips payload values from them,
//! and `convert` moves values between serde_json and jaq.

mod bounded;
mod convert;
mod describe;
mod guard;
mod redact;

pub use bounded::{runaway_threads, MAX_OUTPUT_BYTES, TIME_LIMIT};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, Ctx, Vars};
use jaq_json::Val;
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, OnceLock};

use convert::{from_val, json_type, to_val, Unrepresentable, MAX_DEPTH};
use describe::{classify, describe_compile_errors, describe_load_errors, truncate};

type Data = data::JustLut<Val>;

/// Outputs counted before giving up when a program yields too many: a program
/// like `repeat(.)` never stops, so the count is "at least".
const MAX_COUNTED_OUTPUTS: usize = 100;

/// Native filters a mapping may not call. `env` would expose the Lambda's
/// environment (which holds the execution role's session credentials) to a payload
/// bound for a third party; `now` would make a mapping's output depend on when it
/// ran, so golden fixtures and DLQ replays would no longer reproduce a request.
const DENIED: [&str; 2] = ["env", "now"];

/// A jq program, compiled once. Cheap to run many times; `Send + Sync`.
///
/// A flow file's programs are [`JqProgram::deferred`]: loading only keeps their
/// text, and only the functions that run jq compile them (the mapper, poller and
/// reconciler at cold start, through `Config::check_programs`). Compiling jaq's
/// standard library with each program is most of a cold start's CPU, which intake
/// and the dispatcher, running no jq, no longer pay.
pub struct JqProgram {
    name: String,
    text: String,
    compiled: OnceLock<Result<Arc<Compiled>, MappingError>>,
}

/// What a run needs, shared with the thread that runs it (see [`bounded`]).
struct Compiled {
    name: String,
    filter: jaq_core::Filter<Data>,
}

impl fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JqProgram").field("name", &self.name).finish()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
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
    /// The program ran past a bound: longer than [`TIME_LIMIT`], or an output over
    /// [`MAX_OUTPUT_BYTES`]. `bound` names it.
    #[error("mapping {name} ran away: {bound}")]
    Runaway { name: String, bound: String },
    /// Not run: this container still runs too many runaway programs. The record is
    /// retried (in a fresh container, which the mapper makes sure of).
    #[error("mapping {name} was not run: too many runaway mappings are still running in this container")]
    Saturated { name: String },
}

impl MappingError {
    /// A short, stable, human-readable reason, used as the DLQ reason.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// Whether another attempt (in another container) could succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, MappingError::Saturated { .. })
    }
}

impl JqProgram {
    /// Compile `program` now; `name` (e.g. the mapping file name) is used in messages.
    pub fn compile(name: &str, program: &str) -> Result<Self, MappingError> {
        let program = Self::deferred(name, program);
        program.check()?;
        Ok(program)
    }

    /// Keep `program` to compile on first use or at [`JqProgram::check`].
    pub fn deferred(name: &str, program: &str) -> Self {
        Self { name: name.to_owned(), text: program.to_owned(), compiled: OnceLock::new() }
    }

    /// Compiles the program if that has not been done yet; its compile error if any.
    pub fn check(&self) -> Result<(), MappingError> {
        self.compiled().map(drop)
    }

    fn compiled(&self) -> Result<Arc<Compiled>, MappingError> {
        self.compiled.get_or_init(|| compile_guarded(&self.name, &self.text).map(Arc::new)).clone()
    }

    /// Run on one input; the program must produce exactly one output. Bounded: a run
    /// longer than [`TIME_LIMIT`] or an output over [`MAX_OUTPUT_BYTES`] is
    /// [`MappingError::Runaway`].
    pub fn run_one(&self, input: &Value) -> Result<Value, MappingError> {
        let compiled = self.compiled()?;
        let input = input.clone();
        let name = &self.name;
        match bounded::run(TIME_LIMIT, move || compiled.run_one(&input)) {
            Ok(result) => result,
            Err(bounded::Stopped::TimeLimit) => Err(MappingError::Runaway {
                name: name.clone(),
                bound: format!("still running after the time limit of {} ms", TIME_LIMIT.as_millis()),
            }),
            Err(bounded::Stopped::Saturated) => Err(MappingError::Saturated { name: name.clone() }),
            Err(bounded::Stopped::Failed) => Err(MappingError::Runtime {
                name: name.clone(),
                message: "the program stopped without an answer".to_owned(),
            }),
        }
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

    /// An idempotency key: a string or number is the key as it is; an array or object
    /// is a key *from content*, its JSON hashed (SHA-256, hex), so a form's fields can
    /// make a key without putting them in a header.
    pub fn run_idempotency_key(&self, input: &Value) -> Result<String, MappingError> {
        match self.run_one(input)? {
            v @ (Value::Array(_) | Value::Object(_)) => Ok(crate::envelope::sha256_hex(v.to_string().as_bytes())),
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(MappingError::NotAKey { name: self.name.clone(), found: json_type(&other) }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Compiled {
    /// [`JqProgram::run_one`] on the calling thread, with the output size bounded.
    fn run_one(&self, input: &Value) -> Result<Value, MappingError> {
        guard::arm(bounded::STACK_BYTES / 2);
        self.run_guarded(input).map_err(|e| {
            if guard::tripped() {
                MappingError::Runaway {
                    name: self.name.clone(),
                    bound: format!("recursion deeper than the stack of {} MiB allows", bounded::STACK_BYTES >> 20),
                }
            } else {
                e
            }
        })
    }

    fn run_guarded(&self, input: &Value) -> Result<Value, MappingError> {
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
        let output = from_val(&first, 0).map_err(|failure| match failure {
            Unrepresentable::TooDeep => self.too_deep("output"),
            Unrepresentable::NonStringKey(found) => MappingError::Runtime {
                name: self.name.clone(),
                message: format!("output object has a {found} key; JSON keys are strings"),
            },
        })?;
        if !bounded::fits(&output, MAX_OUTPUT_BYTES) {
            return Err(MappingError::Runaway {
                name: self.name.clone(),
                bound: format!("its output is over the limit of {MAX_OUTPUT_BYTES} bytes"),
            });
        }
        Ok(output)
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

/// The program with every definition guarded against stack exhaustion (see `guard`),
/// compiled once; the program as written is compiled only when that fails, for its
/// errors and their positions (or, should only the guarded text fail, to run unguarded).
fn compile_guarded(name: &str, program: &str) -> Result<Compiled, MappingError> {
    let guarded = guard::guarded(program);
    let filter = match guarded.as_deref().map(|text| compile_text(name, text)) {
        Some(Ok(filter)) => filter,
        _ => {
            let plain = compile_text(name, program)?;
            if guarded.is_some() {
                tracing::warn!(mapping = name, "mapping runs without its recursion guard");
            }
            plain
        }
    };
    Ok(Compiled { name: name.to_owned(), filter })
}

fn compile_text(name: &str, program: &str) -> Result<jaq_core::Filter<Data>, MappingError> {
    let compile_error = |message: String| MappingError::Compile { name: name.to_owned(), message: truncate(&message) };
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(&arena, File { code: program, path: () })
        .map_err(|errs| compile_error(describe_load_errors(&errs)))?;
    jaq_core::Compiler::default()
        .with_funs(natives())
        .compile(modules)
        .map_err(|errs| compile_error(describe_compile_errors(&errs)))
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
        .chain([guard::native()])
}

#[cfg(test)]
mod tests;
