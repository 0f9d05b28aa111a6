//! Issue 9, protecting destinations: a rate limit shared by concurrent dispatchers, a
//! circuit breaker that lets only probes through during an outage, and a 429's
//! Retry-After that pauses the whole destination. Moto and a real HTTP sink; each
//! test counts what the destination actually received.
//!
//! Every test is in `slow_lane`: `make test` runs this file beside the other tests
//! (it spends about five minutes waiting on a rate limit and a 60-second outage) and
//! skips `slow_lane::` in the main run.

mod slow_lane {
    use std::collections::HashMap;
    use std::time::Duration;

    use serde_json::json;
    use switchyard_common::config::{BreakerPolicy, RateLimit};
    use switchyard_common::gate::{DynamoGate, GateStore};
    use switchyard_common::ledger::Status;
    use switchyard_e2e::{delivery, eventually, settle, World};
    use switchyard_local::sink::{Received, Reply};

    /// These tests measure time at the destination (1-second windows, a 5-second pause):
    /// run side by side on two cores, five mottos and their dispatchers starve each other
    /// and calls reach the sink later than their tokens allow. One at a time, they measure
    /// the gate, not the machine's overload.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn deliveries(prefix: &str, n: usize) -> Vec<switchyard_common::envelope::Delivery> {
        (0..n).map(|i| delivery(&format!("{prefix}-{i}"), json!({"n": i}))).collect()
    }

    /// 201 answers per Idempotency-Key.
    fn delivered(received: &[Received]) -> HashMap<String, usize> {
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for r in received.iter().filter(|r| r.answered == 201) {
            *by_key.entry(r.header("Idempotency-Key").unwrap_or_default().to_owned()).or_default() += 1;
        }
        by_key
    }

    /// A world whose CRM takes `per_second` calls a second, with a burst of as many.
    async fn crm_limited_to(per_second: u32) -> World {
        World::start_with(|c| {
            let crm = c.destinations.get_mut("crm").unwrap();
            crm.rate_limit = Some(RateLimit { per_second, burst: Some(per_second) });
        })
        .await
    }

    async fn enqueue(w: &World, all: &[switchyard_common::envelope::Delivery]) {
        for chunk in all.chunks(100) {
            w.aws.enqueue_deliveries(&w.aws.stack.dispatch_queue_url, chunk).await;
        }
    }

    /// Every delivery's ledger record: completed on its first (and only) attempt.
    async fn assert_each_completed_on_one_attempt(w: &World, prefix: &str, n: usize) {
        for i in 0..n {
            let history = w.aws.history("stripe", &format!("{prefix}-{i}")).await;
            let record =
                history.iter().find(|r| r.status == Status::Completed).unwrap_or_else(|| panic!("{i}: {history:?}"));
            assert_eq!(record.attempts, 1, "{prefix}-{i} was charged for being held: {record:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn four_dispatchers_sharing_a_10_per_second_limit_never_exceed_rate_plus_burst_and_charge_no_attempt() {
        let _one = ONE_AT_A_TIME.lock().await;
        let w = crm_limited_to(10).await;
        let _more = w.more_dispatchers(3).await;
        let all = deliveries("rl", 500);
        enqueue(&w, &all).await;

        let done = eventually(Duration::from_secs(240), async || delivered(&w.sink.received()).len() == 500);
        assert!(done.await, "only {} of 500 delivered", delivered(&w.sink.received()).len());
        settle(Duration::from_secs(2)).await;

        let received = w.sink.received();
        let times: Vec<i64> = received.iter().map(|r| r.received_at_ms).collect();
        let busiest = times.iter().map(|&a| times.iter().filter(|&&b| b >= a && b < a + 1_000).count()).max().unwrap();
        let first = times.iter().min().unwrap();
        let last = times.iter().max().unwrap();
        println!(
            "rate limit 10/s burst 10, 4 dispatchers: {} requests over {:.1} s, busiest 1-second window {busiest}",
            received.len(),
            (last - first) as f64 / 1_000.0
        );
        let start =
            times.iter().copied().find(|&a| times.iter().filter(|&&b| b >= a && b < a + 1_000).count() == busiest);
        let window: Vec<i64> =
            times.iter().filter(|&&b| start.is_some_and(|a| b >= a && b < a + 1_000)).map(|b| b - first).collect();
        assert!(
            busiest <= 20,
            "a 1-second window at the destination held {busiest} requests (limit 10 + burst 10): {window:?} ms"
        );
        assert_eq!(received.len(), 500, "a delivery was sent twice or failed");
        assert!(delivered(&received).values().all(|&n| n == 1));
        assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0, "the limiter parked something");
        assert_each_completed_on_one_attempt(&w, "rl", 500).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn during_a_60_second_outage_the_open_breaker_lets_only_probes_through_then_all_500_are_delivered_once() {
        let _one = ONE_AT_A_TIME.lock().await;
        let w = World::start_with(|c| {
            let crm = c.destinations.get_mut("crm").unwrap();
            crm.breaker = Some(BreakerPolicy { failures: 5, cooldown_secs: 10, ..BreakerPolicy::default() });
            crm.retry.max_attempts = 6;
        })
        .await;
        w.sink.answer_by_default(Reply::Status(503));
        let outage_start = switchyard_common::runtime::now_ms();
        let all = deliveries("out", 500);
        enqueue(&w, &all).await;
        settle(Duration::from_secs(60)).await;
        let outage_end = switchyard_common::runtime::now_ms();
        w.sink.answer_by_default(Reply::Status(201));

        let done = eventually(Duration::from_secs(240), async || delivered(&w.sink.received()).len() == 500);
        assert!(done.await, "only {} of 500 delivered after the outage", delivered(&w.sink.received()).len());
        settle(Duration::from_secs(2)).await;

        let gate = DynamoGate::new(aws_sdk_dynamodb::Client::new(&w.aws.sdk), &w.aws.stack.ledger_table);
        let state = gate.read("crm").await.unwrap();
        let transitions: Vec<(i64, &str, &str)> = state
            .transitions
            .iter()
            .map(|t| {
                let mut p = t.splitn(3, '|');
                (p.next().unwrap().parse().unwrap(), p.next().unwrap(), p.next().unwrap())
            })
            .collect();
        let opened_at = transitions.first().expect("the breaker never opened").0;
        assert_eq!(transitions[0].1, "open");
        assert_eq!(transitions.last().unwrap().1, "closed", "{transitions:?}");
        let reopened = transitions.iter().filter(|t| t.2 == "the half-open probe failed").count();

        let received = w.sink.received();
        let failed: Vec<&Received> = received.iter().filter(|r| r.answered == 503).collect();
        // Calls a dispatcher started before it could see the opening (its cache is at most
        // a second old) land in the first second; after that, only probes.
        let settled_open = opened_at + 1_500;
        let probes = failed.iter().filter(|r| r.received_at_ms > settled_open && r.received_at_ms < outage_end).count();
        let before_open = failed.iter().filter(|r| r.received_at_ms <= settled_open).count();
        println!(
            "60 s outage, breaker 5 failures / 10 s cool-down: {} failed calls in all, {before_open} before it opened \
         (+1.5 s), {probes} probes while open ({reopened} re-openings), then {} deliveries",
            failed.len(),
            delivered(&received).len()
        );
        assert!(opened_at - outage_start < 10_000, "the breaker took {} ms to open", opened_at - outage_start);
        assert_eq!(probes, reopened, "a call other than a probe reached the destination while the breaker was open");
        assert!((3..=7).contains(&probes), "{probes} probes in a 60 s outage with a 10 s cool-down");
        assert!(delivered(&received).values().all(|&n| n == 1), "a delivery was sent twice");
        assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0, "the outage parked deliveries");

        // The operator's view: closed again, the openings listed latest first.
        let out = w.aws.ops_command(env!("CARGO_BIN_EXE_ops")).args(["destinations", "--json"]).output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let crm = all.as_array().unwrap().iter().find(|d| d["destination"] == "crm").unwrap();
        assert_eq!(crm["state"]["breaker"], "closed");
        let shown = crm["state"]["transitions"].as_array().unwrap();
        assert!(shown[0].as_str().unwrap().contains("|closed|"), "{shown:?}");
        assert!(shown.iter().any(|t| t.as_str().unwrap().contains("|open|")), "{shown:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_429_with_retry_after_5_pauses_the_whole_destination_for_5_seconds() {
        const N: usize = 12;
        let _one = ONE_AT_A_TIME.lock().await;
        // A call a second: a call admitted just before the 429 was recorded on the gate
        // cannot be called back, so calls are spaced wider than that write takes.
        let w = crm_limited_to(1).await;
        let _more = w.more_dispatchers(1).await;
        w.sink.script([Reply::StatusWithRetryAfter(429, 5)]);
        enqueue(&w, &deliveries("ra", N)).await;

        let done = eventually(Duration::from_secs(90), async || delivered(&w.sink.received()).len() == N);
        assert!(done.await, "only {} of {N} delivered", delivered(&w.sink.received()).len());
        let received = w.sink.received();
        let throttled = received.iter().find(|r| r.answered == 429).expect("the 429 was answered").received_at_ms;
        let next = received.iter().map(|r| r.received_at_ms).filter(|&t| t > throttled).min().unwrap();
        println!("429 Retry-After: 5 at {throttled}; next request {} ms later", next - throttled);
        assert!(
            next - throttled >= 5_000,
            "a request reached the paused destination {} ms after the 429",
            next - throttled
        );
        assert_eq!(received.len(), N + 1);
        assert_each_completed_or_retried_once(&w, N).await;
    }

    /// The throttled delivery was charged its one failed attempt; no other was charged.
    async fn assert_each_completed_or_retried_once(w: &World, n: usize) {
        let mut attempts = Vec::new();
        for i in 0..n {
            let history = w.aws.history("stripe", &format!("ra-{i}")).await;
            let record = history.iter().find(|r| r.status == Status::Completed).expect("completed");
            attempts.push(record.attempts);
        }
        attempts.sort_unstable();
        assert_eq!(attempts.iter().filter(|&&a| a == 2).count(), 1, "{attempts:?}");
        assert_eq!(attempts.iter().filter(|&&a| a == 1).count(), n - 1, "{attempts:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn four_dispatchers_never_have_more_than_max_in_flight_calls_open_at_once() {
        let _one = ONE_AT_A_TIME.lock().await;
        let w = World::start_with(|c| c.destinations.get_mut("crm").unwrap().max_in_flight = Some(2)).await;
        let _more = w.more_dispatchers(3).await;
        let answer_after = Duration::from_millis(300);
        w.sink.answer_by_default(Reply::Delay(answer_after, 201));
        enqueue(&w, &deliveries("mif", 40)).await;

        let done = eventually(Duration::from_secs(180), async || delivered(&w.sink.received()).len() == 40);
        assert!(done.await, "only {} of 40 delivered", delivered(&w.sink.received()).len());
        // The last answers are still on their way (the sink counts a request as it arrives).
        settle(Duration::from_secs(2)).await;
        let starts: Vec<i64> = w.sink.received().iter().map(|r| r.received_at_ms).collect();
        // Each call is open for the 300 ms the destination takes to answer.
        let open = |t: i64| starts.iter().filter(|&&s| s <= t && t < s + answer_after.as_millis() as i64 - 10).count();
        let most = starts.iter().map(|&t| open(t)).max().unwrap();
        println!("max_in_flight 2, 4 dispatchers, 300 ms answers: at most {most} calls open at once");
        assert!(most <= 2, "{most} calls were open at once");
        assert_eq!(most, 2, "the slots were never both used: the test proves nothing");
        assert_eq!(w.sink.received().len(), 40);
        assert_each_completed_on_one_attempt(&w, "mif", 40).await;
    }

    /// Issue 9, kill it and see: the runner is SIGKILLed while it holds deliveries back
    /// (rate limit, in-flight slots, and a budget that makes every hold re-send a fresh
    /// copy: take slot → call → give back, send copy → delete), then restarted. Every
    /// event is delivered; a second copy reaches the destination only for a call answered
    /// just before the kill (its outcome never reached the ledger).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runner_killed_while_the_gate_holds_deliveries_loses_none_and_repeats_only_calls_in_doubt() {
        let _one = ONE_AT_A_TIME.lock().await;
        use switchyard_e2e::runner::{config_copy, serve_with, sink_lines, work_dir};
        let aws = switchyard_e2e::LocalAws::start().await;
        let dir = work_dir("gate-kill");
        // maxReceiveCount 100 − (9 × 10 + 10) = 0: every hold re-sends a fresh copy.
        let flows = config_copy(&dir, |text| {
            text.replacen(
                "retry = { max_attempts = 5, base_delay_ms = 2000, max_delay_ms = 60000 }",
                "retry = { max_attempts = 9, base_delay_ms = 500, max_delay_ms = 1000 }\n\
             rate_limit = { per_second = 5, burst = 5 }\nmax_in_flight = 2",
                1,
            )
        });
        assert!(std::fs::read_to_string(&flows).unwrap().contains("max_in_flight = 2"), "the crm entry changed");
        let (mut runner, banner) = serve_with(&aws, &dir, &flows, &[], false).await;
        let http = switchyard_e2e::http_client();
        let secret = switchyard_e2e::local_secret("source/stripe");
        let n = 60;
        for i in 0..n {
            let body = switchyard_e2e::stripe_payment(&format!("evt_gk_{i}")).to_string();
            let now = switchyard_common::runtime::now_ms() / 1000;
            let headers = switchyard_common::signature::sign(
                &switchyard_common::signature::Scheme::Stripe,
                &switchyard_common::signature::SigningSecret::new(&secret),
                body.as_bytes(),
                now,
                "",
            )
            .unwrap();
            let mut req = http.post(format!("{}/hooks/stripe", banner.intake)).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            assert_eq!(req.send().await.unwrap().status().as_u16(), 202);
        }
        let some = eventually(Duration::from_secs(30), async || sink_lines(&dir).len() >= 10);
        assert!(some.await, "nothing was delivered before the kill");
        runner.start_kill().unwrap();
        runner.wait().await.unwrap();
        let killed_at = switchyard_common::runtime::now_ms();
        let before = sink_lines(&dir).len();
        assert!(before < n, "everything was delivered before the kill: the test proves nothing");

        let (_runner, _) = serve_with(&aws, &dir, &flows, &[], false).await;
        let keys = |lines: &[serde_json::Value]| {
            let mut by_key: HashMap<String, Vec<i64>> = HashMap::new();
            for l in lines.iter().filter(|l| l["path"] == "/api/contacts") {
                let key = l["headers"]["idempotency-key"].as_str().unwrap_or_default().to_owned();
                by_key.entry(key).or_default().push(l["received_at_ms"].as_i64().unwrap());
            }
            by_key
        };
        let all = eventually(Duration::from_secs(180), async || keys(&sink_lines(&dir)).len() == n);
        assert!(all.await, "{} of {n} delivered after the restart", keys(&sink_lines(&dir)).len());
        settle(Duration::from_secs(3)).await;
        let by_key = keys(&sink_lines(&dir));
        let repeated: Vec<(&String, &Vec<i64>)> = by_key.iter().filter(|(_, t)| t.len() > 1).collect();
        println!(
            "gate kill: {before} delivered before the SIGKILL, {n} after the restart, {} calls in doubt repeated",
            repeated.len()
        );
        for (key, times) in &repeated {
            assert_eq!(times.len(), 2, "{key} sent {} times", times.len());
            assert!(
                killed_at - times[0] < 2_000,
                "{key} was sent again though its first call was answered well before the kill"
            );
        }
        for url in [&aws.stack.dispatch_dlq_url, &aws.stack.ingest_dlq_url] {
            assert_eq!(aws.depth(url).await, 0, "something was parked");
        }
    }
}
