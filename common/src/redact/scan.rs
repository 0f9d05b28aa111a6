//! Finding what to mask in the text of one line: registered secrets, email
//! addresses, phone numbers, card numbers — without breaking the line's JSON.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    Email,
    Phone,
    Card,
    Signature,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Secret => "[redacted:secret]",
            Kind::Email => "[redacted:email]",
            Kind::Phone => "[redacted:phone]",
            Kind::Card => "[redacted:card]",
            Kind::Signature => "[redacted:signature]",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    kind: Kind,
}

/// The line's bytes with what JSON makes of them: inside a string or not, part of
/// an escape sequence (`\n`, `\"`, `\u00e9`) or not.
struct Scan<'a> {
    b: &'a [u8],
    json: bool,
    in_string: Vec<bool>,
    /// Bytes of an escape sequence after its backslash.
    esc_cont: Vec<bool>,
    /// The backslash starting an escape sequence.
    esc_start: Vec<bool>,
}

impl<'a> Scan<'a> {
    fn new(line: &'a str) -> Self {
        let b = line.as_bytes();
        let n = b.len();
        let json = line.trim_start().starts_with(['{', '[']);
        let (mut in_string, mut esc_cont, mut esc_start) = (vec![!json; n], vec![false; n], vec![false; n]);
        let mut inside = !json;
        let mut i = 0;
        while i < n {
            // Escape sequences exist only in JSON strings: in plain text a backslash
            // is a character like any other, and must not hide what follows it.
            if json && inside && b[i] == b'\\' && i + 1 < n {
                let len = if b[i + 1] == b'u' { 6 } else { 2 }.min(n - i);
                esc_start[i] = true;
                for j in i..i + len {
                    in_string[j] = true;
                    esc_cont[j] = j > i;
                }
                i += len;
                continue;
            }
            if json && b[i] == b'"' {
                // The quotes themselves belong to neither side.
                in_string[i] = false;
                inside = !inside;
            } else {
                in_string[i] = inside;
            }
            i += 1;
        }
        Self { b, json, in_string, esc_cont, esc_start }
    }

    fn escaped(&self, i: usize) -> bool {
        self.esc_start[i] || self.esc_cont[i]
    }

    /// Whether `start..end` lies within one string (or wholly outside strings) and
    /// neither begins nor ends inside an escape sequence.
    fn clean(&self, start: usize, end: usize) -> bool {
        let n = self.b.len();
        let side = self.in_string[start];
        !self.esc_cont[start]
            && (end == n || !self.esc_cont[end])
            && (start..end).all(|i| self.esc_cont[i] || self.in_string[i] == side && !(self.json && self.b[i] == b'"'))
    }

    /// Whether a number may begin at `i`: after a delimiter, not glued to a word,
    /// a decimal point, a time or a hyphenated id.
    fn boundary_before(&self, i: usize) -> bool {
        i == 0
            || self.esc_cont[i - 1]
            || matches!(
                self.b[i - 1],
                b' ' | b'\t' | b'"' | b'\'' | b':' | b',' | b';' | b'=' | b'[' | b'{' | b'(' | b'<' | b'>' | b'|'
            )
    }

    /// Whether a number may end at `end` (exclusive).
    fn boundary_after(&self, end: usize) -> bool {
        let b = self.b;
        let Some(&c) = b.get(end) else { return true };
        let next_digit = b.get(end + 1).is_some_and(u8::is_ascii_digit);
        let next_alnum = b.get(end + 1).is_some_and(u8::is_ascii_alphanumeric);
        !(c.is_ascii_alphanumeric() && !self.escaped(end)
            || matches!(c, b'_' | b'@' | b'/')
            || matches!(c, b'.' | b':') && next_digit
            || c == b',' && self.in_string[end] && next_digit
            || c == b'-' && next_alnum)
    }
}

/// `line` with every occurrence of the secret forms, every email address, phone
/// number and card number masked.
pub(super) fn mask_text<'a, 's>(line: &'a str, secret_forms: impl Iterator<Item = &'s str>) -> Cow<'a, str> {
    let scan = Scan::new(line);
    let mut spans = Vec::new();
    for form in secret_forms {
        for (start, m) in line.match_indices(form) {
            if scan.clean(start, start + m.len()) {
                spans.push(Span { start, end: start + m.len(), kind: Kind::Secret });
            }
        }
    }
    email_spans(&scan, &mut spans);
    number_spans(&scan, &mut spans);
    credential_spans(&scan, &mut spans);
    if spans.is_empty() {
        return Cow::Borrowed(line);
    }
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for span in spans {
        if span.start < at {
            continue; // inside a span already masked
        }
        out.push_str(&line[at..span.start]);
        if scan.in_string[span.start] {
            out.push_str(span.kind.label());
        } else {
            out.push('"');
            out.push_str(span.kind.label());
            out.push('"');
        }
        at = span.end;
    }
    out.push_str(&line[at..]);
    Cow::Owned(out)
}

fn email_spans(scan: &Scan, spans: &mut Vec<Span>) {
    let b = scan.b;
    let local = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let domain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-');
    for at in (0..b.len()).filter(|&i| b[i] == b'@' && !scan.escaped(i)) {
        let mut start = at;
        while start > 0 && local(b[start - 1]) && !scan.escaped(start - 1) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < b.len() && domain(b[end]) && !scan.escaped(end) {
            end += 1;
        }
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let host = &b[at + 1..end];
        let labels: Vec<&[u8]> = host.split(|&c| c == b'.').collect();
        let tld_ok = labels.last().is_some_and(|t| t.len() >= 2 && t.iter().all(u8::is_ascii_alphabetic));
        if start < at && labels.len() >= 2 && labels.iter().all(|l| !l.is_empty()) && tld_ok && scan.clean(start, end) {
            spans.push(Span { start, end, kind: Kind::Email });
        }
    }
}

/// Credentials recognisable by their shape, registered or not: webhook signatures
/// as their headers carry them (`v1,<base64>`, `v1=<hex>`, `sha256=<hex>`, at least
/// 32 characters after the prefix) and JWTs (`eyJ….eyJ….…`).
fn credential_spans(scan: &Scan, spans: &mut Vec<Span>) {
    const PREFIXES: [&[u8]; 6] = [b"v1,", b"v1a,", b"v1=", b"v0=", b"sha256=", b"sha1="];
    let b = scan.b;
    let n = b.len();
    let signature_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=');
    let jwt_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    let run = |from: usize, ok: &dyn Fn(u8) -> bool| (from..n).find(|&j| !ok(b[j]) || scan.escaped(j)).unwrap_or(n);
    let mut i = 0;
    while i < n {
        let word_start = i == 0 || scan.esc_cont[i - 1] || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if !word_start || scan.escaped(i) {
            i += 1;
            continue;
        }
        let found = if let Some(prefix) = PREFIXES.iter().find(|p| b[i..].starts_with(p)) {
            let end = run(i + prefix.len(), &signature_char);
            (end - i - prefix.len() >= 32).then_some((end, Kind::Signature))
        } else if b[i..].starts_with(b"eyJ") {
            let end = run(i, &jwt_char);
            let dots = b[i..end].iter().filter(|&&c| c == b'.').count();
            (dots == 2 && end - i >= 20).then_some((end, Kind::Secret))
        } else {
            None
        };
        match found {
            Some((end, kind)) if scan.clean(i, end) => {
                spans.push(Span { start: i, end, kind });
                i = end;
            }
            _ => i += 1,
        }
    }
}

/// A run of digits with the punctuation phone numbers and card numbers are
/// written with.
#[derive(Debug, Default)]
struct Number {
    digits: String,
    groups: Vec<usize>,
    separators: Vec<u8>,
    plus: bool,
    parens: bool,
}

fn read_number(scan: &Scan, start: usize) -> (Number, usize) {
    let b = scan.b;
    let n = b.len();
    let mut num = Number::default();
    let mut j = start;
    if b[j] == b'+' {
        num.plus = true;
        j += 1;
    }
    let mut end = j;
    loop {
        let mut k = j;
        if k < n && b[k] == b'(' {
            num.parens = true;
            k += 1;
        }
        let first = k;
        while k < n && b[k].is_ascii_digit() && !scan.escaped(k) {
            num.digits.push(b[k] as char);
            k += 1;
        }
        if k == first {
            break;
        }
        num.groups.push(k - first);
        end = k;
        if k < n && b[k] == b')' && num.parens {
            k += 1;
        }
        if k < n && matches!(b[k], b' ' | b'-') {
            num.separators.push(b[k]);
            k += 1;
        }
        if k > end && k < n && (b[k].is_ascii_digit() || b[k] == b'(') {
            j = k;
            continue;
        }
        break;
    }
    (num, end)
}

pub(super) fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 {
                    twice - 9
                } else {
                    twice
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

fn classify(num: &Number) -> Option<Kind> {
    let n = num.digits.len();
    let uniform = num.separators.windows(2).all(|w| w[0] == w[1]);
    let card_like = !num.plus
        && !num.parens
        && (13..=19).contains(&n)
        && matches!(num.digits.as_bytes()[0], b'2'..=b'6')
        && uniform
        && num.groups.iter().all(|&g| g >= 3);
    let grouped = num.parens || !num.separators.is_empty();
    let date_like = num.groups.len() >= 3 && num.groups[0] == 4 && num.groups[1] == 2 && num.groups[2] == 2;
    if card_like && luhn(&num.digits) {
        Some(Kind::Card)
    } else if num.plus && (8..=15).contains(&n) || !num.plus && grouped && !date_like && (9..=15).contains(&n) {
        Some(Kind::Phone)
    } else {
        None
    }
}

fn number_spans(scan: &Scan, spans: &mut Vec<Span>) {
    let b = scan.b;
    let n = b.len();
    let mut i = 0;
    while i < n {
        let c = b[i];
        let opener = matches!(c, b'+' | b'(') && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        if !(c.is_ascii_digit() || opener) || scan.escaped(i) || !scan.boundary_before(i) {
            i += 1;
            continue;
        }
        let (num, end) = read_number(scan, i);
        if scan.boundary_after(end) && scan.clean(i, end) {
            if let Some(kind) = classify(&num) {
                spans.push(Span { start: i, end, kind });
            }
        }
        // Whatever this token was, none of its tail is read as a number of its own.
        i = end.max(i + 1);
        while i < n && (b[i].is_ascii_alphanumeric() || b[i] == b'_') && !scan.escaped(i) {
            i += 1;
        }
    }
}
