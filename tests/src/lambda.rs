//! The Lambda Runtime API, played for the real function binaries (`bootstrap`s) run
//! as processes of their own: `GET …/invocation/next` hands out the next event,
//! `POST …/{id}/response` and `…/{id}/error` answer it, `POST …/init/error` reports a
//! failed cold start — the interface Lambda's own runtime serves, so the binaries run
//! here exactly as they are built for AWS. One emulator per function instance; the
//! benchmarks measure the processes' CPU, memory and logs from the outside.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Path as UrlPath, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// What a function answered an invocation with.
#[derive(Debug)]
pub enum Answer {
    Response(Vec<u8>),
    Error(Vec<u8>),
}

struct Job {
    payload: Vec<u8>,
    deadline_ms: i64,
    reply: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Shared {
    queue: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    in_flight: Mutex<HashMap<String, (oneshot::Sender<Answer>, Instant)>>,
    /// Each finished invocation, in the order answered: handed out, answered.
    spans: Mutex<Vec<(Instant, Instant)>>,
    /// When the function first asked for an event: its init was over.
    first_next: Mutex<Option<Instant>>,
    init_error: Mutex<Option<String>>,
    ids: AtomicU64,
}

/// One function instance's Runtime API.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    name: String,
    jobs: mpsc::UnboundedSender<Job>,
    shared: Arc<Shared>,
}

impl RuntimeApi {
    pub async fn start(name: &str) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        *shared.queue.lock().await = Some(rx);
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, name: name.to_owned(), jobs, shared })
    }

    /// Invokes the function with `payload` and waits for its answer; `timeout` is the
    /// invocation's deadline, as the function sees it.
    pub async fn invoke(&self, payload: Vec<u8>, timeout: Duration) -> Result<Answer, String> {
        let (reply, answer) = oneshot::channel();
        let deadline_ms = switchyard_common::runtime::now_ms() + timeout.as_millis() as i64;
        self.jobs
            .send(Job { payload, deadline_ms, reply })
            .map_err(|_| format!("{}: runtime API closed", self.name))?;
        match tokio::time::timeout(timeout + Duration::from_secs(5), answer).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => Err(format!("{}: invocation dropped", self.name)),
            Err(_) => Err(format!("{}: no answer within {timeout:?}", self.name)),
        }
    }

    /// Waits until the function has finished its init (asked for its first event),
    /// or reported that it could not.
    pub async fn wait_ready(&self, within: Duration) -> Result<Instant, String> {
        let started = Instant::now();
        loop {
            if let Some(at) = *self.shared.first_next.lock().expect("lock") {
                return Ok(at);
            }
            if let Some(e) = self.shared.init_error.lock().expect("lock").clone() {
                return Err(format!("{}: init failed: {e}", self.name));
            }
            if started.elapsed() > within {
                return Err(format!("{}: not ready within {within:?}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The durations of the invocations answered so far.
    pub fn durations(&self) -> Vec<Duration> {
        self.shared.spans.lock().expect("lock").iter().map(|(given, answered)| *answered - *given).collect()
    }

    /// When the first invocation was handed out and when it was answered.
    pub fn first_invocation(&self) -> Option<(Instant, Instant)> {
        self.shared.spans.lock().expect("lock").first().copied()
    }
}

fn text(status: u16, body: impl Into<Body>) -> Response {
    Response::builder().status(status).body(body.into()).unwrap_or_default()
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared.first_next.lock().expect("lock").get_or_insert_with(Instant::now);
    let job = {
        let mut queue = shared.queue.lock().await;
        match queue.as_mut() {
            Some(rx) => rx.recv().await,
            None => None,
        }
    };
    let Some(job) = job else { return text(500, "emulator stopped") };
    let id = format!("bench-{:08}", shared.ids.fetch_add(1, Ordering::Relaxed));
    shared.in_flight.lock().expect("lock").insert(id.clone(), (job.reply, Instant::now()));
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &id)
        .header("lambda-runtime-deadline-ms", job.deadline_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:bench")
        .header("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0")
        .body(Body::from(job.payload))
        .unwrap_or_default()
}

async fn finish(shared: &Shared, id: &str, answer: impl FnOnce(Vec<u8>) -> Answer, body: Body) -> Response {
    let bytes = to_bytes(body, 20 * 1024 * 1024).await.map(|b| b.to_vec()).unwrap_or_default();
    let Some((reply, started)) = shared.in_flight.lock().expect("lock").remove(id) else {
        return text(400, "unknown request id");
    };
    shared.spans.lock().expect("lock").push((started, Instant::now()));
    let _ = reply.send(answer(bytes));
    text(202, "")
}

async fn response(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Body) -> Response {
    finish(&shared, &id, Answer::Response, body).await
}

async fn error(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Body) -> Response {
    finish(&shared, &id, Answer::Error, body).await
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    let bytes = to_bytes(body, 1024 * 1024).await.unwrap_or_default();
    *shared.init_error.lock().expect("lock") = Some(String::from_utf8_lossy(&bytes).into_owned());
    text(202, "")
}

/// A function binary running as its own process against a [`RuntimeApi`]: what Lambda
/// does with a `bootstrap`. Its stdout (the function's logs) is counted, and kept in
/// `log` if given.
pub struct Function {
    pub name: String,
    pub api: RuntimeApi,
    pub child: Child,
    pub started: Instant,
    log_bytes: Arc<AtomicU64>,
    log_lines: Arc<AtomicU64>,
}

/// The Lambda environment of a function process (what AWS sets besides the template's
/// variables).
pub fn lambda_env(name: &str, api: SocketAddr, memory_mb: u32) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Function {
    /// Starts `binary` with `env` (and nothing else of this process's environment but
    /// `PATH`), its Runtime API and Lambda's variables.
    pub async fn start(
        name: &str,
        binary: &Path,
        env: &[(String, String)],
        log: Option<PathBuf>,
    ) -> Result<Self, String> {
        let api = RuntimeApi::start(name).await.map_err(|e| e.to_string())?;
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(lambda_env(name, api.addr, 256))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let (log_bytes, log_lines) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (bytes, lines) = (log_bytes.clone(), log_lines.clone());
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout);
            let mut file = log.and_then(|p| std::fs::File::create(p).ok());
            let mut line = String::new();
            while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
                lines.fetch_add(1, Ordering::Relaxed);
                if let Some(f) = file.as_mut() {
                    let _ = std::io::Write::write_all(f, line.as_bytes());
                }
                line.clear();
            }
        });
        Ok(Self { name: name.to_owned(), api, child, started, log_bytes, log_lines })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Bytes and lines the function has written to stdout so far.
    pub fn logs(&self) -> (u64, u64) {
        (self.log_bytes.load(Ordering::Relaxed), self.log_lines.load(Ordering::Relaxed))
    }

    /// The process's CPU time so far (user + system, every thread, exited ones too).
    pub fn cpu(&self) -> Duration {
        process_cpu(self.pid())
    }

    /// The process's peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:")
    }
}

/// User + system CPU of process `pid` from `/proc/{pid}/stat` (clock ticks of 1/100 s).
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: the fields counted from 3 start after its ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15: 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 1_000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// A `kB` line of `/proc/{pid}/status` (`VmHWM:` peak resident set, `VmRSS:` now).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
