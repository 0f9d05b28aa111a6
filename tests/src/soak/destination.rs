//! The soak's destination: a small HTTP/1.1 API written on a raw socket so that it can
//! misbehave the way real networks do — 429 (some with `Retry-After`), 503, answers
//! slower than the caller's timeout, connections reset without an answer, and a full
//! outage during which nothing listens on its port.
//!
//! Otherwise it behaves like a careful real API: a request's `Idempotency-Key` is
//! remembered with its answer; a repeated key gets the stored answer and causes no
//! second effect (an effect and its stored answer are written together, so a
//! concurrent repeat finds the stored answer too). It counts
//! how often a key already answered 2xx comes back — after an answer the caller saw
//! (the window between a 2xx and the ledger's write, which only a dying worker opens)
//! or after a slow answer the caller had given up on (expected: the caller retries).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How often each fault is drawn, in percent of requests.
#[derive(Debug, Clone)]
pub struct Faults {
    pub too_many_requests: u32,
    pub unavailable: u32,
    pub slow: u32,
    pub reset: u32,
    /// How long a slow answer takes (longer than the destination's `timeout_ms`).
    pub slow_for: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self { too_many_requests: 4, unavailable: 4, slow: 1, reset: 2, slow_for: Duration::from_millis(1_500) }
    }
}

/// One effect: the first 2xx answer to a key.
#[derive(Debug, Clone)]
pub struct Effect {
    pub key: String,
    /// `total_spent_minor` of the body: the soak puts the event's number there.
    pub tag: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Stored {
    status: u16,
    /// False when the answer was slower than the caller's timeout.
    seen: bool,
}

#[derive(Default)]
struct State {
    stored: HashMap<String, Stored>,
    effects: Vec<Effect>,
    answers: BTreeMap<String, u64>,
    replays_after_seen: u64,
    replays_after_slow: u64,
    replayed_keys: Vec<String>,
}

/// What the destination saw, for the tally.
#[derive(Debug, Clone)]
pub struct Report {
    pub effects: Vec<Effect>,
    /// Requests by what they got: a status, `slow 201`, `201 stored`, `reset`, …
    pub answers: BTreeMap<String, u64>,
    pub requests: u64,
    /// A key answered 2xx in time came back (the 2xx-to-ledger window).
    pub replays_after_seen: u64,
    /// A key answered 2xx too late for the caller came back (an ordinary retry).
    pub replays_after_slow: u64,
    pub replayed_keys: Vec<String>,
}

pub struct Destination {
    pub addr: SocketAddr,
    faults: Faults,
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Destination {
    pub async fn start(faults: Faults) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let dest = Arc::new(Self {
            addr: listener.local_addr()?,
            faults,
            state: Arc::default(),
            down: Arc::default(),
            accept: Mutex::new(None),
        });
        dest.clone().listen(listener);
        Ok(dest)
    }

    fn listen(self: Arc<Self>, listener: TcpListener) {
        let me = self.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(me.clone().connection(stream));
            }
        });
        *self.accept.lock().expect("lock") = Some(task);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Nothing listens on the port for `d`; open connections are closed at their next
    /// request. Then the same port serves again.
    pub async fn outage(self: &Arc<Self>, d: Duration) -> std::io::Result<()> {
        self.down.store(true, Ordering::SeqCst);
        if let Some(task) = self.accept.lock().expect("lock").take() {
            task.abort();
        }
        tokio::time::sleep(d).await;
        let listener = TcpListener::bind(self.addr).await?;
        self.down.store(false, Ordering::SeqCst);
        self.clone().listen(listener);
        Ok(())
    }

    /// How many keys have had their effect so far (cheap, for pacing the chaos).
    pub fn effect_count(&self) -> usize {
        self.state.lock().expect("lock").effects.len()
    }

    pub fn report(&self) -> Report {
        let s = self.state.lock().expect("lock");
        Report {
            effects: s.effects.clone(),
            requests: s.answers.values().sum(),
            answers: s.answers.clone(),
            replays_after_seen: s.replays_after_seen,
            replays_after_slow: s.replays_after_slow,
            replayed_keys: s.replayed_keys.clone(),
        }
    }

    fn count(&self, answer: impl Into<String>) {
        *self.state.lock().expect("lock").answers.entry(answer.into()).or_default() += 1;
    }

    async fn connection(self: Arc<Self>, mut stream: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let Some(request) = read_request(&mut stream, &mut buf).await else { return };
            if self.down.load(Ordering::SeqCst) {
                return;
            }
            let fault = {
                let f = &self.faults;
                let roll = rand::rng().random_range(0..100);
                let mut edge = 0;
                [f.too_many_requests, f.unavailable, f.slow, f.reset]
                    .iter()
                    .position(|rate| {
                        edge += rate;
                        roll < edge
                    })
                    .unwrap_or(usize::MAX)
            };
            let (status, retry_after) = match fault {
                0 => {
                    self.count("429");
                    (429, rand::rng().random_bool(0.5).then_some(1))
                }
                1 => {
                    self.count("503");
                    (503, None)
                }
                3 => {
                    self.count("reset");
                    reset(stream);
                    return;
                }
                _ => {
                    let slow = fault == 2;
                    let status = self.answer(&request, !slow);
                    if slow {
                        self.count(format!("slow {status}"));
                        tokio::time::sleep(self.faults.slow_for).await;
                    }
                    (status, None)
                }
            };
            if write_response(&mut stream, status, retry_after).await.is_err() {
                return;
            }
        }
    }

    /// The API proper: one effect per Idempotency-Key, the stored answer for a repeat.
    fn answer(&self, request: &Request, seen: bool) -> u16 {
        let Some(key) = request.headers.get("idempotency-key").cloned() else {
            self.count("400 no key");
            return 400;
        };
        let mut s = self.state.lock().expect("lock");
        if let Some(stored) = s.stored.get(&key).copied() {
            if stored.seen {
                s.replays_after_seen += 1;
                s.replayed_keys.push(key);
            } else {
                s.replays_after_slow += 1;
            }
            drop(s);
            self.count(format!("{} stored", stored.status));
            return stored.status;
        }
        let tag = serde_json::from_slice::<Value>(&request.body)
            .ok()
            .and_then(|v| v.get("total_spent_minor").and_then(Value::as_i64));
        s.effects.push(Effect { key: key.clone(), tag });
        s.stored.insert(key.clone(), Stored { status: 201, seen });
        drop(s);
        if seen {
            self.count("201");
        }
        201
    }
}

/// Closes with a TCP reset instead of an answer.
fn reset(stream: TcpStream) {
    // SO_LINGER 0 makes the close an immediate RST; it does not block (the warning
    // behind the deprecation is about non-zero linger times).
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

struct Request {
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (Content-Length bodies, as reqwest sends them); `None`
/// when the connection ends or the request is unreadable.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 || !read_more(stream, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        if !read_more(stream, buf).await {
            return None;
        }
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some(Request { headers, body })
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn write_response(stream: &mut TcpStream, status: u16, retry_after: Option<u64>) -> std::io::Result<()> {
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let body = format!(r#"{{"status":{status}}}"#);
    let retry = retry_after.map(|s| format!("retry-after: {s}\r\n")).unwrap_or_default();
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry}\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await
}
