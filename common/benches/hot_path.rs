//! The per-event work of the pipeline, without I/O: what one event costs in CPU.
//! `make bench` runs this; the figures are per event.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use switchyard_common::config::Config;
use switchyard_common::envelope::Envelope;
use switchyard_common::signature::{sign, verify, Scheme, SigningSecret};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn payload() -> Vec<u8> {
    std::fs::read(repo().join("events/stripe/payment_intent.succeeded.json")).unwrap()
}

fn signature(c: &mut Criterion) {
    let body = payload();
    let secret = SigningSecret::new("whsec_bench");
    let now = 1_763_892_000;
    let mut headers = http::HeaderMap::new();
    for (k, v) in sign(&Scheme::Stripe, &secret, &body, now, "").unwrap() {
        headers.insert(k, v);
    }
    let mut g = c.benchmark_group("intake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_stripe_signature", |b| {
        b.iter(|| verify(&Scheme::Stripe, &headers, &body, std::slice::from_ref(&secret), now, 300).unwrap())
    });
    g.bench_function("parse_payload_and_build_envelope", |b| {
        b.iter(|| {
            let data: Value = serde_json::from_slice(&body).unwrap();
            let e = Envelope::new("stripe", "evt".into(), "t".into(), "2026-11-23T00:00:00Z".into(), data, "c".into());
            serde_json::to_string(&e).unwrap()
        })
    });
    g.finish();
}

fn mapping(c: &mut Criterion) {
    let config = Config::load(&repo().join("config/flows.toml")).unwrap();
    let flow = &config.flows[0];
    let data: Value = serde_json::from_slice(&payload()).unwrap();
    let mut g = c.benchmark_group("mapper");
    g.throughput(Throughput::Elements(1));
    g.bench_function("jq_mapping", |b| b.iter(|| flow.mapping.run_one(&data).unwrap()));
    let mapped = flow.mapping.run_one(&data).unwrap();
    let contract = flow.contract.as_ref().unwrap();
    g.bench_function("contract_validation", |b| b.iter(|| contract.validate(&mapped).unwrap()));
    // What intake's and the dispatcher's cold start do with the flow file ...
    g.bench_function("load_flow_file", |b| b.iter(|| Config::load(&repo().join("config/flows.toml")).unwrap()));
    // ... and the mapper's: its jq programs and the contracts compiled too.
    g.bench_function("load_and_compile_flow_file", |b| {
        b.iter(|| {
            let config = Config::load(&repo().join("config/flows.toml")).unwrap();
            config.check_programs(switchyard_common::config::Programs::Flows).unwrap();
            config.check_contracts().unwrap();
            config
        })
    });
    g.finish();
}

criterion_group!(benches, signature, mapping);
criterion_main!(benches);
