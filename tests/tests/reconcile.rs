//! Issue 11: reconciliation. Stripe payments are delivered to a CRM that keeps them
//! (a real local HTTP server); the CRM then silently loses 3 contacts and has 2
//! altered. The reconciler reads every delivery of the window back (re-mapped from
//! the archive, moto's S3, checked against the ledger) and names exactly those 5;
//! `switchyard-ops reconcile report --repair` restores the 3 missing ones through the
//! guarded replay.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_common::archive::{Archive, S3Archive};
use switchyard_common::ledger::{RecordKey, Status};
use switchyard_common::names::Stage;
use switchyard_common::runtime::now_ms;
use switchyard_e2e::crm::Crm;
use switchyard_e2e::{eventually, settle, stripe_payment, World};
use switchyard_reconciler::{Deps, Report};

const FLOW: &str = "stripe-payment-to-crm-contact";
const WAIT: Duration = Duration::from_secs(90);

fn email(n: usize) -> String {
    format!("contact{n}@example.com")
}

fn reconciler(w: &World) -> Deps {
    let bucket = w.aws.stack.archive_bucket.clone().expect("the local stack has an archive bucket");
    let stage = Stage::new(&w.aws.stack.stage).unwrap();
    Deps {
        config: w.config.clone(),
        ledger: Arc::new(w.aws.ledger()),
        archive: Arc::new(S3Archive::new(&w.aws.sdk, bucket)) as Arc<dyn Archive>,
        reads: switchyard_dispatcher::Deps::for_reads(&w.aws.sdk, w.config.clone(), stage, &w.aws.stack.ledger_table)
            .unwrap(),
    }
}

async fn reconcile(w: &World) -> Report {
    let deps = reconciler(w);
    let flow = w.config.live_flow(FLOW).expect("the Stripe flow");
    switchyard_reconciler::run(&deps, flow, now_ms() - 3_600_000, now_ms()).await.expect("reconciled")
}

fn ids(findings: &[switchyard_reconciler::Finding]) -> BTreeSet<String> {
    findings.iter().map(|f| f.event_id.clone()).collect()
}

async fn ops(w: &World, args: &[&str]) -> (i32, String) {
    let out = w.aws.ops_command(env!("CARGO_BIN_EXE_ops")).args(args).output().await.expect("run switchyard-ops");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_names_exactly_the_lost_and_altered_contacts_and_repair_restores_the_lost_ones() {
    let crm = Crm::default();
    let addr = crm.start_apart("127.0.0.1:0".parse().unwrap()).expect("crm");
    let w = World::start_with(|c| c.destinations.get_mut("crm").unwrap().base_url = format!("http://{addr}")).await;
    for n in 0..20 {
        let mut p = stripe_payment(&format!("evt_rc_{n}"));
        p["data"]["object"]["receipt_email"] = Value::String(email(n));
        assert_eq!(w.post_stripe(&p.to_string()).await.0, 202);
    }
    let completed = async || {
        let mut done = 0;
        for n in 0..20 {
            let id = format!("evt_rc_{n}");
            let key = RecordKey::delivery("stripe", &id, FLOW, 1);
            done += w.aws.history("stripe", &id).await.iter().any(|r| r.key == key && r.status == Status::Completed)
                as usize;
        }
        done
    };
    assert!(eventually(WAIT, async || crm.len() == 20 && completed().await == 20).await, "{} in the CRM", crm.len());

    // Behind switchyard's back: 3 lost, 2 altered, 1 made by someone else.
    let (lost, altered) = ([2, 5, 11], [7, 13]);
    for n in lost {
        crm.lose(&email(n));
    }
    for n in altered {
        crm.alter(&email(n), "name", json!("Someone Else"));
    }
    crm.insert(json!({"email": "stranger@example.com", "name": "S", "status": "customer"}));

    let report = reconcile(&w).await;
    let named = |ns: &[usize]| ns.iter().map(|n| format!("evt_rc_{n}")).collect::<BTreeSet<_>>();
    assert_eq!(report.checked, 20, "{report:?}");
    assert_eq!(report.equal, 15, "{report:?}");
    assert_eq!(ids(&report.missing), named(&lost), "{report:?}");
    assert_eq!(ids(&report.different), named(&altered), "{report:?}");
    assert!(report.different.iter().all(|f| f.fields == ["name"]), "{report:?}");
    assert!(report.unreadable.is_empty(), "{report:?}");
    assert_eq!(report.unknown.len(), 1, "the contact no delivery made: {report:?}");
    assert!(!report.unknown[0].contains("stranger@example.com"), "an email in the report: {report:?}");

    // The operator's view is the stored report.
    let (code, text) = ops(&w, &["--json", "reconcile", "report", FLOW]).await;
    assert_eq!(code, 0, "{text}");
    let stored: Report = serde_json::from_str(text.lines().next().unwrap()).expect("the report as JSON");
    assert_eq!(stored, report);
    let (_, text) = ops(&w, &["reconcile", "report", FLOW]).await;
    assert!(
        text.contains("  missing: 3\n  different: 2\n") && text.contains("different  stripe/evt_rc_7 (name)"),
        "{text}"
    );

    // A dry run sends nothing; the repair sends the 3 missing ones, nothing else.
    let (code, text) = ops(&w, &["reconcile", "report", FLOW, "--repair"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("would replay"), "{text}");
    settle(Duration::from_secs(2)).await;
    assert!(lost.iter().all(|&n| !crm.has(&email(n))), "a dry run repaired something");
    let (code, text) =
        ops(&w, &["reconcile", "report", FLOW, "--repair", "--reason", "the CRM lost them", "--yes"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("replayed 3"), "{text}");
    assert!(eventually(WAIT, async || lost.iter().all(|&n| crm.has(&email(n)))).await, "not restored");

    let after = reconcile(&w).await;
    assert!(after.missing.is_empty(), "{after:?}");
    assert_eq!((after.equal, ids(&after.different)), (18, named(&altered)), "{after:?}");
}
