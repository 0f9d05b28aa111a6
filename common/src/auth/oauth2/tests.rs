use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn credentials(id: &str, secret: &str) -> ClientCredentials {
    ClientCredentials { client_id: id.to_owned(), client_secret: secret.to_owned() }
}

#[test]
fn the_token_request_is_a_client_credentials_form_with_the_client_in_basic_auth() {
    let r = token_request(&credentials("app", "s3cr3t"), None, None).unwrap();
    assert_eq!(r.body, "grant_type=client_credentials");
    assert_eq!(r.authorization.to_str().unwrap(), "Basic YXBwOnMzY3IzdA==");
    assert!(r.authorization.is_sensitive());
    assert_eq!(r.encoded_credentials, "YXBwOnMzY3IzdA==");

    let r = token_request(&credentials("app", "s3cr3t"), Some("contacts:write read"), Some("https://api.example/"))
        .unwrap();
    assert_eq!(
        r.body,
        "grant_type=client_credentials&scope=contacts%3Awrite+read&audience=https%3A%2F%2Fapi.example%2F"
    );
}

#[test]
fn client_id_and_secret_are_form_encoded_before_basic_encoding() {
    // RFC 6749 §2.3.1: a ':' in the secret must not split user from password.
    let r = token_request(&credentials("my app", "a:b+c"), None, None).unwrap();
    assert_eq!(r.encoded_credentials, crate::auth::basic_credentials("my+app", "a%3Ab%2Bc"));
}

#[test]
fn client_credentials_come_from_the_secret_and_debug_hides_the_secret() {
    let s = SecretFields::parse("id", r#"{"client_id":"app","client_secret":"hunter2"}"#).unwrap();
    let c = ClientCredentials::from_secret(&s).unwrap();
    assert_eq!((c.client_id.as_str(), c.client_secret.as_str()), ("app", "hunter2"));
    assert!(!format!("{c:?}").contains("hunter2"));
    let s = SecretFields::parse("id", r#"{"client_id":"app"}"#).unwrap();
    assert!(matches!(
        ClientCredentials::from_secret(&s),
        Err(CredentialError::MissingField { field: "client_secret", .. })
    ));
}

#[test]
fn a_token_is_refreshed_thirty_seconds_or_a_tenth_of_its_lifetime_early() {
    let t0 = Instant::now();
    let at = |secs| refresh_at(t0, Some(Duration::from_secs(secs))) - t0;
    assert_eq!(at(3600), Duration::from_secs(3570), "long-lived: 30 s margin");
    assert_eq!(at(60), Duration::from_secs(54), "short-lived: a tenth");
    assert_eq!(at(2), Duration::from_millis(1800));
    assert_eq!(at(0), Duration::ZERO, "expires_in 0: never reused");
    assert_eq!(refresh_at(t0, None) - t0, Duration::from_secs(270), "no expires_in: the default lifetime");
}

#[test]
fn a_successful_answer_gives_a_bearer_token_with_its_refresh_time() {
    let t0 = Instant::now();
    let body = br#"{"access_token":"tok-1","token_type":"Bearer","expires_in":3600,"scope":"x"}"#;
    let token = parse_token_response(200, body, t0).unwrap();
    assert_eq!(token.expose(), "tok-1");
    assert_eq!(token.refresh_at() - t0, Duration::from_secs(3570));
    assert!(token.is_fresh(t0) && !token.is_fresh(t0 + Duration::from_secs(3570)));
    assert!(!format!("{token:?}").contains("tok-1"));

    let as_string = parse_token_response(200, br#"{"access_token":"t","token_type":"bearer","expires_in":"60"}"#, t0);
    assert_eq!(as_string.unwrap().refresh_at() - t0, Duration::from_secs(54));
    let without = parse_token_response(200, br#"{"access_token":"t"}"#, t0).unwrap();
    assert_eq!(without.refresh_at() - t0, Duration::from_secs(270));
}

#[test]
fn unusable_successful_answers_are_malformed_or_unsupported() {
    let t0 = Instant::now();
    let parse = |body: &[u8]| parse_token_response(200, body, t0).unwrap_err();
    assert_eq!(parse(b"<html>"), TokenError::Malformed("not a JSON object"));
    assert_eq!(parse(br#"{"token_type":"bearer"}"#), TokenError::Malformed("no access_token"));
    assert_eq!(parse(br#"{"access_token":""}"#), TokenError::Malformed("no access_token"));
    assert!(matches!(parse(br#"{"access_token":"a\nb"}"#), TokenError::Malformed(_)));
    assert!(matches!(parse(br#"{"access_token":"t","expires_in":-5}"#), TokenError::Malformed(_)));
    assert!(matches!(parse(br#"{"access_token":"t","expires_in":[1]}"#), TokenError::Malformed(_)));
    let e = parse(br#"{"access_token":"t","token_type":"mac"}"#);
    assert_eq!(e, TokenError::UnsupportedTokenType("mac".into()));
    assert_eq!(e.class(), FailureClass::Terminal);
    assert_eq!(TokenError::Malformed("x").class(), FailureClass::Transient);
}

#[test]
fn token_endpoint_errors_are_classified_transient_auth_or_terminal() {
    let t0 = Instant::now();
    let class = |status, body: &[u8]| parse_token_response(status, body, t0).unwrap_err().class();
    for status in [500, 502, 503, 504, 408, 429] {
        assert_eq!(class(status, b""), FailureClass::Transient, "{status}");
    }
    assert_eq!(class(401, br#"{"error":"invalid_client"}"#), FailureClass::Auth);
    assert_eq!(class(403, b""), FailureClass::Auth);
    for code in ["invalid_client", "invalid_grant", "unauthorized_client"] {
        assert_eq!(class(400, format!(r#"{{"error":"{code}"}}"#).as_bytes()), FailureClass::Auth, "{code}");
    }
    for code in ["invalid_scope", "unsupported_grant_type", "invalid_request"] {
        assert_eq!(class(400, format!(r#"{{"error":"{code}"}}"#).as_bytes()), FailureClass::Terminal, "{code}");
    }
    assert_eq!(class(404, b""), FailureClass::Terminal);
}

#[test]
fn error_reasons_carry_the_code_but_never_the_body() {
    let t0 = Instant::now();
    let e = parse_token_response(400, br#"{"error":"invalid_client","error_description":"secret hunter2"}"#, t0);
    assert_eq!(e.unwrap_err().to_string(), "token endpoint refused the client credentials: HTTP 400 invalid_client");
    let e = parse_token_response(401, br#"{"error":"Bad secret hunter2"}"#, t0).unwrap_err().to_string();
    assert!(e.ends_with("(unrecognised error code)") && !e.contains("hunter2"), "{e}");
    let e = parse_token_response(500, b"stack trace with hunter2", t0).unwrap_err().to_string();
    assert_eq!(e, "token endpoint unavailable: HTTP 500");
}

async fn fetcher(count: &AtomicUsize, lifetime: Duration) -> Result<AccessToken, ()> {
    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(AccessToken::new(format!("tok-{n}"), Instant::now() + lifetime))
}

#[tokio::test]
async fn the_cache_fetches_once_while_the_token_is_fresh_and_again_once_it_is_not() {
    let cache = TokenCache::default();
    let count = AtomicUsize::new(0);
    for _ in 0..3 {
        let t = cache.get_or_fetch("crm", || fetcher(&count, Duration::from_secs(60))).await.unwrap();
        assert_eq!(t.expose(), "tok-1");
    }
    let other = cache.get_or_fetch("erp", || fetcher(&count, Duration::ZERO)).await.unwrap();
    assert_eq!(other.expose(), "tok-2", "one token per key");
    let again = cache.get_or_fetch("erp", || fetcher(&count, Duration::ZERO)).await.unwrap();
    assert_eq!(again.expose(), "tok-3", "an expired token is replaced");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_failed_fetch_is_not_cached() {
    let cache = TokenCache::default();
    let failed: Result<AccessToken, &str> = cache.get_or_fetch("crm", || async { Err("down") }).await;
    assert_eq!(failed.unwrap_err(), "down");
    let count = AtomicUsize::new(0);
    let t = cache.get_or_fetch("crm", || fetcher(&count, Duration::from_secs(60))).await.unwrap();
    assert_eq!(t.expose(), "tok-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_one_fetch() {
    let cache = Arc::new(TokenCache::default());
    let count = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, count) = (cache.clone(), count.clone());
            tokio::spawn(async move {
                cache
                    .get_or_fetch("crm", || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        fetcher(&count, Duration::from_secs(60)).await
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().expose(), "tok-1");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn invalidating_a_refused_token_forces_one_refresh_however_many_deliveries_were_refused() {
    let cache = TokenCache::default();
    let count = AtomicUsize::new(0);
    let refused = cache.get_or_fetch("crm", || fetcher(&count, Duration::from_secs(60))).await.unwrap();
    cache.invalidate("crm", &refused).await;
    let fresh = cache.get_or_fetch("crm", || fetcher(&count, Duration::from_secs(60))).await.unwrap();
    assert_eq!(fresh.expose(), "tok-2");
    // A second delivery refused with the old token must not throw away the new one.
    cache.invalidate("crm", &refused).await;
    let still = cache.get_or_fetch("crm", || fetcher(&count, Duration::from_secs(60))).await.unwrap();
    assert_eq!(still.expose(), "tok-2");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}
