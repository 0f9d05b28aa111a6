//! The chaos soak (issue 7, part 5): many events through the local pipeline while the
//! runner is killed with SIGKILL and restarted, the destination fails in every way a
//! network can and goes down entirely for a while, and the provider sends duplicates,
//! changed bodies and malformed requests. At the end every event is accounted for.
//! `make soak` runs it (`src/bin/soak.rs`); `tests/soak.rs` runs a small one.

pub mod destination;
pub mod provider;
pub mod runner;
pub mod tally;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use futures_util::future::join_all;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{watch, Mutex, Semaphore};

use crate::{free_port, repo, LocalAws};
use destination::{Destination, Faults};
use provider::{Outcome, Plan, Post, Sender};
use runner::Runner;
pub use tally::Tally;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Distinct events (duplicates, changed bodies and malformed requests come on top).
    pub events: usize,
    pub seed: u64,
    /// How many times the runner is killed with SIGKILL (spread over the stream).
    pub kills: usize,
    /// How long the runner stays dead before it is started again.
    pub dead_for: Duration,
    /// The destination's full outage (nothing listens), in the middle of the stream.
    pub outage: Duration,
    pub faults: Faults,
    /// Posts in flight at once.
    pub concurrency: usize,
    /// Posting pauses while the ingest and dispatch queues hold more than this: moto's queues slow
    /// down with their length (2,000 events went at 2.7/s with a backlog of over a
    /// thousand), and the soak is about accounting, not about moto's limits.
    pub max_backlog: u64,
    /// The work queues' visibility timeout (how long a dead worker's messages stay
    /// hidden); `None` keeps the template's.
    pub visibility_secs: Option<u32>,
    /// How long to wait for the queues to drain once everything is posted.
    pub drain_timeout: Duration,
    /// The flow file the runner loads (short retry delays for the soak).
    pub flows: PathBuf,
    /// Logs of the runner, the stack description.
    pub work_dir: PathBuf,
}

impl Settings {
    /// `make soak`'s defaults, each overridable by a `SOAK_*` variable.
    pub fn from_env() -> Self {
        let num = |name: &str, default: u64| -> u64 {
            std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        };
        let d = Faults::default();
        let faults = Faults {
            too_many_requests: num("SOAK_429_PCT", d.too_many_requests.into()) as u32,
            unavailable: num("SOAK_503_PCT", d.unavailable.into()) as u32,
            slow: num("SOAK_SLOW_PCT", d.slow.into()) as u32,
            reset: num("SOAK_RESET_PCT", d.reset.into()) as u32,
            slow_for: d.slow_for,
        };
        Self {
            events: num("SOAK_EVENTS", 10_000) as usize,
            seed: num("SOAK_SEED", 20261201),
            kills: num("SOAK_KILLS", 2) as usize,
            dead_for: Duration::from_secs(num("SOAK_DEAD_SECS", 3)),
            outage: Duration::from_secs(num("SOAK_OUTAGE_SECS", 30)),
            faults,
            concurrency: num("SOAK_CONCURRENCY", 16) as usize,
            max_backlog: num("SOAK_MAX_BACKLOG", 300),
            visibility_secs: std::env::var("SOAK_VISIBILITY_SECS").ok().and_then(|v| v.parse().ok()),
            drain_timeout: Duration::from_secs(num("SOAK_DRAIN_SECS", 1_200)),
            flows: repo().join("tests/soak/flows.toml"),
            work_dir: std::env::var("SOAK_DIR").map(PathBuf::from).unwrap_or_else(|_| repo().join(".local/soak")),
        }
    }
}

/// One post and what came of it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub post: Post,
    pub outcome: Outcome,
}

/// Runs the soak and accounts for every event.
pub async fn run(settings: &Settings) -> Result<Tally, String> {
    std::fs::create_dir_all(&settings.work_dir).map_err(|e| format!("{}: {e}", settings.work_dir.display()))?;
    let aws = LocalAws::start().await;
    let stack = &aws.stack;
    if let Some(secs) = settings.visibility_secs {
        for url in [&stack.ingest_queue_url, &stack.dispatch_queue_url, &stack.dispatch_fifo_queue_url] {
            aws.sqs()
                .set_queue_attributes()
                .queue_url(url)
                .attributes(QueueAttributeName::VisibilityTimeout, secs.to_string())
                .send()
                .await
                .map_err(|e| format!("visibility timeout: {e}"))?;
        }
    }
    let stack_file = settings.work_dir.join("stack.json");
    std::fs::write(&stack_file, serde_json::to_vec_pretty(stack).expect("stack JSON"))
        .map_err(|e| format!("{}: {e}", stack_file.display()))?;

    let destination = Destination::start(settings.faults.clone()).await.map_err(|e| e.to_string())?;
    let intake = format!("127.0.0.1:{}", free_port()).parse().expect("address");
    let env = vec![
        ("AWS_ENDPOINT_URL".to_owned(), aws.endpoint.clone()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "testing".to_owned()),
        // The runner resolves destinations as a deployed function does.
        ("SWITCHYARD_DESTINATION_CRM_URL".to_owned(), destination.url()),
    ];
    let mut runner = Runner::new(&stack_file, &settings.flows, intake, env, &settings.work_dir);
    runner.start().await?;
    let runner = Arc::new(Mutex::new(runner));

    let mut rng = StdRng::seed_from_u64(settings.seed);
    let run_id = format!("{:x}", settings.seed);
    let plan = Arc::new(Plan::new(settings.events, &run_id, &mut rng));
    let sender = Arc::new(Sender::new(format!("http://{intake}")));
    let answered: Arc<Vec<watch::Sender<bool>>> =
        Arc::new((0..plan.events.len()).map(|_| watch::channel(false).0).collect());
    println!(
        "soak: {} events, {} posts, {} runner kills, {} s destination outage, runner logs in {}",
        plan.events.len(),
        plan.posts(),
        settings.kills,
        settings.outage.as_secs(),
        settings.work_dir.display()
    );

    let started = Instant::now();
    let steps = plan.steps.len();
    // The chaos is paced by deliveries, so that it strikes while the dispatcher works
    // (by posting progress, it would hit a dispatcher still far behind intake).
    let expected = plan.events.iter().filter(|e| e.fate == provider::Fate::Deliver).count();
    let chaos = Arc::new(Chaos::default());
    let chaos_task = tokio::spawn(chaos.clone().run(
        runner.clone(),
        destination.clone(),
        settings.clone(),
        expected,
        steps,
        started,
    ));
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let mut posts = Vec::with_capacity(steps);
    for (k, step) in plan.steps.iter().enumerate() {
        if k % 1000 == 0 && k > 0 {
            println!(
                "soak: {k}/{steps} post steps, {} delivered, {:.0} s",
                destination.effect_count(),
                started.elapsed().as_secs_f64()
            );
        }
        if k % 50 == 0 {
            while aws.depth(&stack.ingest_queue_url).await + aws.depth(&stack.dispatch_queue_url).await
                > settings.max_backlog
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let permit = slots.clone().acquire_owned().await.expect("semaphore");
        chaos.posted.store(k, Ordering::SeqCst);
        let (step, plan, sender, answered) = (step.clone(), plan.clone(), sender.clone(), answered.clone());
        posts.push(tokio::spawn(async move {
            let sent = join_all(step.into_iter().map(|post| send(&plan, &sender, &answered, post))).await;
            drop(permit);
            sent
        }));
    }
    let mut sent = Vec::new();
    for p in posts {
        sent.extend(p.await.map_err(|e| e.to_string())?);
    }
    let posted_in = started.elapsed();
    println!("soak: every post answered after {:.0} s; waiting for the queues to drain", posted_in.as_secs_f64());
    let drained = drain(&aws, &chaos, settings.drain_timeout, started).await;
    let wall = started.elapsed();
    // Drained before every planned kill or outage came: the tally says so.
    chaos_task.abort();
    let failed = chaos.failed.lock().expect("lock").clone();
    if let Some(e) = failed {
        return Err(e);
    }
    runner.lock().await.kill().await;
    let done = (chaos.kills.load(Ordering::SeqCst), chaos.outages.load(Ordering::SeqCst));
    let mut tally = tally::account(&aws, &plan, &sent, &destination.report(), settings, drained, wall, posted_in).await;
    tally.chaos_done(settings, done.0, done.1);
    Ok(tally)
}

/// Sends one post; a changed body waits until its original was answered (so the
/// documented answer is `payload_mismatch`, whichever arrived first being a race).
async fn send(plan: &Plan, sender: &Sender, answered: &[watch::Sender<bool>], post: Post) -> Sent {
    let outcome = match &post {
        Post::Event { event, .. } => {
            let outcome = sender.send(None, plan.events[*event].body.as_bytes()).await;
            answered[*event].send_replace(true);
            outcome
        }
        Post::ChangedBody { event, body } => {
            let mut rx = answered[*event].subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(300), rx.wait_for(|done| *done)).await;
            sender.send(None, body.as_bytes()).await
        }
        Post::Malformed { kind, body } => sender.send(Some(*kind), body).await,
    };
    Sent { post, outcome }
}

/// What the chaos has done so far.
#[derive(Default)]
struct Chaos {
    /// Post steps under way or done.
    posted: AtomicUsize,
    kills: AtomicUsize,
    outages: AtomicUsize,
    /// Kills or outages under way (the queues may look empty meanwhile).
    acting: AtomicUsize,
    failed: std::sync::Mutex<Option<String>>,
}

impl Chaos {
    /// Kills the runner at 1/(k+1), 2/(k+1), … of the posts or of the expected
    /// deliveries, whichever comes first (so that a kill finds intake, mapper and
    /// dispatcher at work), and takes the destination down at 45 % of the deliveries
    /// (so that the outage meets deliveries, however far the dispatcher lags behind).
    async fn run(
        self: Arc<Self>,
        runner: Arc<Mutex<Runner>>,
        destination: Arc<Destination>,
        settings: Settings,
        expected: usize,
        steps: usize,
        started: Instant,
    ) {
        let k = settings.kills + 1;
        let mut plan: Vec<(usize, usize, bool)> = (1..k).map(|j| (expected * j / k, steps * j / k, true)).collect();
        if !settings.outage.is_zero() {
            plan.push((expected * 9 / 20, usize::MAX, false));
        }
        // Each waits for its own moment: the outage may come before or after a kill.
        let me = &self;
        let (runner, destination, settings) = (&runner, &destination, &settings);
        join_all(plan.into_iter().map(|(at, at_step, kill)| async move {
            while destination.effect_count() < at && me.posted.load(Ordering::SeqCst) < at_step {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            me.acting.fetch_add(1, Ordering::SeqCst);
            let (delivered, posted) = (destination.effect_count(), me.posted.load(Ordering::SeqCst));
            let elapsed = started.elapsed().as_secs_f64();
            let result = if kill {
                // Kills take turns on the runner.
                let mut r = runner.lock().await;
                println!("soak: SIGKILL the runner at post step {posted}/{steps}, {delivered} delivered ({elapsed:.0} s)");
                r.kill().await;
                tokio::time::sleep(settings.dead_for).await;
                let started = r.start().await;
                me.kills.fetch_add(1, Ordering::SeqCst);
                started
            } else {
                println!(
                    "soak: destination down for {} s at post step {posted}/{steps}, {delivered} delivered ({elapsed:.0} s)",
                    settings.outage.as_secs()
                );
                let back = destination.outage(settings.outage).await.map_err(|e| e.to_string());
                me.outages.fetch_add(1, Ordering::SeqCst);
                back
            };
            if let Err(e) = result {
                *me.failed.lock().expect("lock") = Some(e);
            }
            me.acting.fetch_sub(1, Ordering::SeqCst);
        }))
        .await;
    }
}

/// Waits until the work queues hold nothing, visible or in flight, three times in a
/// row with no kill or outage under way; returns whether they did within `timeout`.
async fn drain(aws: &LocalAws, chaos: &Chaos, timeout: Duration, started: Instant) -> bool {
    let s = &aws.stack;
    let deadline = Instant::now() + timeout;
    let mut quiet = 0;
    let mut last_print = Instant::now();
    while Instant::now() < deadline {
        let mut busy = 0;
        for url in [&s.ingest_queue_url, &s.dispatch_queue_url, &s.dispatch_fifo_queue_url] {
            busy += aws.depth(url).await;
        }
        let acting = chaos.acting.load(Ordering::SeqCst) > 0 || chaos.failed.lock().expect("lock").is_some();
        quiet = if busy == 0 && !acting { quiet + 1 } else { 0 };
        if quiet >= 3 {
            return true;
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            println!("soak: {busy} messages still queued ({:.0} s)", started.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    false
}
