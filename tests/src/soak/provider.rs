//! The soak's provider side: the events, the posts made of them (originals,
//! duplicates, bodies changed under a known id, malformed requests of every kind the
//! README's "What intake answers" documents) and a sender that behaves like a
//! provider — it retries what intake says was not durably accepted.

use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, Scheme, SigningSecret};

use crate::{local_secret, stripe_payment};

/// What an event is meant to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Mapped and delivered (or parked by the dispatcher with a reason).
    Deliver,
    /// No `receipt_email`: the mapping refuses it; parked by the mapper.
    MappingError,
    /// An event type no flow takes: accepted, counted, never delivered.
    NoFlow,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub body: String,
    pub fate: Fate,
}

/// Every malformed request intake documents an answer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bad {
    Json,
    NoEventId,
    NoSignature,
    UnreadableSignature,
    WrongSignature,
    StaleTimestamp,
    FutureTimestamp,
    UnknownSource,
    NotPost,
    TooLarge,
}

impl Bad {
    pub const ALL: [Bad; 10] = [
        Bad::Json,
        Bad::NoEventId,
        Bad::NoSignature,
        Bad::UnreadableSignature,
        Bad::WrongSignature,
        Bad::StaleTimestamp,
        Bad::FutureTimestamp,
        Bad::UnknownSource,
        Bad::NotPost,
        Bad::TooLarge,
    ];

    /// The documented answer: status and `error` code.
    pub fn answer(self) -> (u16, &'static str) {
        match self {
            Bad::Json => (400, "malformed_json"),
            Bad::NoEventId => (400, "missing_event_id"),
            Bad::NoSignature => (401, "missing_signature"),
            Bad::UnreadableSignature => (401, "malformed_signature"),
            Bad::WrongSignature => (401, "signature_mismatch"),
            Bad::StaleTimestamp => (401, "stale_timestamp"),
            Bad::FutureTimestamp => (401, "future_timestamp"),
            Bad::UnknownSource => (404, "unknown_source"),
            Bad::NotPost => (405, "method_not_allowed"),
            Bad::TooLarge => (413, "body_too_large"),
        }
    }
}

/// One request to intake.
#[derive(Debug, Clone)]
pub enum Post {
    /// The event's body (the original, or a duplicate of it).
    Event {
        event: usize,
        late_duplicate: bool,
    },
    /// The event's id with another body, sent once the original was answered.
    ChangedBody {
        event: usize,
        body: String,
    },
    Malformed {
        kind: Bad,
        body: Vec<u8>,
    },
}

/// Posts that go together: one post, or several of one event sent at the same time.
pub type Step = Vec<Post>;

/// The body tag (`amount_received`, mapped to `total_spent_minor`) of a changed body.
pub const CHANGED_TAG: i64 = 1_000_000;
/// The body tag of a malformed request's body.
pub const MALFORMED_TAG: i64 = 2_000_000;

pub struct Plan {
    pub events: Vec<Event>,
    pub steps: Vec<Step>,
    pub concurrent_duplicates: usize,
    pub late_duplicates: usize,
    pub changed_bodies: usize,
    pub malformed: usize,
}

impl Plan {
    /// `n` events; about 10 % duplicated (half sent concurrently, half late), 5 %
    /// malformed requests, 5 % the same id with another body. The body tag of event
    /// `i` is `i`, so the destination can tell which event a request carries.
    pub fn new(n: usize, run: &str, rng: &mut StdRng) -> Self {
        let mut events = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("evt_soak_{run}_{i:05}");
            let mut body = stripe_payment(&id);
            body["data"]["object"]["amount_received"] = json!(i);
            let fate = match rng.random_range(0..100) {
                0..2 => {
                    body["data"]["object"]["receipt_email"] = Value::Null;
                    Fate::MappingError
                }
                2..3 => {
                    body["type"] = json!("charge.refunded");
                    Fate::NoFlow
                }
                _ => Fate::Deliver,
            };
            events.push(Event { id, body: body.to_string(), fate });
        }
        // Later posts wait in `deferred` until their step number comes.
        let mut deferred: Vec<(usize, Post)> = Vec::new();
        let mut steps: Vec<Step> = Vec::new();
        let (mut concurrent_duplicates, mut late_duplicates, mut changed_bodies, mut malformed) = (0, 0, 0, 0);
        let later = |rng: &mut StdRng, i: usize| i + rng.random_range(20..(n / 5).max(40));
        for (i, event) in events.iter().enumerate() {
            let roll = rng.random_range(0..1000);
            let original = Post::Event { event: i, late_duplicate: false };
            if roll < 50 {
                concurrent_duplicates += 1;
                steps.push(vec![original.clone(), original]);
            } else {
                steps.push(vec![original]);
            }
            if (50..100).contains(&roll) {
                late_duplicates += 1;
                deferred.push((later(rng, i), Post::Event { event: i, late_duplicate: true }));
            }
            if (100..150).contains(&roll) {
                changed_bodies += 1;
                let mut body: Value = serde_json::from_str(&event.body).expect("own JSON");
                body["data"]["object"]["amount_received"] = json!(CHANGED_TAG + i as i64);
                deferred.push((later(rng, i), Post::ChangedBody { event: i, body: body.to_string() }));
            }
            if rng.random_range(0..100) < 5 {
                let kind = Bad::ALL[malformed % Bad::ALL.len()];
                steps.push(vec![Post::Malformed { kind, body: malformed_body(kind, run, malformed) }]);
                malformed += 1;
            }
            deferred.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
            while deferred.last().is_some_and(|(at, _)| *at <= i) {
                steps.push(vec![deferred.pop().expect("checked").1]);
            }
        }
        steps.extend(deferred.into_iter().rev().map(|(_, p)| vec![p]));
        Plan { events, steps, concurrent_duplicates, late_duplicates, changed_bodies, malformed }
    }

    pub fn posts(&self) -> usize {
        self.steps.iter().map(Vec::len).sum()
    }
}

fn malformed_body(kind: Bad, run: &str, j: usize) -> Vec<u8> {
    let mut event = stripe_payment(&format!("evt_soak_{run}_bad_{j:05}"));
    event["data"]["object"]["amount_received"] = json!(MALFORMED_TAG + j as i64);
    match kind {
        Bad::Json => format!("{{\"id\": \"evt_soak_{run}_bad_{j:05}\", ").into_bytes(),
        Bad::NoEventId => {
            event.as_object_mut().expect("object").remove("id");
            event.to_string().into_bytes()
        }
        Bad::TooLarge => {
            // Over intake's default 200 KiB limit, as a provider's huge payload would be.
            event["data"]["object"]["description"] = json!("x".repeat(210 * 1024));
            event.to_string().into_bytes()
        }
        _ => event.to_string().into_bytes(),
    }
}

/// Intake's answer to one request: status and `error` code (`status` for 200/202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub code: String,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.code)
    }
}

/// What happened to one post, all tries included.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The answer the provider stopped at; `None` if it never got one it could stop at.
    pub last: Option<Answer>,
    /// Answers after which it tried again (503, 409 in_progress).
    pub retried: Vec<Answer>,
    /// Tries that got no HTTP answer (the runner was down or killed mid-request).
    pub unreachable: u32,
}

pub struct Sender {
    pub intake: String,
    pub http: reqwest::Client,
    pub secret: String,
    /// How long a provider keeps retrying one post.
    pub give_up_after: Duration,
}

impl Sender {
    pub fn new(intake: String) -> Self {
        Self {
            intake,
            http: crate::http_client_builder().timeout(Duration::from_secs(20)).build().expect("http client"),
            secret: local_secret("source/stripe"),
            give_up_after: Duration::from_secs(180),
        }
    }

    /// Sends `body` as `kind` (None: a well-formed signed event) until intake gives an
    /// answer a provider stops at. 503 (not durably accepted) and 409 `in_progress`
    /// are retried, as is a request that got no answer at all.
    pub async fn send(&self, kind: Option<Bad>, body: &[u8]) -> Outcome {
        let started = Instant::now();
        let mut outcome = Outcome::default();
        let mut pause = Duration::from_millis(200);
        while started.elapsed() < self.give_up_after {
            match self.try_once(kind, body).await {
                Ok(answer) if answer.status == 503 || (answer.status == 409 && answer.code == "in_progress") => {
                    outcome.retried.push(answer);
                }
                Ok(answer) => {
                    outcome.last = Some(answer);
                    return outcome;
                }
                Err(()) => outcome.unreachable += 1,
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(3));
        }
        outcome
    }

    async fn try_once(&self, kind: Option<Bad>, body: &[u8]) -> Result<Answer, ()> {
        let now = now_ms() / 1000;
        let (timestamp, secret) = match kind {
            Some(Bad::StaleTimestamp) => (now - 3_600, self.secret.clone()),
            Some(Bad::FutureTimestamp) => (now + 3_600, self.secret.clone()),
            Some(Bad::WrongSignature) => (now, "whsec_not_the_source_secret".to_owned()),
            _ => (now, self.secret.clone()),
        };
        let mut headers: Vec<(HeaderName, HeaderValue)> = match kind {
            Some(Bad::NoSignature) => Vec::new(),
            Some(Bad::UnreadableSignature) => {
                vec![(HeaderName::from_static("stripe-signature"), HeaderValue::from_static("t=soon,v1=zz"))]
            }
            _ => sign(&Scheme::Stripe, &SigningSecret::new(&secret), body, timestamp, "").map_err(|_| ())?,
        };
        headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
        let source = if kind == Some(Bad::UnknownSource) { "no-such-source" } else { "stripe" };
        let url = format!("{}/hooks/{source}", self.intake);
        let mut req = if kind == Some(Bad::NotPost) { self.http.get(&url) } else { self.http.post(&url) };
        req = req.body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|_| ())?;
        let status = resp.status().as_u16();
        let json: Value = resp.json().await.unwrap_or(Value::Null);
        let code =
            json.get("error").or_else(|| json.get("status")).and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(Answer { status, code })
    }
}
