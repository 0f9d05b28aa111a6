//! A stack guard for recursion the time limit cannot stop.
//!
//! A program recursing without tail calls (`def f: [f]; f`) overflows its thread's
//! stack within a fraction of a second, and a stack overflow aborts the whole
//! process: no time limit helps. jaq gives no recursion limit, so every function a
//! program defines starts with a call to a native filter ([`GUARD`]) that measures
//! the stack used on the program's thread and raises an error past half of it. The
//! program text is rewritten for that (`def f: BODY` becomes `def f: GUARD | BODY`,
//! found with jaq's own lexer); the definitions of jaq's standard library are not.

use std::cell::Cell;

use jaq_core::load::lex::{Lexer, StrPart, Tok, Token};
use jaq_core::{native, Error, Exn};
use jaq_json::Val;

use super::Data;

/// The native filter every definition of a program starts with.
pub(super) const GUARD: &str = "__switchyard_stack_guard";

thread_local! {
    /// Address near the top of this thread's stack; 0 on threads that run no program.
    static STACK_TOP: Cell<usize> = const { Cell::new(0) };
    /// The guard fired on this thread since the last [`arm`].
    static TRIPPED: Cell<bool> = const { Cell::new(false) };
    static LIMIT: Cell<usize> = const { Cell::new(0) };
}

fn here() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Marks the calling thread as a program's, with `limit` bytes of stack to use.
pub(super) fn arm(limit: usize) {
    STACK_TOP.with(|t| t.set(here()));
    LIMIT.with(|l| l.set(limit));
    TRIPPED.with(|t| t.set(false));
}

/// Whether the guard fired during the run since [`arm`].
pub(super) fn tripped() -> bool {
    TRIPPED.with(Cell::get)
}

fn stack_exhausted() -> bool {
    let top = STACK_TOP.with(Cell::get);
    // Stacks grow down on every target Lambda runs.
    top != 0 && top.saturating_sub(here()) > LIMIT.with(Cell::get)
}

/// The guard: passes its input through, or raises once the stack is half used.
pub(super) fn native() -> native::Fun<Data> {
    native::run((GUARD, Box::new([]), |cv| {
        if stack_exhausted() {
            TRIPPED.with(|t| t.set(true));
            Box::new(core::iter::once(Err(Exn::from(Error::<Val>::str("recursion too deep")))))
        } else {
            Box::new(core::iter::once(Ok(cv.1)))
        }
    }))
}

/// `program` with `GUARD |` at the start of every definition's body; `None` when it
/// cannot be lexed (the caller compiles the original, which reports the error).
pub(super) fn guarded(program: &str) -> Option<String> {
    let tokens = Lexer::new(program).lex().ok()?;
    let mut at = Vec::new();
    body_starts(program, &tokens, &mut at);
    let mut out = program.to_owned();
    for offset in at.into_iter().rev() {
        out.insert_str(offset, &format!(" {GUARD} |"));
    }
    Some(out)
}

/// Byte offsets just after the `:` of each `def NAME:` / `def NAME(ARGS):`.
fn body_starts(code: &str, tokens: &[Token<&str>], at: &mut Vec<usize>) {
    for (i, Token(text, tok)) in tokens.iter().enumerate() {
        match tok {
            Tok::Word if *text == "def" => {
                let colon = match (tokens.get(i + 1), tokens.get(i + 2), tokens.get(i + 3)) {
                    (Some(Token(_, Tok::Word)), Some(Token(c, Tok::Sym)), _) if *c == ":" => Some(c),
                    (Some(Token(_, Tok::Word)), Some(Token(_, Tok::Block(_))), Some(Token(c, Tok::Sym)))
                        if *c == ":" =>
                    {
                        Some(c)
                    }
                    _ => None,
                };
                if let Some(c) = colon {
                    at.push(c.as_ptr() as usize - code.as_ptr() as usize + c.len());
                }
            }
            Tok::Block(inner) => body_starts(code, inner, at),
            Tok::Str(parts) => {
                for part in parts {
                    if let StrPart::Term(Token(_, Tok::Block(inner))) = part {
                        body_starts(code, inner, at);
                    }
                }
            }
            _ => {}
        }
    }
    at.sort_unstable();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_definition_body_starts_with_the_guard() {
        let g = GUARD;
        assert_eq!(guarded("def f: [f]; f").unwrap(), format!("def f: {g} | [f]; f"));
        assert_eq!(
            guarded("def f(a; $b): def g: a; g; {x: (def h: 1; h)}").unwrap(),
            format!("def f(a; $b): {g} | def g: {g} | a; g; {{x: (def h: {g} | 1; h)}}")
        );
        assert_eq!(
            guarded(r#"{def: 1, "s\(def k: 2; k)": .def}"#).unwrap(),
            format!(r#"{{def: 1, "s\(def k: {g} | 2; k)": .def}}"#)
        );
        assert_eq!(guarded(".a | .b").unwrap(), ".a | .b");
    }
}
