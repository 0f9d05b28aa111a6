//! `make bench-pipeline`: what one delivered event costs. N signed Stripe events
//! (`BENCH_N`, default 1,000) go through the release binaries of intake, mapper and
//! dispatcher, each a process of its own under the project's Lambda Runtime API
//! emulator (`switchyard_e2e::lambda`), against a moto server of its own and a local
//! destination. The event source mappings are played as Lambda plays them (receive
//! up to `BENCH_BATCH`, invoke, delete what succeeded), in phases: every event into
//! intake, then the ingest queue through the mapper, then the dispatch queue through
//! the dispatcher.
//!
//! Two counting proxies stand between the callers and the endpoint (one for the
//! functions, one for the event source mappings), so every AWS call is counted by
//! caller, service and operation, with what AWS bills for it. CPU comes from the
//! functions' own processes (`/proc/PID/stat`), never the endpoint's or this one's.
//! A warm-up of `BENCH_WARMUP` events (default 20) runs first and is not counted.
//!
//! Prints a table and writes the figures as JSON to `BENCH_OUT` (default
//! `.local/bench/pipeline-b{BATCH}.json`), the input of `make cost`. Exits non-zero
//! unless every event was delivered exactly once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde_json::{json, Value};
use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, Scheme, SigningSecret};
use switchyard_e2e::iam;
use switchyard_e2e::lambda::{Answer, Function};
use switchyard_e2e::proxy::{index_items, largest_item_bytes, since, Counts, Tally};
use switchyard_e2e::{local_secret, repo, stripe_payment, LocalAws};
use switchyard_local::poller::{poll_once, Mapping};
use switchyard_local::sink::Sink;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Where the release binaries are.
fn binaries() -> PathBuf {
    std::env::var("BENCH_BIN_DIR").map(PathBuf::from).unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| repo().join("target"));
        target.join("release")
    })
}

struct Functions {
    intake: Function,
    mapper: Function,
    dispatcher: Function,
}

impl Functions {
    fn all(&self) -> [&Function; 3] {
        [&self.intake, &self.mapper, &self.dispatcher]
    }
}

/// One function's figures over the measured run.
#[derive(Default, Clone)]
struct FnFigures {
    cpu: Duration,
    invocations: usize,
    log_bytes: u64,
    log_lines: u64,
    peak_rss_kib: u64,
    /// What Lambda bills: each invocation's duration rounded up to the millisecond.
    billed_ms: u64,
}

struct Snapshot {
    cpu: Vec<Duration>,
    logs: Vec<(u64, u64)>,
    invocations: Vec<usize>,
    calls: Counts,
}

fn snapshot(fns: &Functions, tally: &Tally) -> Snapshot {
    Snapshot {
        cpu: fns.all().iter().map(|f| f.cpu()).collect(),
        logs: fns.all().iter().map(|f| f.logs()).collect(),
        invocations: fns.all().iter().map(|f| f.api.durations().len()).collect(),
        calls: tally.snapshot(),
    }
}

#[tokio::main]
async fn main() {
    let n = setting("BENCH_N", 1_000);
    let batch = setting("BENCH_BATCH", 10) as i32;
    let warmup = setting("BENCH_WARMUP", 20);
    let out = std::env::var("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(format!(".local/bench/pipeline-b{batch}.json")));
    let bin = binaries();
    for name in ["intake", "mapper", "dispatcher"] {
        if !bin.join(name).exists() {
            eprintln!("no {} (run `make bench-pipeline`, which builds it)", bin.join(name).display());
            std::process::exit(2);
        }
    }

    let aws = LocalAws::start().await;
    let tally = Tally::default();
    let esm_proxy = tally.listen("event source mappings", &aws.endpoint).await.expect("mappings' proxy");
    // The destination keeps only a count per Idempotency-Key (exactly once is checked
    // on it), not the requests.
    let sink = Sink::counting_keys();
    let sink_addr = sink.clone().start_apart("127.0.0.1:0".parse().expect("addr")).expect("sink");

    let s = &aws.stack;
    // The event archive is on by default in the template (ArchiveEvents=true), so it is
    // here too: the mapper's PutObject is part of what an event costs. BENCH_ARCHIVE=0
    // measures a stage without it.
    let archive = match (std::env::var("BENCH_ARCHIVE").as_deref(), &s.archive_bucket) {
        (Ok("0"), _) => None,
        (_, Some(bucket)) => Some(bucket.clone()),
        (_, None) => {
            eprintln!("the local stack has no archive bucket (set BENCH_ARCHIVE=0 to measure without one)");
            std::process::exit(2);
        }
    };
    let env: Vec<(String, String)> = [
        ("SWITCHYARD_STAGE", s.stage.clone()),
        ("SWITCHYARD_LEDGER_TABLE", s.ledger_table.clone()),
        ("SWITCHYARD_INGEST_QUEUE_URL", s.ingest_queue_url.clone()),
        ("SWITCHYARD_INGEST_DLQ_URL", s.ingest_dlq_url.clone()),
        ("SWITCHYARD_DISPATCH_QUEUE_URL", s.dispatch_queue_url.clone()),
        ("SWITCHYARD_DISPATCH_DLQ_URL", s.dispatch_dlq_url.clone()),
        ("SWITCHYARD_DISPATCH_FIFO_QUEUE_URL", s.dispatch_fifo_queue_url.clone()),
        ("SWITCHYARD_DISPATCH_FIFO_DLQ_URL", s.dispatch_fifo_dlq_url.clone()),
        ("SWITCHYARD_DISPATCHER_TIMEOUT_SECS", s.dispatcher_timeout_secs.to_string()),
        ("SWITCHYARD_DESTINATION_CRM_URL", format!("http://{sink_addr}")),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ]
    .into_iter()
    .chain(archive.iter().map(|bucket| ("SWITCHYARD_ARCHIVE_BUCKET", bucket.clone())))
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let logs = repo().join(".local/bench");
    std::fs::create_dir_all(&logs).expect("create .local/bench");
    // Each function reaches the endpoint through a proxy of its own: its calls are
    // counted under its name.
    let start = |name: &'static str| {
        let (mut env, logs, bin, tally, endpoint) =
            (env.clone(), logs.clone(), bin.clone(), tally.clone(), aws.endpoint.clone());
        async move {
            let proxy = tally.listen(name, &endpoint).await.expect("proxy");
            env.push(("AWS_ENDPOINT_URL".to_owned(), format!("http://{proxy}")));
            Function::start(name, &bin.join(name), &env, Some(logs.join(format!("{name}.log"))))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    // One at a time, so that each cold start has the machine to itself.
    let (mut init, mut up) = (Vec::new(), Vec::new());
    for name in ["intake", "mapper", "dispatcher"] {
        let f = start(name).await;
        let ready = f.api.wait_ready(Duration::from_secs(10)).await.unwrap_or_else(|e| panic!("{e}"));
        init.push((f.started, ready));
        up.push(f);
    }
    let mut up = up.into_iter();
    let mut next = || up.next().expect("three functions");
    let fns = Functions { intake: next(), mapper: next(), dispatcher: next() };

    let esm_sdk = aws.sdk.to_builder().endpoint_url(format!("http://{esm_proxy}")).build();
    let esm = aws_sdk_sqs::Client::new(&esm_sdk);
    run(&fns, &esm, &aws, batch, 0, warmup).await;
    // BENCH_PERF=1: `perf record` on each function over the measured run
    // (`make profile`, with a build that keeps its symbols).
    let perf: Vec<tokio::process::Child> = if std::env::var("BENCH_PERF").is_ok_and(|v| v == "1") {
        fns.all()
            .iter()
            .map(|f| {
                tokio::process::Command::new("perf")
                    .args(["record", "-F", "2000", "-g", "-o"])
                    .arg(logs.join(format!("{}.perf.data", f.name)))
                    .args(["-p", &f.pid().to_string()])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("perf (BENCH_PERF=1)")
            })
            .collect()
    } else {
        Vec::new()
    };
    if !perf.is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = snapshot(&fns, &tally);
    let started = Instant::now();
    let phases = run(&fns, &esm, &aws, batch, warmup, n).await;
    let wall = started.elapsed();
    let after = snapshot(&fns, &tally);
    for mut p in perf {
        if let Some(pid) = p.id() {
            let _ = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status();
        }
        let _ = p.wait().await;
    }

    // Exactly once: every event's idempotency key arrived once, none twice.
    let keys = sink.key_counts();
    let twice = keys.values().filter(|&&c| c > 1).count();
    let delivered = keys.len();
    let ok = delivered == warmup + n && twice == 0;

    let mut per_fn = BTreeMap::new();
    for (i, f) in fns.all().iter().enumerate() {
        per_fn.insert(
            f.name.clone(),
            FnFigures {
                cpu: after.cpu[i].saturating_sub(before.cpu[i]),
                invocations: phases.invocations[i],
                log_bytes: after.logs[i].0 - before.logs[i].0,
                log_lines: after.logs[i].1 - before.logs[i].1,
                peak_rss_kib: f.peak_rss_kib(),
                billed_ms: f.api.durations()[before.invocations[i]..after.invocations[i]]
                    .iter()
                    .map(|d| d.as_micros().div_ceil(1_000) as u64)
                    .sum(),
            },
        );
    }
    let calls = since(&before.calls, &after.calls);
    let dynamo = aws_sdk_dynamodb::Client::new(&aws.sdk);
    let item_bytes = largest_item_bytes(&dynamo, &aws.stack.ledger_table).await;
    // Index items per event, over warm-up and run alike (every event is alike).
    let index_writes: BTreeMap<String, f64> = index_items(&dynamo, &aws.stack.ledger_table)
        .await
        .into_iter()
        .map(|(k, v)| (k, v as f64 / (warmup + n) as f64))
        .collect();

    let mut report = report(n, batch, wall, &per_fn, &calls, &phases.intake_latency, item_bytes, delivered, twice);
    report["index_write_units_per_event"] = json!(index_writes);
    report["archive"] = json!(archive.is_some());
    // Cold start, as the warm-up met it: exec → asking for the first event, then the
    // first invocation (intake: one signed event; the others: the first batch).
    // Of each, how long the function waited on the endpoint (moto, through its proxy):
    // the rest is its own code, the Runtime API and the machine.
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    for (i, f) in fns.all().iter().enumerate() {
        let (started, ready) = init[i];
        let (init_calls, init_wait) = tally.waiting(&f.name, started, ready);
        let v = &mut report["functions"][&f.name];
        v["init_ms"] = json!(ms(ready.duration_since(started)));
        v["init_endpoint_ms"] = json!(ms(init_wait));
        v["init_calls"] = json!(init_calls);
        if let Some((given, answered)) = f.api.first_invocation() {
            let (calls, wait) = tally.waiting(&f.name, given, answered);
            v["first_invocation_ms"] = json!(ms(answered.duration_since(given)));
            v["first_invocation_endpoint_ms"] = json!(ms(wait));
            v["first_invocation_calls"] = json!(calls);
        }
    }
    print_report(&report);
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report).expect("json")).expect("write figures");
    println!("figures written to {}", out.display());
    // Stopped before their Runtime API goes (which they would take for a broken one).
    for f in [fns.intake, fns.mapper, fns.dispatcher] {
        let mut child = f.child;
        let _ = child.kill().await;
    }
    if let Some(bucket) = &archive {
        let archived = archived_events(&aws, bucket).await;
        if archived < warmup + n {
            eprintln!("the archive is on but holds {archived} of the {} events", warmup + n);
            std::process::exit(1);
        }
    }
    if !ok {
        eprintln!("NOT exactly once: {delivered} of {} delivered, {twice} more than once", warmup + n);
        std::process::exit(1);
    }
    // moto enforces no IAM: every call counted here must be one the caller's role allows.
    let template = iam::template();
    let refused: Vec<String> = calls
        .keys()
        .filter(|(caller, _, _)| ["intake", "mapper", "dispatcher"].contains(&caller.as_str()))
        .filter_map(|(caller, service, op)| {
            let action = iam::action(service, op);
            (!iam::covers(&iam::allowed(&template, &iam::role_of(caller)), &action))
                .then(|| format!("{caller}: {action}"))
        })
        .collect();
    if !refused.is_empty() {
        eprintln!("calls the template's roles do not allow (refused in AWS): {refused:?}");
        std::process::exit(1);
    }
    println!("every call above is allowed by its function's role in infra/template.yaml");
}

struct Phases {
    invocations: [usize; 3],
    intake_latency: Vec<Duration>,
}

/// Events `first..first + count` through the three functions, phase by phase.
async fn run(
    fns: &Functions,
    esm: &aws_sdk_sqs::Client,
    aws: &LocalAws,
    batch: i32,
    first: usize,
    count: usize,
) -> Phases {
    let secret = SigningSecret::new(local_secret("source/stripe"));
    let mut latency = Vec::with_capacity(count);
    for i in first..first + count {
        let mut event = stripe_payment(&format!("evt_bench_{i:07}"));
        event["data"]["object"]["metadata"]["order_id"] = json!(format!("{}", 100_000 + i));
        let body = serde_json::to_vec(&event).expect("json");
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", http::HeaderValue::from_static("application/json"));
        for (k, v) in sign(&Scheme::Stripe, &secret, &body, now_ms() / 1000, "").expect("sign") {
            headers.insert(k, v);
        }
        let uri: http::Uri = "/hooks/stripe".parse().expect("uri");
        let gw = switchyard_local::intake_http::gateway_event(http::Method::POST, &uri, headers, &body);
        let payload = serde_json::to_vec(&gw).expect("event json");
        let t = Instant::now();
        let answer = fns.intake.api.invoke(payload, Duration::from_secs(10)).await.unwrap_or_else(|e| panic!("{e}"));
        latency.push(t.elapsed());
        match answer {
            Answer::Response(b) => {
                let v: Value = serde_json::from_slice(&b).unwrap_or_default();
                assert_eq!(v["statusCode"], 202, "intake answered {v}");
            }
            Answer::Error(e) => panic!("intake failed: {}", String::from_utf8_lossy(&e)),
        }
    }
    let mapper = drain(esm, &aws.stack.ingest_queue_url, batch, &fns.mapper, count).await;
    let dispatcher = drain(esm, &aws.stack.dispatch_queue_url, batch, &fns.dispatcher, count).await;
    Phases { invocations: [count, mapper, dispatcher], intake_latency: latency }
}

/// Plays the event source mapping on `queue` until `expect` messages were handled
/// successfully; returns how many invocations that took.
async fn drain(esm: &aws_sdk_sqs::Client, queue: &str, batch: i32, function: &Function, expect: usize) -> usize {
    let mapping = Mapping { queue_url: queue.to_owned(), batch_size: batch, wait_secs: 0 };
    let done = Arc::new(std::sync::Mutex::new((0usize, 0usize)));
    let handler = |event: SqsEvent| {
        let done = done.clone();
        async move {
            let records = event.records.len();
            let payload = serde_json::to_vec(&event).expect("sqs event json");
            let answer = function.api.invoke(payload, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e}"));
            let response: SqsBatchResponse = match answer {
                Answer::Response(b) => serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{}: {e}", function.name)),
                Answer::Error(e) => panic!("{} failed: {}", function.name, String::from_utf8_lossy(&e)),
            };
            let mut d = done.lock().expect("lock");
            d.0 += 1;
            d.1 += records - response.batch_item_failures.len();
            response
        }
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while done.lock().expect("lock").1 < expect {
        assert!(Instant::now() < deadline, "{}: only {:?} handled in 10 minutes", function.name, done.lock());
        if poll_once(esm, &mapping, &handler).await.unwrap_or_else(|e| panic!("receive: {e}")) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let invocations = done.lock().expect("lock").0;
    invocations
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1_000.0
}

#[allow(clippy::too_many_arguments)]
fn report(
    n: usize,
    batch: i32,
    wall: Duration,
    per_fn: &BTreeMap<String, FnFigures>,
    calls: &Counts,
    intake_latency: &[Duration],
    item_bytes: usize,
    delivered: usize,
    twice: usize,
) -> Value {
    let per_event = |x: f64| x / n as f64;
    let mut latency = intake_latency.to_vec();
    latency.sort();
    let functions: serde_json::Map<String, Value> = per_fn
        .iter()
        .map(|(name, f)| {
            (
                name.clone(),
                json!({
                    "cpu_ms_per_event": per_event(f.cpu.as_secs_f64() * 1_000.0),
                    "invocations": f.invocations,
                    "invocations_per_event": per_event(f.invocations as f64),
                    "log_bytes_per_event": per_event(f.log_bytes as f64),
                    "log_lines_per_event": per_event(f.log_lines as f64),
                    "peak_rss_kib": f.peak_rss_kib,
                    "billed_ms_per_event": per_event(f.billed_ms as f64),
                }),
            )
        })
        .collect();
    let calls_json: Vec<Value> = calls
        .iter()
        .map(|((caller, service, op), c)| {
            json!({
                "caller": caller, "service": service, "operation": op,
                "calls_per_event": per_event(c.calls as f64),
                "billed_per_event": per_event(c.billed),
            })
        })
        .collect();
    json!({
        "events": n,
        "batch_size": batch,
        "wall_secs": wall.as_secs_f64(),
        "events_per_sec": n as f64 / wall.as_secs_f64(),
        "intake_latency_ms": { "p50": percentile(&latency, 0.50), "p99": percentile(&latency, 0.99) },
        "cpu_ms_per_event": per_fn.values().map(|f| per_event(f.cpu.as_secs_f64() * 1_000.0)).sum::<f64>(),
        "functions": functions,
        "calls": calls_json,
        "ledger_largest_item_bytes": item_bytes,
        "delivered": delivered,
        "delivered_more_than_once": twice,
    })
}

fn print_report(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "\n{} events, batch size {}, archive {}: {:.1} events/s (phases in sequence, one instance each); intake answer p50 {:.2} ms, p99 {:.2} ms",
        r["events"], r["batch_size"], if r["archive"] == true { "on" } else { "off" }, f(&r["events_per_sec"]), f(&r["intake_latency_ms"]["p50"]), f(&r["intake_latency_ms"]["p99"])
    );
    println!(
        "\n{:<12} {:>10} {:>12} {:>11} {:>11} {:>9}",
        "function", "CPU ms/ev", "invokes/ev", "log B/ev", "lines/ev", "peak RSS"
    );
    for (name, v) in r["functions"].as_object().into_iter().flatten() {
        println!(
            "{:<12} {:>10.3} {:>12.3} {:>11.0} {:>11.2} {:>6} MB",
            name,
            f(&v["cpu_ms_per_event"]),
            f(&v["invocations_per_event"]),
            f(&v["log_bytes_per_event"]),
            f(&v["log_lines_per_event"]),
            v["peak_rss_kib"].as_u64().unwrap_or(0) / 1024
        );
    }
    println!("{:<12} {:>10.3}", "total", f(&r["cpu_ms_per_event"]));
    println!("\ncold start (exec → ready; first invocation), of which waiting on the endpoint (calls):");
    for (name, v) in r["functions"].as_object().into_iter().flatten() {
        println!(
            "  {:<12} init {:>6.1} ms ({:>5.1} ms, {}), first invocation {:>6.1} ms ({:>5.1} ms, {}); own {:>5.1} ms",
            name,
            f(&v["init_ms"]),
            f(&v["init_endpoint_ms"]),
            v["init_calls"].as_u64().unwrap_or(0),
            f(&v["first_invocation_ms"]),
            f(&v["first_invocation_endpoint_ms"]),
            v["first_invocation_calls"].as_u64().unwrap_or(0),
            f(&v["init_ms"]) + f(&v["first_invocation_ms"])
                - f(&v["init_endpoint_ms"])
                - f(&v["first_invocation_endpoint_ms"]),
        );
    }
    println!("\n{:<24} {:<16} {:<22} {:>9} {:>12}", "caller", "service", "operation", "calls/ev", "billed/ev");
    let (mut total_fn, mut wru) = (0.0, 0.0);
    for c in r["calls"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<16} {:<22} {:>9.3} {:>12.3}",
            c["caller"].as_str().unwrap_or_default(),
            c["service"].as_str().unwrap_or_default(),
            c["operation"].as_str().unwrap_or_default(),
            f(&c["calls_per_event"]),
            f(&c["billed_per_event"])
        );
        if c["caller"] != "event source mappings" {
            total_fn += f(&c["calls_per_event"]);
        }
        let op = c["operation"].as_str().unwrap_or_default();
        if c["service"] == "dynamodb"
            && ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"].contains(&op)
        {
            wru += f(&c["billed_per_event"]);
        }
    }
    let index: f64 = r["index_write_units_per_event"].as_object().into_iter().flatten().map(|(_, v)| f(v)).sum();
    println!(
        "\nAWS calls per event from the functions: {total_fn:.2}; DynamoDB write units per event: {wru:.2} on the table \
         (largest ledger item {} B) + {index:.2} in its indexes {}",
        r["ledger_largest_item_bytes"], r["index_write_units_per_event"]
    );
    println!("delivered {} (more than once: {})", r["delivered"], r["delivered_more_than_once"]);
}

/// How many distinct events the archive bucket holds (each read once, whatever the
/// objects they were written in).
async fn archived_events(aws: &LocalAws, bucket: &str) -> usize {
    use switchyard_common::archive::{Archive, EnvelopeReader, S3Archive, ENVELOPES};
    let archive = S3Archive::new(&aws.sdk, bucket);
    let mut reader = EnvelopeReader::default();
    let mut events = 0;
    for object in archive.list(ENVELOPES).await.expect("list the archive") {
        let bytes = archive.get(&object.key).await.expect("read the archive").unwrap_or_default();
        events += reader.read(&object, &bytes).expect("archived envelopes").len();
    }
    events
}
