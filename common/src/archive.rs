//! The event archive: every accepted envelope, kept in the stage's S3 bucket until
//! its lifecycle expires it (`ArchiveRetentionDays`, default 30), so that an event
//! can be replayed, or a new mapping tried on it, after its queues are done with it.
//!
//! One object per event at a key derived from its ledger record alone (the source,
//! the event id and the time intake accepted it — the intake record's `created_at`
//! is that time): `events/{source}/{YYYY-MM-DD}/{sha256(event id)}.json`, the body
//! being the envelope exactly as the ingest queue carried it. The ledger itself
//! still holds no payload. The date in the key lets a backtest list one source's
//! days; the hash keeps any event id a safe key.
//!
//! The mapper writes it before it maps the event: an envelope whose archive write
//! fails is retried like any transient failure, so nothing is delivered that was
//! not archived first (for a source that archives).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

use crate::envelope::sha256_hex;

/// Where envelopes are kept, under one prefix per source.
pub const ENVELOPES: &str = "events/";

/// The object key of one event's envelope.
pub fn envelope_key(source: &str, event_id: &str, accepted_at_ms: i64) -> String {
    format!("{}{}.json", day_prefix(source, accepted_at_ms), sha256_hex(event_id.as_bytes()))
}

/// The prefix of one source's envelopes accepted on the (UTC) day of `at_ms`.
pub fn day_prefix(source: &str, at_ms: i64) -> String {
    day_prefix_under(&format!("{ENVELOPES}{source}/"), at_ms)
}

/// `{under}{YYYY-MM-DD}/`: the (UTC) day of `at_ms` below a prefix.
pub fn day_prefix_under(under: &str, at_ms: i64) -> String {
    let day = chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default().format("%Y-%m-%d");
    format!("{under}{day}/")
}

/// The day prefixes of `source` from `since_ms` to `until_ms`, oldest first.
pub fn day_prefixes(source: &str, since_ms: i64, until_ms: i64) -> Vec<String> {
    days_between(since_ms, until_ms).map(|at| day_prefix(source, at)).collect()
}

/// The start of every (UTC) day from `since_ms`'s to `until_ms`'s, oldest first.
pub fn days_between(since_ms: i64, until_ms: i64) -> impl Iterator<Item = i64> {
    const DAY_MS: i64 = 86_400_000;
    let first = since_ms - since_ms.rem_euclid(DAY_MS);
    (0..).map(move |n| first + n * DAY_MS).take_while(move |at| *at <= until_ms)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("archive unavailable: {0}")]
pub struct ArchiveError(pub String);

/// One archived object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub key: String,
    pub size: u64,
    /// When it was written (S3's `LastModified`), epoch ms.
    pub written_at_ms: i64,
}

#[async_trait]
pub trait Archive: Send + Sync {
    /// Writes (or rewrites with the same bytes) one object.
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), ArchiveError>;
    /// The object's bytes; `None` when there is none (never written, or expired).
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveError>;
    /// Whether the object is there, and its size and time.
    async fn head(&self, key: &str) -> Result<Option<Archived>, ArchiveError>;
    /// Every object under `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Archived>, ArchiveError>;
}

/// The stage's bucket through the AWS SDK.
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Archive {
    /// A client for `bucket`. With an endpoint override (a local AWS-compatible
    /// server) keys are addressed by path: `bucket.127.0.0.1` would not resolve.
    pub fn new(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let mut config = aws_sdk_s3::config::Builder::from(sdk);
        if sdk.endpoint_url().is_some() {
            config = config.force_path_style(true);
        }
        Self { client: aws_sdk_s3::Client::from_conf(config.build()), bucket: bucket.into() }
    }

    /// `SWITCHYARD_ARCHIVE_BUCKET`; unset or empty: the stage keeps no archive.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Option<Self>, String> {
        Ok(crate::runtime::optional_env("SWITCHYARD_ARCHIVE_BUCKET")?
            .filter(|b| !b.trim().is_empty())
            .map(|bucket| Self::new(sdk, bucket.trim())))
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

fn unavailable<E: std::error::Error + 'static>(what: &str, key: &str, e: E) -> ArchiveError {
    ArchiveError(format!("{what} {key}: {}", DisplayErrorContext(e)))
}

fn epoch_ms(t: Option<&aws_sdk_s3::primitives::DateTime>) -> i64 {
    t.and_then(|t| t.to_millis().ok()).unwrap_or(0)
}

#[async_trait]
impl Archive for S3Archive {
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), ArchiveError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("PutObject", key, e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let bytes = out.body.collect().await.map_err(|e| unavailable("GetObject", key, e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(unavailable("GetObject", key, e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<Archived>, ArchiveError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(Archived {
                key: key.to_owned(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                written_at_ms: epoch_ms(out.last_modified()),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(unavailable("HeadObject", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Archived>, ArchiveError> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable("ListObjectsV2", prefix, e))?;
            for o in page.contents() {
                out.push(Archived {
                    key: o.key().unwrap_or_default().to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    written_at_ms: epoch_ms(o.last_modified()),
                });
            }
        }
        Ok(out)
    }
}

/// An archive in memory, for unit tests of the code that writes and reads it.
#[derive(Default)]
pub struct MemoryArchive {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Every write fails while set (an unavailable bucket).
    pub failing: std::sync::atomic::AtomicBool,
}

impl MemoryArchive {
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }
}

#[async_trait]
impl Archive for MemoryArchive {
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), ArchiveError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ArchiveError(format!("PutObject {key}: unavailable")));
        }
        self.objects.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), body.to_vec());
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        Ok(self.objects.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned())
    }

    async fn head(&self, key: &str) -> Result<Option<Archived>, ArchiveError> {
        let objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        Ok(objects.get(key).map(|b| Archived { key: key.to_owned(), size: b.len() as u64, written_at_ms: 0 }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Archived>, ArchiveError> {
        let objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        Ok(objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, b)| Archived { key: k.clone(), size: b.len() as u64, written_at_ms: 0 })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_key_follows_from_its_source_id_and_acceptance_day_and_is_safe_for_any_id() {
        // 2026-12-03T10:00:00Z
        let at = 1_796_292_000_000;
        let key = envelope_key("stripe", "evt_1", at);
        assert_eq!(key, format!("events/stripe/2026-12-03/{}.json", sha256_hex(b"evt_1")));
        assert_eq!(key, envelope_key("stripe", "evt_1", at + 3_600_000), "same day, same key");
        assert_ne!(key, envelope_key("stripe", "evt_2", at));
        assert_ne!(key, envelope_key("github", "evt_1", at));
        let odd = envelope_key("stripe", "../a b/ü?", at);
        assert!(odd.starts_with("events/stripe/2026-12-03/") && !odd.contains(".."), "{odd}");
    }

    #[test]
    fn the_day_prefixes_of_a_window_cover_every_day_it_touches() {
        let day = 86_400_000;
        let start = 1_796_292_000_000; // 2026-12-03T10:00Z
        assert_eq!(day_prefixes("s", start, start), vec!["events/s/2026-12-03/".to_owned()]);
        let three = day_prefixes("s", start - day, start + day);
        assert_eq!(three, ["events/s/2026-12-02/", "events/s/2026-12-03/", "events/s/2026-12-04/"]);
    }

    #[tokio::test]
    async fn the_memory_archive_lists_by_prefix_and_answers_none_for_a_missing_key() {
        let a = MemoryArchive::default();
        a.put("events/s/2026-12-03/a.json", b"1").await.unwrap();
        a.put("events/s/2026-12-04/b.json", b"22").await.unwrap();
        a.put("events/t/2026-12-03/c.json", b"3").await.unwrap();
        let listed: Vec<_> = a.list("events/s/").await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(listed, ["events/s/2026-12-03/a.json", "events/s/2026-12-04/b.json"]);
        assert_eq!(a.get("events/s/none.json").await.unwrap(), None);
        assert_eq!(a.head("events/s/2026-12-04/b.json").await.unwrap().map(|o| o.size), Some(2));
    }
}
