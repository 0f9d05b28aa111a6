//! Secrets from Secrets Manager, cached per container.
//!
//! Always asks for a version stage explicitly (`AWSCURRENT`, `AWSPREVIOUS`): without
//! one, some endpoints return a stale version after a rotation moved the stages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::Client;

/// A secret value. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

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

    /// Forgets any cached copy of `id`, so the next `get` reads the source.
    fn invalidate(&self, _id: &str) {}
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
            Ok(out) => out
                .secret_string()
                .map(|v| Some(SecretValue::new(v)))
                .ok_or_else(|| SecretError::NotAString(id.to_owned())),
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
}

/// Caches another source for `max_age`; `invalidate` forgets a secret so the next
/// read goes to the source (after a 401 from a destination, say).
pub struct CachedSecrets<S> {
    inner: S,
    max_age: Duration,
    cache: Mutex<HashMap<CacheKey, (Option<SecretValue>, Instant)>>,
}

type CacheKey = (String, VersionStage);

impl<S: SecretSource> CachedSecrets<S> {
    pub fn new(inner: S, max_age: Duration) -> Self {
        Self { inner, max_age, cache: Mutex::new(HashMap::new()) }
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for CachedSecrets<S> {
    async fn get(&self, id: &str, stage: VersionStage) -> Result<Option<SecretValue>, SecretError> {
        let key = (id.to_owned(), stage);
        if let Some((value, at)) = self.cache.lock().expect("secret cache lock").get(&key) {
            if at.elapsed() < self.max_age {
                return Ok(value.clone());
            }
        }
        let value = self.inner.get(id, stage).await?;
        self.cache.lock().expect("secret cache lock").insert(key, (value.clone(), Instant::now()));
        Ok(value)
    }

    fn invalidate(&self, id: &str) {
        self.cache.lock().expect("secret cache lock").retain(|(k, _), _| k != id);
    }
}

/// Fixed secrets for unit tests of pure logic.
#[derive(Debug, Default)]
pub struct StaticSecrets {
    pub values: Mutex<HashMap<(String, VersionStage), String>>,
    pub reads: std::sync::atomic::AtomicUsize,
}

impl StaticSecrets {
    pub fn with(self, id: &str, stage: VersionStage, value: &str) -> Self {
        self.values.lock().expect("lock").insert((id.to_owned(), stage), value.to_owned());
        self
    }
}

#[async_trait]
impl SecretSource for StaticSecrets {
    async fn get(&self, id: &str, stage: VersionStage) -> Result<Option<SecretValue>, SecretError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let values = self.values.lock().expect("lock");
        match values.get(&(id.to_owned(), stage)) {
            Some(v) => Ok(Some(SecretValue::new(v.clone()))),
            None if stage == VersionStage::Previous => Ok(None),
            None => Err(SecretError::NotFound(id.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
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
    async fn the_cache_rereads_after_its_max_age() {
        let cached =
            CachedSecrets::new(StaticSecrets::default().with("s", VersionStage::Current, "v1"), Duration::ZERO);
        cached.get("s", VersionStage::Current).await.unwrap();
        cached.get("s", VersionStage::Current).await.unwrap();
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn secret_values_are_redacted_in_debug_output() {
        let v = SecretValue::new("hunter2");
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
