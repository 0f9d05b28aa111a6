//! A counting proxy in front of the local AWS endpoint: every request the functions
//! make passes through it and is counted by service and operation, with what AWS
//! bills for it — SQS requests per 64 KiB of payload, DynamoDB write and read units
//! (a write is one unit per KiB of item: the ledger's items are checked to be under
//! one KiB by [`largest_item_bytes`]; a read one unit per 4 KiB, half for an eventually
//! consistent one). It forwards over kept-alive connections, as the SDK talks to AWS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use serde::Serialize;

/// One operation's figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OpCount {
    pub calls: u64,
    /// What AWS bills: SQS requests (64 KiB chunks), DynamoDB capacity units, else calls.
    pub billed: f64,
    pub request_bytes: u64,
}

/// `(caller, service, operation)` → figures.
pub type Counts = BTreeMap<(String, String, String), OpCount>;

/// Which requests a proxy holds (never forwards, never answers) while it is set:
/// `(service, operation, body)`. What a test uses to stop a process between two of
/// its calls and kill it there.
pub type Hold = Arc<dyn Fn(&str, &str, &[u8]) -> bool + Send + Sync>;

/// Caller → when each of its first [`TIMED_CALLS`] calls was received and answered.
type Timeline = BTreeMap<String, Vec<(Instant, Instant)>>;

/// How many calls per caller keep their times: enough for a cold start and its first
/// invocations, bounded for long runs.
const TIMED_CALLS: usize = 256;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    caller: String,
    client: reqwest::Client,
    counts: Arc<Mutex<Counts>>,
    timeline: Arc<Mutex<Timeline>>,
    hold: Option<Hold>,
    held: Arc<std::sync::atomic::AtomicU64>,
}

/// Counting proxies sharing one tally; each listener names its caller (the functions,
/// the event source mappings …).
#[derive(Clone, Default)]
pub struct Tally {
    counts: Arc<Mutex<Counts>>,
    timeline: Arc<Mutex<Timeline>>,
}

impl Tally {
    /// Listens on a free port, forwarding to `upstream`, counting as `caller`.
    pub async fn listen(&self, caller: &str, upstream: &str) -> std::io::Result<SocketAddr> {
        self.listen_holding(caller, upstream, None).await.map(|(addr, _)| addr)
    }

    /// [`Tally::listen`], holding the requests `hold` picks; also returns how many it
    /// has held so far. Held requests are counted only if they are ever forwarded.
    pub async fn listen_holding(
        &self,
        caller: &str,
        upstream: &str,
        hold: Option<Hold>,
    ) -> std::io::Result<(SocketAddr, Arc<std::sync::atomic::AtomicU64>)> {
        let held = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            caller: caller.to_owned(),
            client: crate::http_client_builder().pool_max_idle_per_host(64).build().map_err(std::io::Error::other)?,
            counts: self.counts.clone(),
            timeline: self.timeline.clone(),
            hold,
            held: held.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(forward).with_state(proxy);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((addr, held))
    }

    pub fn snapshot(&self) -> Counts {
        self.counts.lock().expect("tally lock").clone()
    }

    /// How long, within `[from, to]`, `caller` had at least one call waiting on the
    /// endpoint (calls in flight together count once), and how many calls it started
    /// there. What a cold start spent waiting on the local endpoint, not in its own code.
    pub fn waiting(&self, caller: &str, from: Instant, to: Instant) -> (usize, Duration) {
        let timeline = self.timeline.lock().expect("tally lock");
        let spans = timeline.get(caller).map(Vec::as_slice).unwrap_or_default();
        let calls = spans.iter().filter(|(start, _)| *start >= from && *start <= to).count();
        (calls, covered(spans, from, to))
    }
}

/// The length of the union of `spans`, each clipped to `[from, to]`.
fn covered(spans: &[(Instant, Instant)], from: Instant, to: Instant) -> Duration {
    let mut clipped: Vec<(Instant, Instant)> =
        spans.iter().map(|&(s, e)| (s.max(from), e.min(to))).filter(|(s, e)| s < e).collect();
    clipped.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (s, e) in clipped {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    total + current.map_or(Duration::ZERO, |(s, e)| e - s)
}

/// `after − before`, operation by operation (those with no calls in between left out).
pub fn since(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .filter_map(|(k, a)| {
            let b = before.get(k).cloned().unwrap_or_default();
            let d = OpCount {
                calls: a.calls - b.calls,
                billed: a.billed - b.billed,
                request_bytes: a.request_bytes - b.request_bytes,
            };
            (d.calls > 0).then(|| (k.clone(), d))
        })
        .collect()
}

async fn forward(State(proxy): State<Proxy>, req: Request) -> Response {
    let received = Instant::now();
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, 64 * 1024 * 1024).await else {
        return Response::builder().status(413).body(Body::empty()).unwrap_or_default();
    };
    let (service, operation) = identify(&parts.headers, &bytes, parts.method.as_str());
    if proxy.hold.as_ref().is_some_and(|h| h(&service, &operation, &bytes)) {
        proxy.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = proxy.client.request(parts.method.clone(), format!("{}{path}", proxy.upstream));
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "connection" | "content-length" | "transfer-encoding") {
            out = out.header(name, value);
        }
    }
    let answer = out.body(bytes.to_vec()).send().await;
    let Ok(answer) = answer else {
        return Response::builder().status(502).body(Body::from("upstream unreachable")).unwrap_or_default();
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.unwrap_or_default();
    let billed = billed_units(&service, &operation, &bytes, &body);
    {
        let mut counts = proxy.counts.lock().expect("tally lock");
        let c = counts.entry((proxy.caller.clone(), service, operation)).or_default();
        c.calls += 1;
        c.billed += billed;
        c.request_bytes += bytes.len() as u64;
    }
    {
        let mut timeline = proxy.timeline.lock().expect("tally lock");
        let spans = timeline.entry(proxy.caller.clone()).or_default();
        if spans.len() < TIMED_CALLS {
            spans.push((received, Instant::now()));
        }
    }
    let mut response = Response::builder().status(status.as_u16());
    for (name, value) in &headers {
        if !matches!(name.as_str(), "connection" | "content-length" | "transfer-encoding") {
            response = response.header(name, value);
        }
    }
    // An endpoint that closes every connection makes the callers reconnect for every
    // call: passed on, so that the proxy does not hide what that costs them.
    if headers.get("connection").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("close")) {
        response = response.header("connection", "close");
    }
    response.body(Body::from(body)).unwrap_or_default()
}

/// The service (from the signature's credential scope) and operation (the JSON
/// protocols' `X-Amz-Target`, the query protocol's `Action`, else the method).
fn identify(headers: &http::HeaderMap, body: &[u8], method: &str) -> (String, String) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    // Credential=AKID/20261202/us-east-1/dynamodb/aws4_request
    let service = auth.split("Credential=").nth(1).and_then(|c| c.split('/').nth(3)).unwrap_or("unknown").to_owned();
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let operation = match target.and_then(|t| t.rsplit('.').next()) {
        Some(op) => op.to_owned(),
        None => std::str::from_utf8(body)
            .ok()
            .and_then(|b| b.split('&').find_map(|kv| kv.strip_prefix("Action=")))
            .map(str::to_owned)
            .unwrap_or_else(|| method.to_owned()),
    };
    (service, operation)
}

/// What AWS bills for one call. Unknown shapes count as one request.
fn billed_units(service: &str, operation: &str, request: &[u8], response: &[u8]) -> f64 {
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap_or_default();
    match service {
        // Each 64 KiB chunk of a request's payload is one billed request.
        "sqs" => (request.len().max(1) as f64 / 65_536.0).ceil(),
        "dynamodb" => match operation {
            "PutItem" | "UpdateItem" | "DeleteItem" => 1.0,
            "BatchWriteItem" => json(request)["RequestItems"]
                .as_object()
                .map(|t| t.values().filter_map(|v| v.as_array()).map(|a| a.len()).sum::<usize>() as f64)
                .unwrap_or(1.0),
            // Transactions cost two units per item.
            "TransactWriteItems" => 2.0 * json(request)["TransactItems"].as_array().map_or(1, |a| a.len()) as f64,
            "GetItem" | "Query" | "Scan" => {
                let consistent = json(request)["ConsistentRead"].as_bool().unwrap_or(false);
                let units = (response.len().max(1) as f64 / 4_096.0).ceil();
                if consistent {
                    units
                } else {
                    units / 2.0
                }
            }
            _ => 1.0,
        },
        _ => 1.0,
    }
}

/// The size DynamoDB bills an item for (attribute names and values, per its sizing
/// rules), of the largest item in `table`: a write costs one unit per started KiB.
pub async fn largest_item_bytes(client: &aws_sdk_dynamodb::Client, table: &str) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue;
    fn size(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.len().div_ceil(2) + 1,
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|x| 1 + size(x)).sum::<usize>(),
            AttributeValue::M(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() + size(x)).sum::<usize>(),
            AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
            AttributeValue::Ns(n) => n.iter().map(|x| x.len().div_ceil(2) + 1).sum(),
            _ => 0,
        }
    }
    let mut largest = 0;
    let mut start = None;
    loop {
        let Ok(page) = client.scan().table_name(table).set_exclusive_start_key(start).send().await else { break };
        for item in page.items() {
            largest = largest.max(item.iter().map(|(k, v)| k.len() + size(v)).sum());
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    largest
}

/// How many items each of `table`'s global secondary indexes holds. An item enters an
/// index by a write that costs as much again in that index (a KEYS_ONLY index is not
/// written again by updates that leave its keys alone): the index's share of the
/// write units, which the table's own calls do not show.
pub async fn index_items(client: &aws_sdk_dynamodb::Client, table: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(described) = client.describe_table().table_name(table).send().await else { return out };
    let names: Vec<String> = described
        .table()
        .map(|t| t.global_secondary_indexes().iter().filter_map(|i| i.index_name().map(str::to_owned)).collect())
        .unwrap_or_default();
    for name in names {
        let mut count = 0u64;
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(table)
                .index_name(&name)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await;
            let Ok(page) = page else { break };
            count += page.count().max(0) as u64;
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        out.insert(name, count);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::covered;
    use std::time::{Duration, Instant};

    #[test]
    fn waiting_time_counts_overlapping_calls_once_and_only_inside_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // three concurrent calls 10–20, 12–25, 15–18; one alone 30–40; one outside the window
        let spans = [(at(10), at(20)), (at(12), at(25)), (at(15), at(18)), (at(30), at(40)), (at(50), at(60))];
        assert_eq!(covered(&spans, at(0), at(45)), Duration::from_millis(15 + 10));
        // clipped at both ends: 12–25 and 30–35
        assert_eq!(covered(&spans, at(12), at(35)), Duration::from_millis(13 + 5));
        assert_eq!(covered(&spans, at(41), at(49)), Duration::ZERO);
        assert_eq!(covered(&[], at(0), at(100)), Duration::ZERO);
    }
}
