//! Issue 10: what a cold start asks AWS for, counted by the project's proxy between
//! the functions and moto. Intake and the dispatcher read all their secrets in one
//! `BatchGetSecretValue` (one connection, not one per secret) — current versions only,
//! even inside a rotation's grace — and the first event then needs no secret read.

use std::sync::Arc;

use switchyard_common::config::Config;
use switchyard_e2e::proxy::{since, Counts, Tally};
use switchyard_e2e::{config_for, signed_stripe_request, stripe_payment, LocalAws};

fn secret_calls(counts: &Counts) -> Vec<(String, u64)> {
    counts
        .iter()
        .filter(|((_, service, _), _)| service == "secretsmanager")
        .map(|((_, _, op), c)| (op.clone(), c.calls))
        .collect()
}

/// The pipeline's dependencies with every AWS call going through a counting proxy.
async fn counted(aws: &LocalAws, config: Config) -> (switchyard_local::pipeline::Deps, Tally) {
    let tally = Tally::default();
    let proxy = tally.listen("functions", &aws.endpoint).await.expect("proxy");
    let sdk = aws.sdk.to_builder().endpoint_url(format!("http://{proxy}")).build();
    let deps = switchyard_local::pipeline::Deps::new(&sdk, &aws.stack, Arc::new(config)).await.expect("deps");
    (deps, tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_intake_reads_every_sources_secret_in_one_call_and_its_first_event_reads_none() {
    let aws = LocalAws::start().await;
    // The local stack's secrets were all just created, so every source is inside its
    // rotation grace: the previous versions are still not read here (only on a
    // signature the current one refuses).
    let config = config_for("127.0.0.1:9".parse().unwrap());
    assert!(config.sources.values().all(|s| s.rotation_grace_secs > 0));
    let sources = config.sources.len() as u64;
    assert!(sources > 1, "the flow file has several sources");
    let (deps, tally) = counted(&aws, config).await;

    let before = tally.snapshot();
    switchyard_intake::warm_up(&deps.intake).await;
    let warm = since(&before, &tally.snapshot());
    assert_eq!(secret_calls(&warm), [("BatchGetSecretValue".to_owned(), 1)], "{warm:?}");

    let before = tally.snapshot();
    let body = stripe_payment("evt_cold_1").to_string();
    let now = switchyard_common::runtime::now_ms();
    let answer = switchyard_intake::handle(&deps.intake, signed_stripe_request(&body), now + 10_000).await;
    assert_eq!(answer.status_code, 202, "{:?}", answer.body);
    let first = since(&before, &tally.snapshot());
    assert!(secret_calls(&first).is_empty(), "the first event read a secret: {first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_dispatcher_reads_every_destinations_secret_in_one_call() {
    let aws = LocalAws::start().await;
    let (deps, tally) = counted(&aws, config_for("127.0.0.1:9".parse().unwrap())).await;
    let before = tally.snapshot();
    switchyard_dispatcher::warm_up(&deps.dispatcher).await;
    let warm = since(&before, &tally.snapshot());
    assert_eq!(secret_calls(&warm), [("BatchGetSecretValue".to_owned(), 1)], "{warm:?}");
}
