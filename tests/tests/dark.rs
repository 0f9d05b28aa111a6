//! Issue 11: dark versions beside the live one, and backtests. A dark version maps
//! every event and records the request it would send in the archive bucket (moto's
//! S3), sending nothing; `switchyard-ops flows diff` compares it event by event with
//! what the live version sent, and `flows backtest` maps archived events with a new
//! version without sending anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use switchyard_common::archive::{Archive, S3Archive};
use switchyard_common::config::{Config, Flow};
use switchyard_common::envelope::{Delivery, Mode};
use switchyard_common::mapping::JqProgram;
use switchyard_common::recorded::REQUESTS;
use switchyard_e2e::{eventually, repo, settle, stripe_payment, World};

const FLOW: &str = "stripe-payment-to-crm-contact";
const WAIT: Duration = Duration::from_secs(120);

/// The live mapping's text.
fn live_mapping() -> String {
    std::fs::read_to_string(repo().join("config/mappings/stripe_payment_to_crm_contact.jq")).expect("mapping")
}

/// The live mapping with one field changed: contacts become leads.
fn lead_mapping() -> String {
    let text = live_mapping();
    assert!(text.contains(r#"status: "customer""#), "the live mapping changed; update this test");
    text.replace(r#"status: "customer""#, r#"status: "lead""#)
}

/// A version of the Stripe flow beside v1 with its own mapping.
fn version(config: &Config, version: u32, mode: Mode, mapping: &str) -> Flow {
    let mapping = JqProgram::compile(&format!("v{version}.jq"), mapping).expect("mapping compiles");
    config.flow(FLOW, 1).expect("the Stripe flow").another_version(version, mode, mapping)
}

/// A payment whose `amount_received` is `amount`.
fn payment(event_id: &str, amount: u64) -> Value {
    let mut p = stripe_payment(event_id);
    p["data"]["object"]["amount_received"] = amount.into();
    p
}

fn archive(w: &World) -> S3Archive {
    S3Archive::new(&w.aws.sdk, w.aws.stack.archive_bucket.clone().expect("the local stack has an archive bucket"))
}

async fn recorded(w: &World, version: u32) -> usize {
    archive(w).list(&format!("{REQUESTS}{FLOW}/v{version}/")).await.map(|l| l.len()).unwrap_or(0)
}

/// Idempotency keys of the requests the CRM received.
fn received_keys(w: &World) -> Vec<String> {
    w.sink.received().iter().map(|r| r.header("idempotency-key").unwrap_or_default().to_owned()).collect()
}

async fn ops_json(w: &World, config: Option<&Path>, args: &[&str]) -> Value {
    let mut cmd = w.aws.ops_command(env!("CARGO_BIN_EXE_ops"));
    if let Some(path) = config {
        cmd.env("SWITCHYARD_CONFIG", path);
    }
    let out = cmd.arg("--json").args(args).output().await.expect("run switchyard-ops");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dark_versions_beside_live_v1_record_what_they_would_send_and_flows_diff_names_each_difference() {
    let w = World::start_with(|c| {
        let flows = [
            version(c, 2, Mode::Dark, &lead_mapping()),
            version(c, 3, Mode::Dark, &live_mapping()),
            // Refuses round amounts: those events are parked for v4 only.
            version(
                c,
                4,
                Mode::Dark,
                &live_mapping().replace(
                    r#"elif ($pi.receipt_email"#,
                    r#"elif ($pi.amount_received % 5) == 0 then error("v4 refuses round amounts")
  elif ($pi.receipt_email"#,
                ),
            ),
        ];
        c.flows.extend(flows);
    })
    .await;
    for n in 0..50u64 {
        let (status, answer) = w.post_stripe(&payment(&format!("evt_dark_{n}"), 1_001 + n).to_string()).await;
        assert_eq!(status, 202, "{answer}");
    }
    assert!(
        eventually(WAIT, async || recorded(&w, 1).await == 50
            && recorded(&w, 2).await == 50
            && recorded(&w, 3).await == 50
            && recorded(&w, 4).await == 40)
        .await,
        "recorded v1..v4: {} {} {} {}",
        recorded(&w, 1).await,
        recorded(&w, 2).await,
        recorded(&w, 3).await,
        recorded(&w, 4).await
    );
    settle(Duration::from_secs(2)).await;
    // Only v1 sent anything, each event once.
    let mut keys = received_keys(&w);
    keys.sort();
    let mut expected: Vec<String> =
        (0..50).map(|n| Delivery::default_key("stripe", &format!("evt_dark_{n}"), FLOW, 1)).collect();
    expected.sort();
    assert_eq!(keys, expected, "a dark version sent something, or v1 sent twice");

    // v2 changed exactly one field of every request.
    let c = ops_json(&w, None, &["flows", "diff", FLOW, "--from", "1", "--to", "2", "--since", "1h"]).await;
    assert_eq!(
        (c["events"].as_u64(), c["different"].as_u64(), c["identical"].as_u64()),
        (Some(50), Some(50), Some(0)),
        "{c}"
    );
    let changes = c["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{c}");
    assert_eq!(changes[0]["fields"], serde_json::json!(["body.status"]), "{c}");
    let diff = changes[0]["diff"].as_str().unwrap();
    assert!(diff.contains("-    \"status\": \"customer\"") && diff.contains("+    \"status\": \"lead\""), "{diff}");
    let email = stripe_payment("x")["data"]["object"]["receipt_email"].as_str().unwrap().to_owned();
    assert!(!diff.contains(&email), "the customer's email in the diff: {diff}");

    // v3 maps exactly as v1 does.
    let c = ops_json(&w, None, &["flows", "diff", FLOW, "--from", "1", "--to", "3", "--since", "1h"]).await;
    assert_eq!(
        (c["identical"].as_u64(), c["different"].as_u64(), c["only_from"].as_u64()),
        (Some(50), Some(0), Some(0)),
        "{c}"
    );

    // v4 parked the 10 round amounts: present on v1's side only, with the reason.
    let c = ops_json(&w, None, &["flows", "diff", FLOW, "--from", "1", "--to", "4", "--since", "1h"]).await;
    assert_eq!(
        (c["identical"].as_u64(), c["only_from"].as_u64(), c["only_to"].as_u64()),
        (Some(40), Some(10), Some(0)),
        "{c}"
    );
    let reason = c["only_from_reasons"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("parked:") && reason.contains("v4 refuses round amounts"), "{reason}");

    // The text form starts with the summary.
    let out = w
        .aws
        .ops_command(env!("CARGO_BIN_EXE_ops"))
        .args(["flows", "diff", FLOW, "--from", "1", "--to", "2"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("diff {FLOW} v1 against v2: 50 events\n  identical: 0\n  different: 50")),
        "{text}"
    );
}

/// The repository's flow files directory copied to a fresh directory, with `extra`
/// appended to flows.toml and `files` written beside it.
fn flow_file_with(extra: &str, files: &[(&str, String)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-backtest-{}-{}",
        std::process::id(),
        switchyard_common::runtime::now_ms()
    ));
    for sub in ["mappings", "contracts"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(repo().join("config").join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
        }
    }
    let flows = std::fs::read_to_string(repo().join("config/flows.toml")).unwrap();
    std::fs::write(dir.join("flows.toml"), format!("{flows}\n{extra}")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir.join("flows.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_over_200_archived_events_compares_a_new_version_with_the_live_one_and_sends_nothing() {
    let w = World::start().await;
    for n in 0..200u64 {
        let (status, answer) = w.post_stripe(&payment(&format!("evt_bt_{n}"), 2_000 + n).to_string()).await;
        assert_eq!(status, 202, "{answer}");
    }
    assert!(eventually(WAIT, async || received_keys(&w).len() == 200).await, "{} delivered", received_keys(&w).len());
    assert!(
        eventually(WAIT, async || {
            let depths = w.aws.all_depths().await;
            let mut idle = true;
            for (queue, _) in &depths {
                idle &= w.aws.visible_and_in_flight(queue).await == (0, 0);
            }
            idle
        })
        .await,
        "the queues did not drain"
    );

    // v2 is in the flow file but off: reviewed, not deployed.
    let v2 = format!(
        "[[flows]]\nname = \"{FLOW}\"\nversion = 2\nsource = \"stripe\"\nevent_types = [\"payment_intent.succeeded\"]\n\
         mapping = \"mappings/v2.jq\"\ncontract = \"contracts/crm_contact.schema.json\"\ndestination = \"crm\"\n\
         method = \"POST\"\npath = \"/api/contacts\"\nmode = \"off\"\n"
    );
    let file = flow_file_with(&v2, &[("mappings/v2.jq", lead_mapping())]);
    let c = ops_json(&w, Some(&file), &["flows", "backtest", FLOW, "--version", "2", "--since", "1h"]).await;
    assert_eq!((c["kind"].as_str(), c["from"].as_u64(), c["to"].as_u64()), (Some("backtest"), Some(1), Some(2)), "{c}");
    assert_eq!(
        (c["events"].as_u64(), c["different"].as_u64(), c["identical"].as_u64()),
        (Some(200), Some(200), Some(0)),
        "{c}"
    );
    assert_eq!(c["changes"][0]["fields"], serde_json::json!(["body.status"]), "{c}");
    // Against itself: all identical.
    let c = ops_json(&w, Some(&file), &["flows", "backtest", FLOW, "--version", "1", "--since", "1h"]).await;
    assert_eq!((c["events"].as_u64(), c["identical"].as_u64()), (Some(200), Some(200)), "{c}");

    // Nothing was sent or queued by the backtests.
    settle(Duration::from_secs(2)).await;
    assert_eq!(received_keys(&w).len(), 200, "a backtest reached the destination");
    for (queue, depth) in w.aws.all_depths().await {
        assert_eq!(depth, 0, "{queue} holds something");
        assert_eq!(w.aws.visible_and_in_flight(&queue).await, (0, 0), "{queue}");
    }
    let history = w.aws.history("stripe", "evt_bt_0").await;
    assert!(history.iter().all(|r| !r.key.sk.ends_with("#v2")), "a backtest wrote to the ledger: {history:?}");
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}
