//! A destination that records every request it receives and answers from a script:
//! the example CRM of `make run`, and the misbehaving API of the end-to-end tests.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use serde::Serialize;
use serde_json::Value;

/// One received request, as appended to the sink file.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-case names; values as received.
    pub headers: serde_json::Map<String, Value>,
    /// The JSON body, or the text when it is not JSON.
    pub body: Value,
    pub received_at_ms: i64,
    /// The status the sink answered (for a delayed answer, the status it sent late).
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).and_then(Value::as_str)
    }
}

/// What the sink answers. `Status` answers at once; `Delay` answers after a pause
/// (long enough to make a caller time out).
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// A status with a JSON body (an API's error, e.g. `{"error": "owner not found"}`).
    Json(u16, String),
    StatusWithRetryAfter(u16, u64),
    Delay(Duration, u16),
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Answers to give, in order; when empty, `fallback`.
    script: VecDeque<Reply>,
    fallback: Option<Reply>,
    /// Fixed answers for some paths, before the script.
    by_path: Vec<(String, Reply)>,
    /// A header every request must carry with this value, else 401 (an API key).
    required: Option<(String, String)>,
    file: Option<PathBuf>,
    /// What is kept in memory of each request (the file, if any, has them all).
    keep: Keep,
    /// With [`Keep::Keys`]: how many requests each `Idempotency-Key` arrived in.
    keys: HashMap<String, u32>,
}

/// What a sink keeps in memory of the requests it received.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Keep {
    /// Every request (the tests look at them).
    #[default]
    All,
    /// Nothing: a long run's memory does not grow (`make run` has the file).
    Nothing,
    /// Only a count per `Idempotency-Key` (the benchmarks check exactly-once with it).
    Keys,
}

/// Where the sink answers as an OAuth2 token endpoint (client credentials).
pub const TOKEN_PATH: &str = "/oauth/token";
const LOCAL_TOKEN: &str = r#"{"access_token":"local-access-token","token_type":"Bearer","expires_in":3600}"#;

#[derive(Clone, Default)]
pub struct Sink {
    inner: Arc<Mutex<Inner>>,
}

impl Sink {
    /// A sink answering 201 to everything and appending each request to `file`,
    /// keeping none of them in memory (the local runner's, which runs for days).
    pub fn to_file(file: PathBuf) -> Self {
        let sink = Self::default();
        let mut inner = sink.inner.lock().expect("sink lock");
        inner.file = Some(file);
        inner.keep = Keep::Nothing;
        drop(inner);
        sink
    }

    /// A sink answering 201 to everything that keeps only how many requests each
    /// `Idempotency-Key` arrived in ([`Sink::key_counts`]).
    pub fn counting_keys() -> Self {
        let sink = Self::default();
        sink.inner.lock().expect("sink lock").keep = Keep::Keys;
        sink
    }

    /// How many requests carried each `Idempotency-Key` (with [`Sink::counting_keys`]).
    pub fn key_counts(&self) -> HashMap<String, u32> {
        self.inner.lock().expect("sink lock").keys.clone()
    }

    /// The next answers, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().expect("sink lock").script.extend(replies);
    }

    /// The answer once the script is used up (default 201).
    pub fn answer_by_default(&self, reply: Reply) {
        self.inner.lock().expect("sink lock").fallback = Some(reply);
    }

    /// Answers 401 to any request without header `name: value` (a destination whose
    /// API key was changed). Replaces an earlier requirement.
    pub fn require_header(&self, name: &str, value: &str) {
        self.inner.lock().expect("sink lock").required = Some((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// Always answers `reply` for requests to `path`.
    pub fn answer_path(&self, path: &str, reply: Reply) {
        self.inner.lock().expect("sink lock").by_path.push((path.to_owned(), reply));
    }

    /// Drops the fixed answers for `path`: it answers from the script again.
    pub fn clear_path(&self, path: &str) {
        self.inner.lock().expect("sink lock").by_path.retain(|(p, _)| p != path);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().expect("sink lock").received.clone()
    }

    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, Router::new().fallback(record).with_state(self)).await
    }

    /// Binds to `addr` (port 0 for any) and serves on a thread and runtime of its own,
    /// so that the time it records for a request is when the request arrived, not when
    /// a busy runtime shared with the callers got round to it (the rate-limit tests
    /// measure 1-second windows from these times).
    pub fn start_apart(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("sink".into()).spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = self.serve(listener).await {
                            tracing::error!(error = %e, "sink stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "sink cannot listen"),
                }
            })
        })?;
        Ok(local)
    }

    /// Binds to `addr` (port 0 for any) and serves in the background.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        tokio::spawn(self.serve(listener));
        Ok(local)
    }
}

async fn record(State(sink): State<Sink>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 10 * 1024 * 1024).await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), Value::String(String::from_utf8_lossy(v.as_bytes()).into())))
        .collect();
    let mut received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers,
        body,
        received_at_ms: switchyard_common::runtime::now_ms(),
        answered: 0,
    };
    let token_request = received.method == "POST" && received.path == TOKEN_PATH;
    let reply = {
        let mut inner = sink.inner.lock().expect("sink lock");
        let refused =
            inner.required.as_ref().is_some_and(|(name, value)| received.header(name) != Some(value.as_str()));
        let fixed = if token_request {
            Some(Reply::Status(200))
        } else if refused {
            Some(Reply::Status(401))
        } else {
            inner.by_path.iter().find(|(p, _)| *p == received.path).map(|(_, r)| r.clone())
        };
        let reply = fixed.unwrap_or_else(|| {
            let fallback = inner.fallback.clone().unwrap_or(Reply::Status(201));
            inner.script.pop_front().unwrap_or(fallback)
        });
        received.answered = match &reply {
            Reply::Status(s) | Reply::Json(s, _) | Reply::StatusWithRetryAfter(s, _) | Reply::Delay(_, s) => *s,
        };
        if let Some(file) = &inner.file {
            let line = serde_json::to_string(&received).unwrap_or_default();
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file) {
                let _ = writeln!(f, "{line}");
            }
        }
        match inner.keep {
            Keep::All => inner.received.push(received),
            Keep::Nothing => {}
            Keep::Keys => {
                if let Some(key) = received.header("idempotency-key") {
                    let key = key.to_owned();
                    *inner.keys.entry(key).or_default() += 1;
                }
            }
        }
        reply
    };
    let mut body = r#"{"ok":true}"#.to_owned();
    // The example OAuth2 destination's token endpoint (flow file: accounting), so the
    // invoice flow works against the local sink too.
    if token_request {
        body = LOCAL_TOKEN.to_owned();
    }
    let (status, retry_after) = match reply {
        Reply::Status(s) => (s, None),
        Reply::Json(s, json) => {
            body = json;
            (s, None)
        }
        Reply::StatusWithRetryAfter(s, secs) => (s, Some(secs)),
        Reply::Delay(d, s) => {
            tokio::time::sleep(d).await;
            (s, None)
        }
    };
    let mut builder = Response::builder().status(status).header("content-type", "application/json");
    if let Some(secs) = retry_after {
        builder = builder.header("retry-after", secs.to_string());
    }
    builder.body(Body::from(body)).unwrap_or_default()
}
