//! The steps against in-memory versions; the same steps run against moto's server
//! in `tests/tests/rotation.rs`.

use std::sync::atomic::Ordering;

use super::*;
use crate::memory::MemoryVersions;
use crate::port::AWSPREVIOUS;

const CRM: &str = "switchyard/dev/destination/crm";
const STANDARD: &str = "switchyard/dev/source/standard";
const TOKEN: &str = "0f4c3a52-7f7e-4d1e-9b1a-3d1c5e2a9b10";
const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

fn rotator(versions: MemoryVersions) -> Rotator<MemoryVersions> {
    Rotator::new(versions, Stage::new("dev").unwrap(), Arc::new(Config::bundled().unwrap()))
}

fn crm() -> Rotator<MemoryVersions> {
    rotator(MemoryVersions::default().with_secret(CRM, r#"{"api_key":"local-crm-api-key"}"#, true))
}

fn event(secret: &str, token: &str, step: &str) -> RotationEvent {
    RotationEvent { secret_id: secret.into(), client_request_token: token.into(), step: step.into() }
}

async fn run(r: &Rotator<MemoryVersions>, secret: &str, step: &str) -> Result<Done, RotationError> {
    r.handle(&event(secret, TOKEN, step)).await
}

fn labelled(r: &Rotator<MemoryVersions>, secret: &str, stage: &str) -> Vec<String> {
    r.versions().stages(secret).into_iter().filter(|(_, s)| s.iter().any(|s| s == stage)).map(|(id, _)| id).collect()
}

#[tokio::test]
async fn the_four_steps_make_the_new_key_current_and_the_old_one_previous_with_no_pending_left() {
    let r = crm();
    let done = [
        run(&r, CRM, "createSecret").await.unwrap(),
        run(&r, CRM, "setSecret").await.unwrap(),
        run(&r, CRM, "testSecret").await.unwrap(),
        run(&r, CRM, "finishSecret").await.unwrap(),
    ];
    assert_eq!(done, [Done::Created, Done::NothingToSet, Done::Tested, Done::Finished]);
    assert_eq!(labelled(&r, CRM, AWSCURRENT), [TOKEN]);
    assert_eq!(labelled(&r, CRM, AWSPREVIOUS), ["v1"]);
    assert!(labelled(&r, CRM, AWSPENDING).is_empty(), "{:?}", r.versions().stages(CRM));
    let new: serde_json::Value = serde_json::from_str(&r.versions().value_of(CRM, TOKEN).unwrap()).unwrap();
    let key = new["api_key"].as_str().unwrap();
    assert!(key.len() == 40 && key != "local-crm-api-key");
}

#[tokio::test]
async fn a_standard_webhooks_source_secret_is_rotated_to_a_new_whsec_key() {
    let r =
        rotator(MemoryVersions::default().with_secret(STANDARD, "whsec_c3VwZXItc2VjcmV0LWtleS1tYXRlcmlhbA==", true));
    for step in STEPS {
        run(&r, STANDARD, step).await.unwrap();
    }
    let new = r.versions().value_of(STANDARD, TOKEN).unwrap();
    assert!(new.starts_with("whsec_") && new != "whsec_c3VwZXItc2VjcmV0LWtleS1tYXRlcmlhbA==");
    assert_eq!(labelled(&r, STANDARD, AWSCURRENT), [TOKEN]);
}

#[tokio::test]
async fn every_step_run_twice_changes_nothing_the_second_time() {
    let r = crm();
    for step in STEPS {
        run(&r, CRM, step).await.unwrap();
        let (stages, value, writes) =
            (r.versions().stages(CRM), r.versions().value_of(CRM, TOKEN), r.versions().writes.load(Ordering::SeqCst));
        let again = run(&r, CRM, step).await.unwrap();
        assert_eq!(r.versions().stages(CRM), stages, "{step} run twice");
        assert_eq!(r.versions().value_of(CRM, TOKEN), value, "{step} run twice");
        assert_eq!(r.versions().writes.load(Ordering::SeqCst), writes, "{step} run twice wrote");
        let expected = match step {
            "createSecret" => Done::AlreadyCreated,
            "setSecret" => Done::NothingToSet,
            "testSecret" => Done::Tested,
            _ => Done::AlreadyCurrent,
        };
        assert_eq!(again, expected, "{step}");
    }
    // After the rotation, every step is a no-op for that token.
    let stages = r.versions().stages(CRM);
    for step in STEPS {
        assert_eq!(run(&r, CRM, step).await.unwrap(), Done::AlreadyCurrent);
    }
    assert_eq!(r.versions().stages(CRM), stages);
}

#[tokio::test]
async fn create_secret_fills_the_placeholder_version_rotate_secret_made() {
    let r =
        rotator(MemoryVersions::default().with_secret(CRM, r#"{"api_key":"k"}"#, true).with_placeholder(CRM, TOKEN));
    assert_eq!(run(&r, CRM, "createSecret").await.unwrap(), Done::Created);
    assert!(r.versions().value_of(CRM, TOKEN).is_some());
    assert_eq!(run(&r, CRM, "createSecret").await.unwrap(), Done::AlreadyCreated);
}

#[tokio::test]
async fn a_finish_interrupted_after_moving_awscurrent_is_completed_by_the_retry() {
    let r = crm();
    for step in &STEPS[..3] {
        run(&r, CRM, step).await.unwrap();
    }
    // The first half of finishSecret, as if the function died right after it.
    r.versions().move_stage(CRM, AWSCURRENT, Some(TOKEN), Some("v1")).await.unwrap();
    assert_eq!(labelled(&r, CRM, AWSPENDING), [TOKEN]);
    assert_eq!(run(&r, CRM, "finishSecret").await.unwrap(), Done::Finished);
    assert!(labelled(&r, CRM, AWSPENDING).is_empty());
    assert_eq!(labelled(&r, CRM, AWSPREVIOUS), ["v1"]);
}

#[tokio::test]
async fn bad_events_get_clear_errors_and_change_nothing() {
    let r = crm().versions;
    let r = rotator(r.with_secret("switchyard/dev/source/acme", "local-acme-hmac-secret", false));
    let before = r.versions().stages(CRM);
    let cases: Vec<(RotationEvent, &str)> = vec![
        (event(CRM, TOKEN, "rotateSecret"), "unknown rotation step \"rotateSecret\""),
        (event(CRM, TOKEN, ""), "unknown rotation step"),
        (event("", TOKEN, "createSecret"), "no SecretId"),
        (event(CRM, "", "createSecret"), "no ClientRequestToken"),
        (event("switchyard/dev/destination/nope", TOKEN, "createSecret"), "does not exist"),
        (event("switchyard/dev/source/acme", TOKEN, "createSecret"), "rotation is not enabled"),
        (event(CRM, TOKEN, "setSecret"), "is not a version of secret"),
        (event(CRM, TOKEN, "testSecret"), "is not a version of secret"),
        (event(CRM, TOKEN, "finishSecret"), "is not a version of secret"),
    ];
    for (e, want) in cases {
        let err = r.handle(&e).await.unwrap_err().to_string();
        assert!(err.contains(want), "{e:?}: {err}");
    }
    assert_eq!(r.versions().stages(CRM), before);
    assert_eq!(r.versions().writes.load(Ordering::SeqCst), 0);
    // A version that exists but is neither pending nor current (an older one).
    r.handle(&event(CRM, TOKEN, "createSecret")).await.unwrap();
    r.handle(&event(CRM, TOKEN, "finishSecret")).await.unwrap();
    let err = r.handle(&event(CRM, "v1", "finishSecret")).await.unwrap_err();
    assert!(matches!(err, RotationError::NotPending { .. }), "{err}");
}

#[tokio::test]
async fn test_secret_refuses_a_pending_value_the_destination_could_not_use_without_quoting_it() {
    let r = crm();
    r.versions().put_pending(CRM, TOKEN, r#"{"token":"sekr3t"}"#).await.unwrap();
    let err = run(&r, CRM, "testSecret").await.unwrap_err();
    assert!(matches!(err, RotationError::Unusable { .. }), "{err}");
    assert!(!err.to_string().contains("sekr3t"), "{err}");
}

#[tokio::test]
async fn a_secret_issued_by_someone_else_is_not_rotated_here() {
    let r = rotator(MemoryVersions::default().with_secret(CRM, r#"{"token":"bearer-from-the-crm"}"#, true));
    let err = run(&r, CRM, "createSecret").await.unwrap_err();
    assert!(matches!(err, RotationError::Unsupported { .. }), "{err}");
    assert!(!err.to_string().contains("bearer-from-the-crm"));
    assert_eq!(r.versions().writes.load(Ordering::SeqCst), 0);
}

#[test]
fn the_event_is_read_from_secrets_managers_json() {
    let json = r#"{"SecretId":"arn:aws:secretsmanager:us-east-1:123456789012:secret:switchyard/dev/destination/crm-AbCdEf","ClientRequestToken":"t-1","Step":"createSecret"}"#;
    let e: RotationEvent = serde_json::from_str(json).unwrap();
    assert_eq!((e.client_request_token.as_str(), Step::parse(&e.step).unwrap()), ("t-1", Step::Create));
    let partial: RotationEvent = serde_json::from_str(r#"{"Step":"testSecret"}"#).unwrap();
    assert!(partial.secret_id.is_empty());
}
