//! The event archive: every accepted envelope, kept in the stage's S3 bucket until
//! its lifecycle expires it (`ArchiveRetentionDays`, default 30), so that an event
//! can be replayed, or a new mapping tried on it, after its queues are done with it.
//!
//! The mapper writes one object per batch, per source and acceptance minute (the
//! intake record's `created_at` is that time), of at most [`PER_OBJECT`] envelopes:
//! `events/{source}/{YYYY-MM-DD}/{HHMM}/{h1}-{h2}-….jsonl`, one envelope per line,
//! exactly as the ingest queue carried it; `hN` are the first 12 hex digits of
//! sha256(event id), sorted. One PUT per batch instead of one per event ($0.50 per
//! million events at full batches instead of $5.00); the key alone still finds an
//! event: list its minute (a read-only operator sees keys, never payloads), take the
//! object whose name holds its hash, read its line. The same set of events always
//! makes the same key and bytes, so a batch retried whole rewrites its own object; a
//! batch retried in part writes another object holding some of the same envelopes:
//! readers take an event once ([`EnvelopeReader`]). Objects from before (one per
//! event, `events/{source}/{YYYY-MM-DD}/{sha256(event id)}.json`) are still read.
//! The ledger itself still holds no payload.
//!
//! The mapper writes them before it maps the batch: an envelope whose object cannot
//! be written is retried like any transient failure, so nothing is delivered that
//! was not archived first (for a source that archives).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

use crate::envelope::sha256_hex;

/// Where envelopes are kept, under one prefix per source.
pub const ENVELOPES: &str = "events/";

/// At most this many envelopes in one object (its key stays < 500 bytes).
pub const PER_OBJECT: usize = 32;

/// The hex digits of sha256(event id) an object's name carries per event.
const HASH_DIGITS: usize = 12;

/// The key of a one-event object as the archive wrote them before batches (still read).
pub fn envelope_key(source: &str, event_id: &str, accepted_at_ms: i64) -> String {
    format!("{}{}.json", day_prefix(source, accepted_at_ms), sha256_hex(event_id.as_bytes()))
}

/// The prefix of one source's objects for the (UTC) minute of `at_ms`.
pub fn minute_prefix(source: &str, at_ms: i64) -> String {
    let minute = chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default().format("%H%M");
    format!("{}{minute}/", day_prefix(source, at_ms))
}

fn short_hash(event_id: &str) -> String {
    short_of(&sha256_hex(event_id.as_bytes())).to_owned()
}

/// The part of an event id's full sha256 (hex) that an object's name carries.
fn short_of(full_hash: &str) -> &str {
    full_hash.get(..HASH_DIGITS).unwrap_or(full_hash)
}

/// One object's worth of envelopes: their key and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub key: String,
    pub body: Vec<u8>,
}

/// The objects one batch of `(source, event id, acceptance time, envelope as queued)`
/// is archived in: grouped by source and minute, [`PER_OBJECT`] at most each, one
/// envelope per line, ordered by hash (so the same events make the same object).
/// Returns each object with the indexes of the items it holds. An event twice in the
/// batch is written once (both indexes point at its object).
pub fn batches<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, i64, &'a str)>) -> Vec<(Batch, Vec<usize>)> {
    // (source, minute) -> hash -> (body, indexes)
    type Group<'a> = BTreeMap<String, (&'a str, Vec<usize>)>;
    let mut groups: BTreeMap<(&str, i64), Group<'a>> = BTreeMap::new();
    for (i, (source, event_id, at_ms, body)) in items.into_iter().enumerate() {
        let minute = at_ms - at_ms.rem_euclid(60_000);
        let entry = groups.entry((source, minute)).or_default().entry(short_hash(event_id)).or_insert((body, vec![]));
        entry.1.push(i);
    }
    let mut out = Vec::new();
    for ((source, minute), group) in groups {
        let group: Vec<_> = group.into_iter().collect();
        for chunk in group.chunks(PER_OBJECT) {
            let names: Vec<&str> = chunk.iter().map(|(h, _)| h.as_str()).collect();
            let key = format!("{}{}.jsonl", minute_prefix(source, minute), names.join("-"));
            let mut body = Vec::new();
            for (_, (text, _)) in chunk {
                // A raw line break in JSON is whitespace (never inside a string): a space
                // keeps the envelope as it was and the object one line per envelope.
                body.extend(text.bytes().map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
                body.push(b'\n');
            }
            let indexes = chunk.iter().flat_map(|(_, (_, ix))| ix.iter().copied()).collect();
            out.push((Batch { key, body }, indexes));
        }
    }
    out
}

/// Whether the object at `key` may hold `event_id` (its name carries the event's
/// hash; a one-event object from before is its full hash).
pub fn may_hold(key: &str, event_id: &str) -> bool {
    name_holds(key, &sha256_hex(event_id.as_bytes()))
}

/// [`may_hold`] with the event id's sha256 (hex) computed once by the caller.
fn name_holds(key: &str, full_hash: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or_default();
    match name.strip_suffix(".jsonl") {
        Some(hashes) => hashes.split('-').any(|h| h == short_of(full_hash)),
        None => name.strip_suffix(".json") == Some(full_hash),
    }
}

/// The envelopes (as text) in one object's bytes: one per line of a `.jsonl` object,
/// the whole body of a one-event `.json` object.
pub fn envelope_texts<'a>(key: &str, bytes: &'a [u8]) -> Vec<std::borrow::Cow<'a, str>> {
    if key.ends_with(".jsonl") {
        bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(String::from_utf8_lossy)
            .collect()
    } else {
        vec![String::from_utf8_lossy(bytes)]
    }
}

/// Where one event's envelope is looked for: its source, id and acceptance time (all
/// from its intake record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    pub source: String,
    pub event_id: String,
    pub accepted_at_ms: i64,
}

impl Locator {
    /// The prefix listed to find it (what an operator is told when it is not there).
    pub fn prefix(&self) -> String {
        minute_prefix(&self.source, self.accepted_at_ms)
    }

    /// The objects that may hold it, from listings only (`s3:ListBucket`): its
    /// minute's objects whose name carries its hash, then a one-event object from
    /// before batches.
    pub async fn candidates(&self, archive: &dyn Archive) -> Result<Vec<Archived>, ArchiveError> {
        let full = sha256_hex(self.event_id.as_bytes());
        let mut found: Vec<Archived> =
            archive.list(&self.prefix()).await?.into_iter().filter(|o| name_holds(&o.key, &full)).collect();
        if found.is_empty() {
            let old = envelope_key(&self.source, &self.event_id, self.accepted_at_ms);
            found.extend(archive.list(&old).await?.into_iter().filter(|o| o.key == old));
        }
        Ok(found)
    }

    /// Its envelope as archived, with the key of the object it was read from.
    pub async fn fetch(&self, archive: &dyn Archive) -> Result<Option<(String, String)>, ArchiveError> {
        for object in self.candidates(archive).await? {
            let Some(bytes) = archive.get(&object.key).await? else { continue };
            for text in envelope_texts(&object.key, &bytes) {
                if event_id_of(&text).as_deref() == Some(self.event_id.as_str()) {
                    return Ok(Some((object.key, text.into_owned())));
                }
            }
        }
        Ok(None)
    }
}

/// The `id` of an envelope's text, without reading the rest of it.
fn event_id_of(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_str::<Id>(text).ok().map(|i| i.id)
}

/// Reads objects' envelopes once each: an event archived by two attempts of a batch
/// (in two objects) is read from the first.
#[derive(Default)]
pub struct EnvelopeReader {
    seen: std::collections::HashSet<(String, String)>,
}

impl EnvelopeReader {
    /// The envelopes of `object` not read before; a line that is not an envelope is an
    /// error naming the object.
    pub fn read(&mut self, object: &Archived, bytes: &[u8]) -> Result<Vec<crate::envelope::Envelope>, String> {
        let mut out = Vec::new();
        for text in envelope_texts(&object.key, bytes) {
            let envelope = crate::envelope::Envelope::from_json(&text).map_err(|e| format!("{}: {e}", object.key))?;
            if self.seen.insert((envelope.source_name().to_owned(), envelope.id.clone())) {
                out.push(envelope);
            }
        }
        Ok(out)
    }
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

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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

/// The writing side of an archive, all the mapper (envelopes) and the dispatcher (dark
/// and recorded requests) do with it. A function that holds only this links none of
/// S3's read operations (`Archive`'s methods would all be kept through its vtable).
#[async_trait]
pub trait ArchiveWriter: Send + Sync {
    /// Writes (or rewrites with the same bytes) one object.
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), ArchiveError>;
}

/// An archive to read as well: the operator tools and the reconciler.
#[async_trait]
pub trait Archive: ArchiveWriter {
    /// The object's bytes; `None` when there is none (never written, or expired).
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveError>;
    /// Whether the object is there, and its size and time.
    async fn head(&self, key: &str) -> Result<Option<Archived>, ArchiveError>;
    /// Every object under `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Archived>, ArchiveError>;
}

/// The S3 client for `sdk`. With an endpoint override (a local AWS-compatible server)
/// keys are addressed by path: `bucket.127.0.0.1` would not resolve.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::config::Builder::from(sdk);
    if sdk.endpoint_url().is_some() {
        config = config.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// The stage's bucket through the AWS SDK.
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Archive {
    /// A client for `bucket` ([`s3_client`]).
    pub fn new(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        Self { client: s3_client(sdk), bucket: bucket.into() }
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
impl ArchiveWriter for S3Archive {
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
}

#[async_trait]
impl Archive for S3Archive {
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
impl ArchiveWriter for MemoryArchive {
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), ArchiveError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ArchiveError(format!("PutObject {key}: unavailable")));
        }
        self.objects.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), body.to_vec());
        Ok(())
    }
}

#[async_trait]
impl Archive for MemoryArchive {
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

    fn envelope(id: &str, at: i64) -> String {
        let time = chrono::DateTime::from_timestamp_millis(at).unwrap().to_rfc3339();
        let data = serde_json::json!({ "n": id });
        serde_json::to_string(&crate::envelope::Envelope::new("stripe", id.into(), "t".into(), time, data, "c".into()))
            .unwrap()
    }

    #[test]
    fn a_batch_is_one_object_per_source_and_minute_whose_key_names_every_event_it_holds() {
        let at = 1_796_292_000_000; // 10:00:00Z
        let (a, b, c, d) =
            (envelope("evt_a", at), envelope("evt_b", at + 59_000), envelope("evt_c", at + 60_000), "{}");
        let items = [
            ("stripe", "evt_a", at, a.as_str()),
            ("stripe", "evt_b", at + 59_000, b.as_str()),
            ("stripe", "evt_c", at + 60_000, c.as_str()),
            ("github", "evt_a", at, d),
            ("stripe", "evt_a", at, a.as_str()),
        ];
        let out = batches(items);
        assert_eq!(out.len(), 3, "stripe 10:00, stripe 10:01, github 10:00");
        let (first, ix) = out.iter().find(|(b, _)| b.key.starts_with("events/stripe/2026-12-03/1000/")).unwrap();
        let mut ix = ix.clone();
        ix.sort_unstable();
        assert_eq!(ix, [0, 1, 4], "the duplicate shares its object");
        assert!(first.key.ends_with(".jsonl"));
        assert!(may_hold(&first.key, "evt_a") && may_hold(&first.key, "evt_b") && !may_hold(&first.key, "evt_c"));
        let texts = envelope_texts(&first.key, &first.body);
        assert_eq!(texts.len(), 2, "evt_a once");
        assert!(texts.iter().any(|t| t == &a) && texts.iter().any(|t| t == &b), "each line as queued");
        assert_eq!(batches([items[1], items[0]])[0].0, batches([items[0], items[1]])[0].0, "same events, same object");
        assert!(out.iter().any(|(b, _)| b.key.starts_with("events/stripe/2026-12-03/1001/")));
        assert!(out.iter().any(|(b, _)| b.key.starts_with("events/github/2026-12-03/1000/")));
    }

    #[test]
    fn a_large_batch_is_split_into_objects_of_at_most_per_object_envelopes_and_line_breaks_never_split_one() {
        let at = 1_796_292_000_000;
        let ids: Vec<String> = (0..PER_OBJECT + 5).map(|i| format!("evt_{i}")).collect();
        let body = "{\"id\":\n\"x\"}";
        let out = batches(ids.iter().map(|id| ("s", id.as_str(), at, body)));
        assert_eq!(out.iter().map(|(_, ix)| ix.len()).collect::<Vec<_>>(), [PER_OBJECT, 5]);
        for (b, ix) in &out {
            assert!(b.key.len() < 500, "{}", b.key.len());
            assert_eq!(envelope_texts(&b.key, &b.body).len(), ix.len());
            assert!(envelope_texts(&b.key, &b.body)
                .iter()
                .all(|t| serde_json::from_str::<serde_json::Value>(t).is_ok()));
        }
    }

    #[tokio::test]
    async fn a_locator_finds_an_event_in_its_minutes_batch_or_in_a_one_event_object_from_before() {
        let a = MemoryArchive::default();
        let at = 1_796_292_000_000;
        let (e1, e2) = (envelope("evt_1", at), envelope("evt_2", at + 1_000));
        for (b, _) in batches([("stripe", "evt_1", at, e1.as_str()), ("stripe", "evt_2", at + 1_000, e2.as_str())]) {
            a.put(&b.key, &b.body).await.unwrap();
        }
        let old = envelope("evt_old", at);
        a.put(&envelope_key("stripe", "evt_old", at), old.as_bytes()).await.unwrap();
        let find = |id: &str| Locator { source: "stripe".into(), event_id: id.into(), accepted_at_ms: at + 500 };
        let (key, text) = find("evt_2").fetch(&a).await.unwrap().expect("in the batch");
        assert_eq!(text, e2);
        assert!(key.starts_with("events/stripe/2026-12-03/1000/"), "{key}");
        assert_eq!(find("evt_old").fetch(&a).await.unwrap().map(|(_, t)| t), Some(old));
        assert_eq!(find("evt_old").candidates(&a).await.unwrap().len(), 1);
        assert_eq!(find("evt_none").fetch(&a).await.unwrap(), None);
        assert!(find("evt_none").candidates(&a).await.unwrap().is_empty());
        let elsewhere = Locator { accepted_at_ms: at + 60_000, ..find("evt_1") };
        assert_eq!(elsewhere.fetch(&a).await.unwrap(), None, "another minute's prefix");
    }

    #[test]
    fn a_reader_takes_an_event_archived_twice_once_and_names_the_object_of_a_line_that_is_no_envelope() {
        let at = 1_796_292_000_000;
        let (e1, e2) = (envelope("evt_1", at), envelope("evt_2", at));
        let whole = batches([("stripe", "evt_1", at, e1.as_str()), ("stripe", "evt_2", at, e2.as_str())]);
        let part = batches([("stripe", "evt_2", at, e2.as_str())]);
        let mut reader = EnvelopeReader::default();
        let object = |b: &Batch| Archived { key: b.key.clone(), size: b.body.len() as u64, written_at_ms: 0 };
        let ids = |v: Vec<crate::envelope::Envelope>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(reader.read(&object(&whole[0].0), &whole[0].0.body).unwrap()).len(), 2);
        assert!(reader.read(&object(&part[0].0), &part[0].0.body).unwrap().is_empty(), "evt_2 again");
        let bad = Archived { key: "events/s/2026-12-03/1000/x.jsonl".into(), size: 0, written_at_ms: 0 };
        let err = reader.read(&bad, b"not json\n").unwrap_err();
        assert!(err.starts_with("events/s/2026-12-03/1000/x.jsonl"), "{err}");
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
