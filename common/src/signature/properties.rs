//! Properties of every scheme over generated bodies, secrets, ids and clocks: what
//! `sign` makes, `verify` accepts, and a single flipped byte makes it refuse.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use proptest::prelude::*;

use super::{sign, verify, Encoding, HmacScheme, Scheme, SignatureError, SigningSecret};

fn schemes() -> impl Strategy<Value = Scheme> {
    let generic = (any::<bool>(), any::<bool>(), any::<bool>(), "[a-z0-9=._-]{0,8}").prop_map(
        |(base64, timed, with_id, prefix)| {
            Scheme::Hmac(HmacScheme {
                header: "X-Sig".into(),
                prefix,
                encoding: if base64 { Encoding::Base64 } else { Encoding::Hex },
                timestamp_header: timed.then(|| "X-Sig-Time".into()),
                id_header: with_id.then(|| "X-Sig-Id".into()),
            })
        },
    );
    prop_oneof![
        Just(Scheme::Stripe),
        Just(Scheme::Github),
        Just(Scheme::Shopify),
        Just(Scheme::StandardWebhooks),
        generic,
    ]
}

/// A secret the scheme takes: `whsec_` + base64 of random key bytes for Standard
/// Webhooks, the printable string itself for the others.
fn secret_for(scheme: &Scheme, key: &[u8], text: &str) -> SigningSecret {
    match scheme {
        Scheme::StandardWebhooks => SigningSecret::new(format!("whsec_{}", STANDARD.encode(key))),
        _ => SigningSecret::new(text),
    }
}

#[derive(Debug)]
struct Signed {
    scheme: Scheme,
    secret: SigningSecret,
    body: Vec<u8>,
    timestamp: i64,
    id: String,
}

fn signed() -> impl Strategy<Value = Signed> {
    (
        schemes(),
        proptest::collection::vec(any::<u8>(), 1..64),
        "[ -~]{1,64}",
        proptest::collection::vec(any::<u8>(), 0..2048),
        0i64..4_000_000_000,
        "[A-Za-z0-9_.:-]{1,64}",
    )
        .prop_map(|(scheme, key, text, body, timestamp, id)| Signed {
            secret: secret_for(&scheme, &key, &text),
            scheme,
            body,
            timestamp,
            id,
        })
}

fn check(s: &Signed, body: &[u8]) -> Result<super::Verified, SignatureError> {
    let headers = sign(&s.scheme, &s.secret, &s.body, s.timestamp, &s.id).expect("signs");
    verify(&s.scheme, &headers.into_iter().collect(), body, std::slice::from_ref(&s.secret), s.timestamp, 300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn verify_accepts_what_sign_made_for_every_scheme_body_secret_and_id(s in signed()) {
        let verified = check(&s, &s.body).expect("verify accepts what sign made");
        prop_assert_eq!(verified.key_index, 0);
        let carries_id = !matches!(&s.scheme, Scheme::Stripe | Scheme::Hmac(HmacScheme { id_header: None, .. }));
        prop_assert_eq!(verified.event_id, carries_id.then(|| s.id.clone()));
    }

    #[test]
    fn verify_refuses_a_body_with_any_one_byte_flipped(s in signed(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        prop_assume!(!s.body.is_empty());
        let mut body = s.body.clone();
        let i = at.index(body.len());
        body[i] ^= flip;
        prop_assert_eq!(check(&s, &body), Err(SignatureError::Mismatch));
    }

    #[test]
    fn verify_refuses_the_right_body_signed_with_another_secret(s in signed(), other in "[ -~]{1,64}") {
        let wrong = secret_for(&s.scheme, other.as_bytes(), &other);
        prop_assume!(wrong.0 != s.secret.0);
        let headers = sign(&s.scheme, &wrong, &s.body, s.timestamp, &s.id).expect("signs");
        let result = verify(&s.scheme, &headers.into_iter().collect(), &s.body, std::slice::from_ref(&s.secret), s.timestamp, 300);
        prop_assert_eq!(result, Err(SignatureError::Mismatch));
    }
}
