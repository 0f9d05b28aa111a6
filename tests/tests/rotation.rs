//! Secret rotation end to end against moto.
//!
//! Inbound: a provider rotates its signing secret while events keep coming. Events
//! signed with the old secret, the new one, or both (Stripe sends two `v1` while it
//! rolls a secret) are all accepted during the source's grace window; once it is
//! over, the old secret is refused.
//!
//! The rotator: moto's `RotateSecret` cannot run a Rust function, so the test calls
//! the four steps itself, with the SDK implementation the function uses, and looks
//! at the version stages (`ListSecretVersionIds`) after each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::types::RotationRulesType;
use serde_json::Value;
use switchyard_common::config::Config;
use switchyard_common::names::Stage;
use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, Scheme, SigningSecret};
use switchyard_e2e::{eventually, local_secret, repo, settle, stripe_payment, LocalAws, World};
use switchyard_rotator::{
    AwsSecretVersions, RotationError, RotationEvent, Rotator, AWSCURRENT, AWSPENDING, AWSPREVIOUS,
};

const NEW_STRIPE_SECRET: &str = "whsec_rotated_stripe_secret_for_the_rotation_test";
const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

/// `Stripe-Signature` with one `v1` per secret, all at the same timestamp.
fn stripe_signature(body: &str, secrets: &[&str], timestamp: i64) -> String {
    let v1: Vec<String> = secrets
        .iter()
        .map(|secret| {
            let headers = sign(&Scheme::Stripe, &SigningSecret::new(*secret), body.as_bytes(), timestamp, "").unwrap();
            let value = headers[0].1.to_str().unwrap().to_owned();
            value.split_once(",v1=").expect("t=…,v1=…").1.to_owned()
        })
        .collect();
    format!("t={timestamp},v1={}", v1.join(",v1="))
}

/// Posts a payment event with id `id`, signed with every one of `secrets`.
async fn post(w: &World, id: &str, secrets: &[&str]) -> (u16, Value) {
    let body = stripe_payment(id).to_string();
    let header = stripe_signature(&body, secrets, now_ms() / 1000);
    let headers = vec![(http::HeaderName::from_static("stripe-signature"), header.parse().unwrap())];
    w.post("stripe", body.as_bytes(), headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_signed_with_the_old_the_new_or_both_secrets_are_all_accepted_and_delivered_through_a_rotation() {
    let w = World::start().await;
    let old = local_secret("source/stripe");
    let (old, new) = (old.as_str(), NEW_STRIPE_SECRET);
    let mut sent: Vec<(String, &str, u16)> = Vec::new();

    for i in 0..5 {
        let id = format!("evt_before_{i}");
        sent.push((id.clone(), "old", post(&w, &id, &[old]).await.0));
    }
    // The operator puts the provider's new secret; the old one becomes AWSPREVIOUS.
    w.aws.put_secret("source/stripe", new).await;
    for i in 0..15 {
        let id = format!("evt_during_{i}");
        let (signed_with, secrets): (&str, &[&str]) = match i % 3 {
            0 => ("old", &[old]),
            1 => ("new", &[new]),
            _ => ("both", &[new, old]),
        };
        sent.push((id.clone(), signed_with, post(&w, &id, secrets).await.0));
    }
    for i in 0..5 {
        let id = format!("evt_after_{i}");
        sent.push((id.clone(), "new", post(&w, &id, &[new]).await.0));
    }

    let refused: Vec<_> = sent.iter().filter(|(_, _, status)| *status != 202).collect();
    assert!(refused.is_empty(), "refused within the grace period: {refused:?}");
    let delivered = || {
        let mut keys: Vec<String> =
            w.sink.received().iter().filter_map(|r| r.header("idempotency-key").map(str::to_owned)).collect();
        keys.sort();
        keys.dedup();
        keys.len()
    };
    assert!(eventually(Duration::from_secs(30), async || delivered() == sent.len()).await, "{}", delivered());
    settle(Duration::from_secs(1)).await;
    assert_eq!(w.sink.received().len(), sent.len(), "each event delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_two_second_grace_the_old_secret_is_refused_once_the_grace_is_over() {
    let w = World::start_with(|config| config.sources.get_mut("stripe").unwrap().rotation_grace_secs = 2).await;
    let old = local_secret("source/stripe");
    let (old, new) = (old.as_str(), NEW_STRIPE_SECRET);
    assert_eq!(post(&w, "evt_g_before", &[old]).await.0, 202);

    w.aws.put_secret("source/stripe", new).await;
    let rotated = Instant::now();
    assert_eq!(post(&w, "evt_g_new", &[new]).await.0, 202);
    assert_eq!(post(&w, "evt_g_old", &[old]).await.0, 202, "old secret {:?} after the rotation", rotated.elapsed());
    assert_eq!(post(&w, "evt_g_both", &[new, old]).await.0, 202);

    // CreatedDate has whole seconds: 2.2 s after the put, the version is 2 s old for sure.
    tokio::time::sleep(Duration::from_millis(2_200).saturating_sub(rotated.elapsed())).await;
    let (status, answer) = post(&w, "evt_g_old_late", &[old]).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("signature_mismatch")), "{answer}");
    assert_eq!(post(&w, "evt_g_new_late", &[new]).await.0, 202);
    assert_eq!(post(&w, "evt_g_both_late", &[new, old]).await.0, 202, "a header that also has the new signature");
    assert!(w.aws.history("stripe", "evt_g_old_late").await.is_empty(), "a refused event left a ledger record");
}

// ------------------------------------------------------------------ the rotator

fn secrets_manager(aws: &LocalAws) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&aws.sdk)
}

fn rotator(aws: &LocalAws) -> Rotator<AwsSecretVersions> {
    let config = Config::load(&repo().join("config/flows.toml")).expect("flow file");
    Rotator::new(AwsSecretVersions::new(secrets_manager(aws)), Stage::new(&aws.stack.stage).unwrap(), Arc::new(config))
}

fn secret_id(aws: &LocalAws, suffix: &str) -> String {
    format!("switchyard/{}/{suffix}", aws.stack.stage)
}

/// Turns rotation on as a schedule would. moto only does that through RotateSecret,
/// and without a function to call it moves AWSCURRENT to a copy of the value: that
/// copy is the current version the rotator then starts from.
async fn enable_rotation(aws: &LocalAws, id: &str) {
    secrets_manager(aws)
        .rotate_secret()
        .secret_id(id)
        .rotation_rules(RotationRulesType::builder().automatically_after_days(30).build())
        .rotate_immediately(false)
        .send()
        .await
        .expect("enable rotation");
}

/// Version id → its stages, from ListSecretVersionIds.
async fn stages(aws: &LocalAws, id: &str) -> BTreeMap<String, Vec<String>> {
    let out = secrets_manager(aws)
        .list_secret_version_ids()
        .secret_id(id)
        .include_deprecated(true)
        .send()
        .await
        .expect("list versions");
    out.versions()
        .iter()
        .map(|v| {
            let mut stages = v.version_stages().to_vec();
            stages.sort();
            (v.version_id().unwrap_or_default().to_owned(), stages)
        })
        .collect()
}

fn labelled<'a>(stages: &'a BTreeMap<String, Vec<String>>, label: &str) -> Vec<&'a str> {
    stages.iter().filter(|(_, s)| s.iter().any(|s| s == label)).map(|(id, _)| id.as_str()).collect()
}

async fn current_value(aws: &LocalAws, id: &str) -> String {
    let out = secrets_manager(aws).get_secret_value().secret_id(id).version_stage(AWSCURRENT).send().await.unwrap();
    out.secret_string().unwrap().to_owned()
}

fn event(id: &str, token: &str, step: &str) -> RotationEvent {
    RotationEvent { secret_id: id.to_owned(), client_request_token: token.to_owned(), step: step.to_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotators_four_steps_each_run_twice_leave_one_current_one_previous_and_no_pending_version() {
    let aws = LocalAws::start().await;
    let rotator = rotator(&aws);
    for suffix in ["destination/crm", "source/standard"] {
        let id = secret_id(&aws, suffix);
        enable_rotation(&aws, &id).await;
        let was_current = labelled(&stages(&aws, &id).await, AWSCURRENT)[0].to_owned();
        let old_value = current_value(&aws, &id).await;
        let token = uuid::Uuid::new_v4().to_string();

        for step in STEPS {
            rotator.handle(&event(&id, &token, step)).await.unwrap_or_else(|e| panic!("{suffix} {step}: {e}"));
            let once = stages(&aws, &id).await;
            rotator.handle(&event(&id, &token, step)).await.unwrap_or_else(|e| panic!("{suffix} {step} again: {e}"));
            assert_eq!(stages(&aws, &id).await, once, "{suffix}: {step} run twice changed the versions");
        }

        let after = stages(&aws, &id).await;
        assert_eq!(labelled(&after, AWSCURRENT), [token.as_str()], "{suffix}: {after:?}");
        assert_eq!(labelled(&after, AWSPREVIOUS), [was_current.as_str()], "{suffix}: {after:?}");
        assert!(labelled(&after, AWSPENDING).is_empty(), "{suffix}: AWSPENDING left on {after:?}");
        let new_value = current_value(&aws, &id).await;
        assert_ne!(new_value, old_value, "{suffix}: the value did not change");
        match suffix {
            "destination/crm" => {
                let key = serde_json::from_str::<Value>(&new_value).unwrap()["api_key"].as_str().unwrap().to_owned();
                assert!(key.len() == 40 && key.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
            _ => assert!(Scheme::StandardWebhooks.check_secret(&SigningSecret::new(new_value.as_str())).is_ok()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_events_the_rotator_cannot_act_on_fail_with_clear_errors_and_change_nothing() {
    let aws = LocalAws::start().await;
    let rotator = rotator(&aws);
    let crm = secret_id(&aws, "destination/crm");
    let acme = secret_id(&aws, "source/acme");
    enable_rotation(&aws, &crm).await;
    let before = (stages(&aws, &crm).await, stages(&aws, &acme).await);
    let token = uuid::Uuid::new_v4().to_string();

    let err = rotator.handle(&event(&acme, &token, "createSecret")).await.unwrap_err();
    assert_eq!(err, RotationError::NotEnabled(acme.clone()));
    let missing = secret_id(&aws, "destination/nope");
    let err = rotator.handle(&event(&missing, &token, "createSecret")).await.unwrap_err();
    assert_eq!(err, RotationError::NotFound(missing));
    for step in ["setSecret", "testSecret", "finishSecret"] {
        let err = rotator.handle(&event(&crm, &token, step)).await.unwrap_err();
        assert!(matches!(err, RotationError::UnknownVersion { .. }), "{step}: {err}");
    }
    let err = rotator.handle(&event(&crm, &token, "rotateSecret")).await.unwrap_err();
    assert!(matches!(err, RotationError::UnknownStep(_)), "{err}");
    assert_eq!((stages(&aws, &crm).await, stages(&aws, &acme).await), before);
}
