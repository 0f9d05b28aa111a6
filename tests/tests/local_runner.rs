//! Issue 7, part 6: the local runner tells the truth. `switchyard-local serve` resolves
//! destinations as a deployed function does (`SWITCHYARD_DESTINATION_{NAME}_URL`),
//! the example destinations follow a sink moved with `--sink`, and the banner names
//! where each destination's deliveries go — which is where they arrive.

use std::time::Duration;

use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, Scheme, SigningSecret};
use switchyard_e2e::runner::{serve, sink_lines, work_dir};
use switchyard_e2e::{eventually, local_secret, stripe_payment, LocalAws};
use switchyard_local::sink::Sink;

async fn post_event(intake: &str, event_id: &str) {
    let body = stripe_payment(event_id).to_string();
    let headers =
        sign(&Scheme::Stripe, &SigningSecret::new(local_secret("source/stripe")), body.as_bytes(), now_ms() / 1000, "")
            .unwrap();
    let mut req = switchyard_e2e::http_client().post(format!("{intake}/hooks/stripe")).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_moved_with_dash_dash_sink_takes_the_example_crms_deliveries_as_the_banner_says() {
    let aws = LocalAws::start().await;
    let dir = work_dir("moved-sink");
    let (_runner, banner) = serve(&aws, &dir, &[], false).await;

    let crm = banner.routes.iter().find(|(name, ..)| name == "crm").expect("a banner line for crm");
    assert_ne!(banner.sink, "http://127.0.0.1:3001", "the sink was moved to a free port");
    assert_eq!((crm.1.as_str(), crm.2.as_str()), (banner.sink.as_str(), "(the local sink)"));

    post_event(&banner.intake, "evt_moved_sink").await;
    let arrived =
        eventually(Duration::from_secs(30), async || sink_lines(&dir).iter().any(|r| r["path"] == "/api/contacts"))
            .await;
    assert!(arrived, "the delivery reached the sink at {} (its file {})", banner.sink, dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_url_variable_takes_the_deliveries_and_the_banner_names_it() {
    let aws = LocalAws::start().await;
    let dir = work_dir("env-destination");
    let api = Sink::default();
    let api_addr = api.clone().start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{api_addr}");
    let (_runner, banner) = serve(&aws, &dir, &[("SWITCHYARD_DESTINATION_CRM_URL", url.clone())], false).await;

    let crm = banner.routes.iter().find(|(name, ..)| name == "crm").expect("a banner line for crm");
    assert_eq!((crm.1.as_str(), crm.2.as_str()), (url.as_str(), "(SWITCHYARD_DESTINATION_CRM_URL)"));

    post_event(&banner.intake, "evt_env_destination").await;
    let arrived =
        eventually(Duration::from_secs(30), async || api.received().iter().any(|r| r.path == "/api/contacts")).await;
    assert!(arrived, "the delivery reached {url}, where the banner said it would go");
    assert!(sink_lines(&dir).is_empty(), "nothing went to the runner's own sink");
}

/// Intake's one ledger write comes after the enqueue. An intake killed between the
/// two (SIGKILL while that write is on its way) has put the event on the queue and
/// written nothing: the provider, which got no answer, retries; the retry is accepted
/// (202, not "in progress" and not a duplicate), and the two envelopes on the queue
/// make one call at the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intake_killed_between_its_enqueue_and_its_ledger_write_accepts_the_retry_and_delivers_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use switchyard_common::ledger::{RecordKey, Status};
    use switchyard_e2e::proxy::{Hold, Tally};

    let aws = LocalAws::start().await;
    let holding = Arc::new(AtomicBool::new(true));
    let flag = holding.clone();
    let hold: Hold = Arc::new(move |service: &str, operation: &str, body: &[u8]| {
        let text = String::from_utf8_lossy(body);
        flag.load(Ordering::SeqCst)
            && service == "dynamodb"
            && operation == "UpdateItem"
            && text.contains("\"INTAKE\"")
            && text.contains("COMPLETED")
    });
    let tally = Tally::default();
    let (proxy, held) = tally.listen_holding("runner", &aws.endpoint, Some(hold)).await.unwrap();
    let dir = work_dir("intake-kill");
    let endpoint = [("AWS_ENDPOINT_URL", format!("http://{proxy}"))];
    let (mut runner, banner) = serve(&aws, &dir, &endpoint, false).await;

    let event_id = "evt_intake_killed";
    let body = stripe_payment(event_id).to_string();
    let post = |intake: String, body: String| async move {
        let headers = sign(
            &Scheme::Stripe,
            &SigningSecret::new(local_secret("source/stripe")),
            body.as_bytes(),
            now_ms() / 1000,
            "",
        )
        .unwrap();
        let mut req = switchyard_e2e::http_client().post(format!("{intake}/hooks/stripe")).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send().await.map(|r| r.status().as_u16())
    };
    let first = tokio::spawn(post(banner.intake.clone(), body.clone()));
    let reached = eventually(Duration::from_secs(30), async || held.load(Ordering::SeqCst) > 0).await;
    assert!(reached, "intake never reached its ledger write");
    runner.kill().await.unwrap(); // SIGKILL
    assert!(first.await.unwrap().is_err(), "the killed intake answered nothing");
    // The event was enqueued before the write that was held (the only envelope there
    // is came from it; the mapper's sends follow from receiving it).
    let sends: u64 =
        tally.snapshot().iter().filter(|((_, _, op), _)| op == "SendMessageBatch").map(|(_, c)| c.calls).sum();
    assert!(sends >= 1, "intake enqueued the event before its ledger write");
    // (The killed runner's own mapper and dispatcher may have delivered it already.)
    let history = aws.history("stripe", event_id).await;
    assert!(history.iter().all(|r| r.key.sk != "INTAKE"), "intake wrote nothing before the kill: {history:?}");

    holding.store(false, Ordering::SeqCst);
    let (_runner, banner) = serve(&aws, &dir, &endpoint, false).await;
    let retry = post(banner.intake.clone(), body).await.unwrap();
    assert_eq!(retry, 202, "the provider's retry is accepted");

    // Calls at the destination for this event (its one Idempotency-Key).
    let calls = |lines: &[serde_json::Value]| lines.iter().filter(|l| l["path"] == "/api/contacts").count();
    // Within the killed runner's visibility timeout (120 s) or after it: the mapper
    // now archives each envelope first, so the killed runner may have held the
    // delivery's message when it died, and that copy delivers once it is visible.
    let delivered = eventually(Duration::from_secs(180), async || calls(&sink_lines(&dir)) >= 1).await;
    assert!(delivered, "the event was delivered after the restart");
    // Both envelopes (the killed intake's and the retry's) are through once the
    // queues are empty; a message the killed runner had received comes back after
    // its visibility timeout (120 s).
    let drained = eventually(Duration::from_secs(180), async || {
        aws.visible_and_in_flight(&aws.stack.ingest_queue_url).await == (0, 0)
            && aws.visible_and_in_flight(&aws.stack.dispatch_queue_url).await == (0, 0)
    })
    .await;
    assert!(
        drained,
        "the queues drained: ingest {:?}, dispatch {:?}",
        aws.visible_and_in_flight(&aws.stack.ingest_queue_url).await,
        aws.visible_and_in_flight(&aws.stack.dispatch_queue_url).await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls(&sink_lines(&dir)), 1, "one call at the destination for two envelopes");
    let history = aws.history("stripe", event_id).await;
    let intake = history.iter().find(|r| r.key == RecordKey::intake("stripe", event_id)).expect("intake record");
    assert_eq!(intake.status, Status::Completed);
    assert_eq!(intake.attempts, 1, "one accepted write");
}
