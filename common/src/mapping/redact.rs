//! Payload values taken out of jaq's error messages, so a reason stored on a DLQ
//! message or in the ledger never carries personal data.

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Redact {
    QuotedOnly,
    AllValues,
}

/// Replace JSON literals in a message by their type: `"alice@example.com"` becomes
/// `<string>`; with `AllValues` also numbers, arrays and objects.
pub(super) fn redact(text: &str, mode: Redact) -> String {
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
