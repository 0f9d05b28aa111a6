//! Outbound credentials and outbound signatures: the pure half of "the dispatcher
//! authenticates to a destination".
//!
//! Everything here is free of I/O so it can be unit-tested; the HTTP calls (to the
//! destination, to an OAuth2 token endpoint) stay in the dispatcher. Whoever reads a
//! secret registers it with [`crate::redact::register_secret`] so no log line carries it.

pub mod credentials;
pub mod oauth2;
pub mod signing;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// `application/x-www-form-urlencoded` serialization of one name or value (the
/// WHATWG URL standard's byte serializer): kept are ASCII alphanumerics and `*-._`,
/// a space becomes `+`, every other byte `%XX`.
pub fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The credentials part of an HTTP Basic `Authorization` header (RFC 7617):
/// `base64(user ":" password)`.
pub fn basic_credentials(user: &str, password: &str) -> String {
    STANDARD.encode(format!("{user}:{password}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_keeps_unreserved_bytes_and_escapes_the_rest() {
        assert_eq!(form_urlencode("client_credentials"), "client_credentials");
        assert_eq!(form_urlencode("contacts:write read"), "contacts%3Awrite+read");
        assert_eq!(form_urlencode("https://api.example.com/"), "https%3A%2F%2Fapi.example.com%2F");
        assert_eq!(form_urlencode("a+b&c=d~é"), "a%2Bb%26c%3Dd%7E%C3%A9");
    }

    #[test]
    fn basic_credentials_are_base64_of_user_colon_password() {
        // RFC 7617 §2's example.
        assert_eq!(basic_credentials("Aladdin", "open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }
}
