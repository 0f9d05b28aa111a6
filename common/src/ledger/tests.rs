use super::*;

fn request(now_ms: i64) -> ClaimRequest {
    ClaimRequest {
        key: RecordKey::delivery("stripe", "evt_1", "crm", 1),
        payload_hash: "h1".into(),
        now_ms,
        in_progress_until_ms: now_ms + 10_000,
        expires_at_s: now_ms / 1000 + 3600,
        correlation_id: "c".into(),
        flow: Some("crm".into()),
        destination: Some("crm".into()),
        entity: None,
        index_correlation: false,
    }
}

#[tokio::test]
async fn a_new_key_is_claimed_and_a_second_claim_sees_it_in_progress() {
    let ledger = MemoryLedger::new();
    assert_eq!(ledger.claim(&request(1_000)).await.unwrap(), ClaimOutcome::Claimed { attempt: 1, unknown_outcomes: 0 });
    assert_eq!(ledger.claim(&request(2_000)).await.unwrap(), ClaimOutcome::InProgress);
}

#[tokio::test]
async fn a_completed_key_is_a_duplicate_that_returns_the_stored_summary() {
    let ledger = MemoryLedger::new();
    let r = request(1_000);
    ledger.claim(&r).await.unwrap();
    ledger.complete(&r.key, "201", 1_500).await.unwrap();
    assert_eq!(
        ledger.claim(&request(2_000)).await.unwrap(),
        ClaimOutcome::AlreadyCompleted { summary: Some("201".into()) }
    );
}

#[tokio::test]
async fn an_in_progress_claim_past_its_expiry_is_taken_over_and_counted() {
    let ledger = MemoryLedger::new();
    ledger.claim(&request(1_000)).await.unwrap();
    // The first worker died: its in-progress expiry (11 000) has passed.
    assert_eq!(
        ledger.claim(&request(12_000)).await.unwrap(),
        ClaimOutcome::Claimed { attempt: 2, unknown_outcomes: 0 }
    );
}

#[tokio::test]
async fn a_released_claim_can_be_claimed_again_and_keeps_its_history() {
    let ledger = MemoryLedger::new();
    let r = request(1_000);
    ledger.claim(&r).await.unwrap();
    ledger.release(&r.key, FailureClass::Transient, "HTTP 503", 1_100).await.unwrap();
    assert_eq!(ledger.claim(&request(1_200)).await.unwrap(), ClaimOutcome::Claimed { attempt: 2, unknown_outcomes: 0 });
    let history = ledger.history(&r.key.pk).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].created_at_ms, 1_000);
    assert_eq!(history[0].attempts, 2);
}

#[tokio::test]
async fn the_same_key_with_a_different_payload_is_refused() {
    let ledger = MemoryLedger::new();
    ledger.claim(&request(1_000)).await.unwrap();
    let mut other = request(20_000);
    other.payload_hash = "h2".into();
    assert_eq!(ledger.claim(&other).await.unwrap(), ClaimOutcome::PayloadMismatch);
}

#[tokio::test]
async fn a_parked_key_stays_parked_and_remembers_why_and_after_how_many_attempts() {
    let ledger = MemoryLedger::new();
    let r = request(1_000);
    ledger.claim(&r).await.unwrap();
    ledger.park(&r.key, FailureClass::Terminal, "HTTP 400", "dispatch", 1_100).await.unwrap();
    assert_eq!(
        ledger.claim(&request(2_000)).await.unwrap(),
        ClaimOutcome::AlreadyParked {
            reason: Some("HTTP 400".into()),
            error_class: Some("terminal".into()),
            attempts: 1
        }
    );
}

#[tokio::test]
async fn an_expired_record_is_claimed_afresh_even_if_completed() {
    let ledger = MemoryLedger::new();
    let r = request(1_000);
    ledger.claim(&r).await.unwrap();
    ledger.complete(&r.key, "201", 1_100).await.unwrap();
    let later = request(1_000 + 3_601_000);
    assert!(matches!(ledger.claim(&later).await.unwrap(), ClaimOutcome::Claimed { .. }));
}

#[test]
fn keys_put_an_events_records_under_one_partition() {
    let intake = RecordKey::intake("stripe", "evt_1");
    let delivery = RecordKey::delivery("stripe", "evt_1", "crm", 2);
    assert_eq!(intake.pk, delivery.pk);
    assert_eq!(delivery.sk, "DELIVERY#crm#v2");
}

#[tokio::test]
async fn mirroring_copies_an_outcome_into_the_events_partition() {
    let ledger = MemoryLedger::new();
    let mut r = request(1_000);
    r.key = RecordKey::keyed_delivery("crm", 1, "pi_123");
    ledger.claim(&r).await.unwrap();
    ledger.complete(&r.key, "HTTP 201", 1_100).await.unwrap();
    let event_key = RecordKey::delivery("stripe", "evt_1", "crm", 1);
    ledger.mirror(&r.key, &event_key).await.unwrap();
    let history = ledger.history(&event_key.pk).await.unwrap();
    assert_eq!((history[0].status, history[0].summary.as_deref()), (Status::Completed, Some("HTTP 201")));
}

#[test]
fn keyed_delivery_keys_are_shared_by_equal_keys_and_differ_by_flow_version() {
    assert_eq!(RecordKey::keyed_delivery("crm", 1, "k"), RecordKey::keyed_delivery("crm", 1, "k"));
    assert_ne!(RecordKey::keyed_delivery("crm", 1, "k"), RecordKey::keyed_delivery("crm", 2, "k"));
}

#[test]
fn only_failed_attempts_sent_without_an_answer_count_as_unknown_outcomes() {
    let log = [
        log_entry(1, Status::Failed, Some(FailureClass::Transient), "HTTP 503 from crm"),
        log_entry(2, Status::Failed, Some(FailureClass::Transient), "sent, no answer: timeout calling crm"),
        log_entry(3, Status::Failed, Some(FailureClass::Transient), "connection failed calling crm"),
        log_entry(4, Status::Failed, Some(FailureClass::Transient), "sent, no answer: request failed calling crm"),
        log_entry(5, Status::Completed, None, "sent, no answer: not a failure entry"),
    ];
    assert_eq!(unknown_outcomes(&log), 2);
}

#[tokio::test]
async fn a_claim_given_back_unused_is_not_counted_and_can_be_claimed_again() {
    let ledger = MemoryLedger::new();
    assert!(matches!(ledger.claim(&request(1_000)).await.unwrap(), ClaimOutcome::Claimed { attempt: 1, .. }));
    ledger.unclaim(&request(0).key, 1, "held back: rate_limit", 1_001).await.unwrap();
    assert_eq!(ledger.claim(&request(1_002)).await.unwrap(), ClaimOutcome::Claimed { attempt: 1, unknown_outcomes: 0 });
    // Not ours any more (another attempt number): untouched.
    ledger.unclaim(&request(0).key, 7, "held back", 1_003).await.unwrap();
    let history = ledger.history(&request(0).key.pk).await.unwrap();
    assert_eq!((history[0].status, history[0].attempts), (Status::InProgress, 1));
}
