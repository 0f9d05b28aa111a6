//! `make bench-dlq`: how long `switchyard-ops dlq list --flow F --reason TEXT` takes
//! over a large DLQ (default 10,000 parked deliveries: `DLQ_BENCH_N`), from the ledger's
//! parked index and with `--scan` reading the queue itself, and that the DLQ is
//! unchanged afterwards. Against its own moto server; prints the figures.

use std::time::Instant;

use switchyard_common::batch::parked_message;
use switchyard_common::failure::{Failure, FailureClass};
use switchyard_common::ledger::{IdempotencyStore, LedgerRecord, RecordKey, Status, RECORD_TTL};
use switchyard_common::queue::{OutboundMessage, Queue, SqsQueue};
use switchyard_common::runtime::now_ms;
use switchyard_e2e::{delivery, LocalAws};

const FLOWS: [&str; 2] = ["stripe-payment-to-crm-contact", "shopify-order-to-erp"];
const REASONS: [&str; 3] =
    ["HTTP 422 from crm: owner not found", "retry budget exhausted after 5 attempts; last error: HTTP 503", "contract"];

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("DLQ_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let aws = LocalAws::start().await;
    let ledger = aws.ledger();
    let url = aws.stack.dispatch_dlq_url.clone();
    let started = Instant::now();
    let now = now_ms();
    let mut batch = Vec::new();
    let mut expected = 0;
    for i in 0..n {
        let (flow, reason) = (FLOWS[i % 2], REASONS[i % 3]);
        expected += usize::from(flow == FLOWS[0] && reason == REASONS[0]);
        let mut d = delivery(&format!("evt_bench_{i}"), serde_json::json!({"n": i}));
        d.flow = flow.to_owned();
        d.delivery_id = switchyard_common::envelope::Delivery::id_for("stripe", &d.event_id, flow, 1);
        let mut r = LedgerRecord::new(
            RecordKey::delivery("stripe", &d.event_id, flow, 1),
            Status::Parked,
            now - 1_000 + (i as i64 % 1_000),
            now / 1000 + RECORD_TTL.as_secs() as i64,
        );
        r.flow = Some(flow.to_owned());
        r.destination = Some("crm".to_owned());
        r.error_class = Some(FailureClass::Terminal.as_str().to_owned());
        r.reason = Some(reason.to_owned());
        r.dlq = Some("dispatch".to_owned());
        r.attempts = 5;
        ledger.put_record(&r).await.expect("ledger write");
        batch.push(
            parked_message(&serde_json::to_string(&d).unwrap(), &Failure::terminal(reason), 5, "dispatcher")
                .attribute("delivery_id", &d.delivery_id)
                .attribute("flow", flow)
                .attribute("destination", "crm"),
        );
        if batch.len() == 100 || i + 1 == n {
            let messages: Vec<OutboundMessage> = std::mem::take(&mut batch);
            SqsQueue::new(aws.sqs()).send_all(&url, &messages).await.expect("DLQ send");
        }
    }
    println!("dlq-bench: parked {n} deliveries (ledger + DLQ) in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(aws.visible_and_in_flight(&url).await, (n as u64, 0));

    for scan in [false, true] {
        // Built next to this binary (`cargo build -p switchyard-e2e --bins`).
        let ops = std::env::current_exe().expect("own path").with_file_name("ops");
        let mut cmd = tokio::process::Command::new(ops);
        cmd.env("AWS_ENDPOINT_URL", &aws.endpoint)
            .env("SWITCHYARD_STAGE", "dev")
            .env("SWITCHYARD_LEDGER_TABLE", &aws.stack.ledger_table)
            .args(["--json", "dlq", "list", "--dlq", "dispatch", "--flow", FLOWS[0], "--reason", "owner not found"]);
        if scan {
            cmd.arg("--scan");
        }
        let t = Instant::now();
        let out = cmd.output().await.expect("run switchyard-ops");
        let secs = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let total = listed["total"].as_u64().unwrap_or(0) as usize;
        let how = if scan { "--scan (reads the queue)" } else { "ledger parked index" };
        println!("dlq-bench: dlq list --flow F --reason TEXT over {n}: {total} listed (expected {expected}) in {secs:.2} s via {how}");
        assert_eq!(total, expected, "the listing missed some");
        let after = aws.visible_and_in_flight(&url).await;
        println!("dlq-bench: DLQ afterwards: {} visible, {} in flight (before: {n}, 0)", after.0, after.1);
        assert_eq!(after, (n as u64, 0), "the listing disturbed the DLQ");
    }
}
