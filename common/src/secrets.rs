//! Secrets from Secrets Manager, cached per container.
//!
//! Always asks for a version stage explicitly (`AWSCURRENT`, `AWSPREVIOUS`): without
//! one, some endpoints return a stale version after a rotation moved the stages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_secretsmanager::operation::batch_get_secret_value::BatchGetSecretValueOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::Client;

/// A secret value, and when its version was created where the source knows it.
/// `Debug` never shows the value.
#[derive(Clone)]
pub struct SecretValue {
    value: String,
    created_at: Option<i64>,
}

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self { value: value.into(), created_at: None }
    }

    /// The same value, created at `epoch_secs` (the version's `CreatedDate`).
    pub fn created_at_secs(mut self, epoch_secs: i64) -> Self {
        self.created_at = Some(epoch_secs);
        self
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    /// When this version was created (unix seconds), if the source says; a rotation
    /// grace window is measured from the current version's creation.
    pub fn created_at(&self) -> Option<i64> {
        self.created_at
    }
}

/// Two values are equal when the secret material is: when it was stored does not
/// make it another secret.
impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for SecretValue {}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionStage {
    Current,
    Previous,
}

impl VersionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStage::Current => "AWSCURRENT",
            VersionStage::Previous => "AWSPREVIOUS",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {0} does not exist")]
    NotFound(String),
    #[error("secret {id} unavailable: {message}")]
    Unavailable { id: String, message: String },
    #[error("secret {0} has no string value")]
    NotAString(String),
}

#[async_trait]
pub trait SecretSource: Send + Sync {
    /// `Ok(None)` when the secret exists but has no version in that stage (no
    /// `AWSPREVIOUS` before the first rotation).
    async fn get(&self, id: &str, stage: VersionStage) -> Result<Option<SecretValue>, SecretError>;

    /// The current versions of several secrets, each as `get(id, Current)` answers
    /// it: a cold start's warm-up, which Secrets Manager serves in one
    /// `BatchGetSecretValue` per 20 (one connection opened, not one per secret).
    async fn get_current_many(&self, ids: &[String]) -> Vec<Result<Option<SecretValue>, SecretError>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get(id, VersionStage::Current).await);
        }
        out
    }

    /// Forgets any cached copy of `id`, so the next `get` reads the source.
    fn invalidate(&self, _id: &str) {}

    /// Like `invalidate`, for a caller that only suspects the copy is outdated (a
    /// signature did not match: the sender may already sign with a rotated secret).
    /// A cache may refuse when it refreshed `id` this way very recently, so a flood
    /// of bad requests cannot become a flood of reads; `true` when the next `get`
    /// reads the source.
    fn refresh(&self, id: &str) -> bool {
        self.invalidate(id);
        true
    }
}

#[async_trait]
impl<S: SecretSource + ?Sized> SecretSource for std::sync::Arc<S> {
    async fn get(&self, id: &str, stage: VersionStage) -> Result<Option<SecretValue>, SecretError> {
        (**self).get(id, stage).await
    }

    async fn get_current_many(&self, ids: &[String]) -> Vec<Result<Option<SecretValue>, SecretError>> {
        (**self).get_current_many(ids).await
    }

    fn invalidate(&self, id: &str) {
        (**self).invalidate(id)
    }

    fn refresh(&self, id: &str) -> bool {
        (**self).refresh(id)
    }
}

#[derive(Debug, Clone)]
pub struct AwsSecrets {
    client: Client,
}

impl AwsSecrets {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretSource for AwsSecrets {
    async fn get(&self, id: &str, stage: VersionStage) -> Result<Option<SecretValue>, SecretError> {
        let result = self.client.get_secret_value().secret_id(id).version_stage(stage.as_str()).send().await;
        match result {
            Ok(out) => {
                let value = out.secret_string().ok_or_else(|| SecretError::NotAString(id.to_owned()))?;
                Ok(Some(read_value(value, out.created_date())))
            }
            Err(SdkError::ServiceError(e)) if matches!(e.err(), GetSecretValueError::ResourceNotFoundException(_)) => {
                // Secrets Manager says "not found" both for a missing secret and for a
                // missing stage; only the previous stage may legitimately be absent.
                if stage == VersionStage::Previous {
                    Ok(None)
                } else {
                    Err(SecretError::NotFound(id.to_owned()))
                }
            }
            Err(e) => Err(SecretError::Unavailable { id: id.to_owned(), message: DisplayErrorContext(e).to_string() }),
        }
    }

    async fn get_current_many(&self, ids: &[String]) -> Vec<Result<Option<SecretValue>, SecretError>> {
        /// `BatchGetSecretValue` takes at most this many ids.
        const PER_CALL: usize = 20;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(PER_CALL) {
            let answer = self.client.batch_get_secret_value().set_secret_id_list(Some(chunk.to_vec())).send().await;
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    let message = DisplayErrorContext(e).to_string();
                    out.extend(
                        chunk
                            .iter()
                            .map(|id| Err(SecretError::Unavailable { id: id.clone(), message: message.clone() })),
                    );
                    continue;
                }
            };
            out.extend(chunk.iter().map(|id| batch_answer(&answer, id)));
        }
        out
    }
}

/// `id`'s answer in a `BatchGetSecretValue` output, as `get(id, Current)` would give it:
/// its value, or the error the batch listed for it.
fn batch_answer(answer: &BatchGetSecretValueOutput, id: &str) -> Result<Option<SecretValue>, SecretError> {
    let is_it = |name: Option<&str>, arn: Option<&str>| name == Some(id) || arn == Some(id);
    if let Some(v) = answer.secret_values().iter().find(|v| is_it(v.name(), v.arn())) {
        let text = v.secret_string().ok_or_else(|| SecretError::NotAString(id.to_owned()))?;
        return Ok(Some(read_value(text, v.created_date())));
    }
    let message = match answer.errors().iter().find(|e| e.secret_id() == Some(id)) {
        Some(e) if e.error_code() == Some("ResourceNotFoundException") => {
            return Err(SecretError::NotFound(id.to_owned()));
        }
        Some(e) => format!("{}: {}", e.error_code().unwrap_or("error"), e.message().unwrap_or("")),
        None => "not in the batch's answer".to_owned(),
    };
    Err(SecretError::Unavailable { id: id.to_owned(), message })
}

/// A value as Secrets Manager returned it, with its version's creation time.
fn read_value(text: &str, created: Option<&aws_sdk_secretsmanager::primitives::DateTime>) -> SecretValue {
    match created {
        Some(date) => SecretValue::new(text).created_at_secs(date.secs()),
        None => SecretValue::new(text),
    }
}

/// How often `refresh` may send a secret back to the source, per secret.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Caches another source for `max_age`; `invalidate` forgets a secret so the next
/// read goes to the source (after a 401 from a destination, say); `refresh` does the
/// same at most once per [`MIN_REFRESH_INTERVAL`] per secret.
///
/// Concurrent misses of one secret are coalesced: the first reads the source, the
/// others wait for it and take its value (a cold dispatcher's batch of ten makes one
/// `GetSecretValue`, not ten). A read that began before an `invalidate` is not cached.
pub struct CachedSecrets<S> {
    inner: S,
    max_age: Duration,
    min_refresh_interval: Duration,
    cache: Mutex<HashMap<CacheKey, (Option<SecretValue>, Instant)>>,
    refreshed: Mutex<HashMap<String, Instant>>,
    /// One turn per secret and stage for reading the source.
    reading: Mutex<HashMap<CacheKey, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped by every `invalidate`: a read that saw another value is not cached.
    invalidations: std::sync::atomic::AtomicU64,
}

type CacheKey = (String, VersionStage);

impl<S: SecretSource> CachedSecrets<S> {
    pub fn new(inner: S, max_age: Duration) -> Self {
        Self {
            inner,
            max_age,
            min_refresh_interval: MIN_REFRESH_INTERVAL,
            cache: Mutex::new(HashMap::new()),
            refreshed: Mutex::new(HashMap::new()),
            reading: Mutex::new(HashMap::new()),
            invalidations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<Option<SecretValue>> {
        let cache = self.cache.lock().expect("secret cache lock");
        cache.get(key).filter(|(_, at)| at.elapsed() < self.max_age).map(|(value, _)| value.clone())
    }

    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for CachedSecrets<S> {
    async fn get(&self, id: &str, stage: VersionStage) -> Result<Option<SecretValue>, SecretError> {
        use std::sync::atomic::Ordering;
        let key = (id.to_owned(), stage);
        if let Some(value) = self.cached(&key) {
            return Ok(value);
        }
        if self.max_age.is_zero() {
            return self.inner.get(id, stage).await;
        }
        let turn = self.reading.lock().expect("secret reading lock").entry(key.clone()).or_default().clone();
        let _turn = turn.lock().await;
        // A concurrent miss may have read it while this one waited.
        if let Some(value) = self.cached(&key) {
            return Ok(value);
        }
        let seen = self.invalidations.load(Ordering::SeqCst);
        let value = self.inner.get(id, stage).await?;
        let mut cache = self.cache.lock().expect("secret cache lock");
        if self.invalidations.load(Ordering::SeqCst) == seen {
            cache.insert(key, (value.clone(), Instant::now()));
        }
        Ok(value)
    }

    /// The ones not cached are read in one call to the source and cached (unless an
    /// `invalidate` came meanwhile).
    async fn get_current_many(&self, ids: &[String]) -> Vec<Result<Option<SecretValue>, SecretError>> {
        use std::sync::atomic::Ordering;
        let mut out = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            match self.cached(&(id.clone(), VersionStage::Current)) {
                Some(value) => out.push(Ok(value)),
                None => {
                    missing.push(i);
                    let message = "no answer from the source".to_owned();
                    out.push(Err(SecretError::Unavailable { id: id.clone(), message }));
                }
            }
        }
        if missing.is_empty() {
            return out;
        }
        let seen = self.invalidations.load(Ordering::SeqCst);
        let wanted: Vec<String> = missing.iter().map(|&i| ids[i].clone()).collect();
        let read = self.inner.get_current_many(&wanted).await;
        let mut cache = self.cache.lock().expect("secret cache lock");
        let keep = !self.max_age.is_zero() && self.invalidations.load(Ordering::SeqCst) == seen;
        for (i, result) in missing.into_iter().zip(read) {
            if let (true, Ok(value)) = (keep, &result) {
                cache.insert((ids[i].clone(), VersionStage::Current), (value.clone(), Instant::now()));
            }
            out[i] = result;
        }
        out
    }

    fn invalidate(&self, id: &str) {
        let mut cache = self.cache.lock().expect("secret cache lock");
        self.invalidations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.retain(|(k, _), _| k != id);
    }

    fn refresh(&self, id: &str) -> bool {
        let now = Instant::now();
        {
            let mut refreshed = self.refreshed.lock().expect("secret refresh lock");
            if refreshed.get(id).is_some_and(|at| now.duration_since(*at) < self.min_refresh_interval) {
                return false;
            }
            refreshed.insert(id.to_owned(), now);
        }
        self.invalidate(id);
        true
    }
}

impl CachedSecrets<AwsSecrets> {
    /// Secrets Manager through a cache whose max age is `SWITCHYARD_SECRET_MAX_AGE_SECS`
    /// (default 300 s). A value that is set but not valid stops the cold start.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        let max_age = match crate::runtime::optional_env(MAX_AGE_VAR)? {
            Some(v) => max_age(&v)?,
            None => Duration::from_secs(300),
        };
        Ok(Self::new(AwsSecrets::new(Client::new(sdk)), max_age))
    }
}

const MAX_AGE_VAR: &str = "SWITCHYARD_SECRET_MAX_AGE_SECS";
/// An hour: a rotated credential is picked up within it, whatever the cache holds.
const MAX_AGE_LIMIT_SECS: u64 = 3600;

/// `SWITCHYARD_SECRET_MAX_AGE_SECS`: 0 (no caching) to an hour.
pub fn max_age(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|secs| *secs <= MAX_AGE_LIMIT_SECS)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{MAX_AGE_VAR} must be a number of seconds from 0 to {MAX_AGE_LIMIT_SECS}"))
}

/// Fixed secrets for unit tests of pure logic.
#[derive(Debug, Default)]
pub struct StaticSecrets {
    pub values: Mutex<HashMap<(String, VersionStage), String>>,
    /// Creation times (unix seconds) of the versions that have one.
    pub created: Mutex<HashMap<(String, VersionStage), i64>>,
    pub reads: std::sync::atomic::AtomicUsize,
    /// How long each read takes (for tests of concurrent readers).
    pub latency: Mutex<Duration>,
}

impl StaticSecrets {
    pub fn with(self, id: &str, stage: VersionStage, value: &str) -> Self {
        self.values.lock().expect("lock").insert((id.to_owned(), stage), value.to_owned());
        self
    }

    /// [`with`](Self::with), for a version created at `epoch_secs`.
    pub fn with_created(self, id: &str, stage: VersionStage, value: &str, epoch_secs: i64) -> Self {
        self.created.lock().expect("lock").insert((id.to_owned(), stage), epoch_secs);
        self.with(id, stage, value)
    }
}

#[async_trait]
impl SecretSource for StaticSecrets {
    async fn get(&self, id: &str, stage: VersionStage) -> Result<Option<SecretValue>, SecretError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // The value as it is when the read begins, answered after the latency.
        let key = (id.to_owned(), stage);
        let answer = match self.values.lock().expect("lock").get(&key) {
            Some(v) => {
                let value = SecretValue::new(v.clone());
                Ok(Some(match self.created.lock().expect("lock").get(&key) {
                    Some(at) => value.created_at_secs(*at),
                    None => value,
                }))
            }
            None if stage == VersionStage::Previous => Ok(None),
            None => Err(SecretError::NotFound(id.to_owned())),
        };
        let latency = *self.latency.lock().expect("lock");
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_max_age_outside_its_range_is_refused_naming_the_variable() {
        assert_eq!(super::max_age("300"), Ok(Duration::from_secs(300)));
        assert_eq!(super::max_age("0"), Ok(Duration::ZERO));
        for bad in ["-1", "3601", "5m", "", "18446744073709551616"] {
            let err = super::max_age(bad).unwrap_err();
            assert!(err.contains("SWITCHYARD_SECRET_MAX_AGE_SECS") && err.contains("3600"), "{bad}: {err}");
        }
    }

    use super::*;
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn the_cache_reads_the_source_once_until_invalidated() {
        let cached = CachedSecrets::new(
            StaticSecrets::default().with("s", VersionStage::Current, "v1"),
            Duration::from_secs(300),
        );
        for _ in 0..3 {
            assert_eq!(cached.get("s", VersionStage::Current).await.unwrap().unwrap().expose(), "v1");
        }
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 1);
        cached.inner.values.lock().unwrap().insert(("s".into(), VersionStage::Current), "v2".into());
        cached.invalidate("s");
        assert_eq!(cached.get("s", VersionStage::Current).await.unwrap().unwrap().expose(), "v2");
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn ten_concurrent_misses_of_one_secret_read_the_source_once() {
        let source = StaticSecrets::default().with("s", VersionStage::Current, "v1");
        *source.latency.lock().unwrap() = Duration::from_millis(50);
        let cached = CachedSecrets::new(source, Duration::from_secs(300));
        let reads = futures_util::future::join_all((0..10).map(|_| cached.get("s", VersionStage::Current))).await;
        assert!(reads.iter().all(|r| r.as_ref().unwrap().as_ref().unwrap().expose() == "v1"));
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 1, "concurrent misses were not coalesced");
        // Another secret, or another stage, is its own read.
        cached.get("s", VersionStage::Previous).await.unwrap();
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_begun_before_an_invalidate_is_not_cached() {
        let source = StaticSecrets::default().with("s", VersionStage::Current, "old");
        *source.latency.lock().unwrap() = Duration::from_millis(100);
        let cached = std::sync::Arc::new(CachedSecrets::new(source, Duration::from_secs(300)));
        let early = tokio::spawn({
            let cached = cached.clone();
            async move { cached.get("s", VersionStage::Current).await.unwrap().unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The credential is rotated and refused while the first read is under way.
        cached.inner.values.lock().unwrap().insert(("s".into(), VersionStage::Current), "new".into());
        cached.invalidate("s");
        assert_eq!(early.await.unwrap().expose(), "old");
        assert_eq!(cached.get("s", VersionStage::Current).await.unwrap().unwrap().expose(), "new");
    }

    #[tokio::test]
    async fn several_current_secrets_read_at_once_are_cached_and_a_missing_one_is_an_error_not_cached() {
        let cached = CachedSecrets::new(
            StaticSecrets::default().with("a", VersionStage::Current, "va").with("b", VersionStage::Current, "vb"),
            Duration::from_secs(300),
        );
        assert_eq!(cached.get("b", VersionStage::Current).await.unwrap().unwrap().expose(), "vb");
        let ids = ["a", "b", "none"].map(str::to_owned);
        let got = cached.get_current_many(&ids).await;
        assert_eq!(got[0].as_ref().unwrap().as_ref().unwrap().expose(), "va");
        assert_eq!(got[1].as_ref().unwrap().as_ref().unwrap().expose(), "vb");
        assert!(matches!(&got[2], Err(SecretError::NotFound(id)) if id == "none"), "{:?}", got[2]);
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 3, "b was cached: a and none read");
        assert_eq!(cached.get("a", VersionStage::Current).await.unwrap().unwrap().expose(), "va");
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 3, "a came from the cache");
        assert!(cached.get("none", VersionStage::Current).await.is_err());
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 4, "an error is not cached");
    }

    #[tokio::test]
    async fn the_cache_rereads_after_its_max_age() {
        let cached =
            CachedSecrets::new(StaticSecrets::default().with("s", VersionStage::Current, "v1"), Duration::ZERO);
        cached.get("s", VersionStage::Current).await.unwrap();
        cached.get("s", VersionStage::Current).await.unwrap();
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refresh_rereads_the_source_but_not_twice_within_the_minimum_interval() {
        let cached = CachedSecrets::new(
            StaticSecrets::default().with("s", VersionStage::Current, "v1"),
            Duration::from_secs(300),
        );
        cached.get("s", VersionStage::Current).await.unwrap();
        assert!(cached.refresh("s"), "the first refresh goes through");
        cached.get("s", VersionStage::Current).await.unwrap();
        assert!(!cached.refresh("s"), "a second one right after is refused");
        cached.get("s", VersionStage::Current).await.unwrap();
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 2);

        let eager = CachedSecrets::new(StaticSecrets::default(), Duration::from_secs(300))
            .with_min_refresh_interval(Duration::ZERO);
        assert!(eager.refresh("s") && eager.refresh("s"));
    }

    #[tokio::test]
    async fn a_cached_value_keeps_its_creation_time_and_equality_ignores_it() {
        let cached = CachedSecrets::new(
            StaticSecrets::default().with_created("s", VersionStage::Current, "v1", 1_700_000_000),
            Duration::from_secs(300),
        );
        for _ in 0..2 {
            let v = cached.get("s", VersionStage::Current).await.unwrap().unwrap();
            assert_eq!(v.created_at(), Some(1_700_000_000));
        }
        assert_eq!(SecretValue::new("v1").created_at_secs(1), SecretValue::new("v1"));
        assert_ne!(SecretValue::new("v1"), SecretValue::new("v2"));
    }

    #[test]
    fn secret_values_are_redacted_in_debug_output() {
        let v = SecretValue::new("hunter2");
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
