//! Arming a claim for an operator's replay: the one decision, shared by every store,
//! about what a replay may do to a delivery's claim.
//!
//! A replay is identified by `replay_id` (derived by the CLI from the delivery and the
//! patch), which the armed record keeps through the dispatcher's claim and completion.
//! That is what makes a rerun of the same replay harmless: it finds its own mark.

use super::{LedgerRecord, RecordKey, Status};

#[derive(Debug, Clone)]
pub struct ArmRequest {
    /// The claim key the dispatcher will use for the replayed delivery.
    pub key: RecordKey,
    /// The replayed delivery's payload hash (as the dispatcher computes it).
    pub payload_hash: String,
    pub replay_id: String,
    /// Re-send a delivery that is already `COMPLETED`.
    pub force: bool,
    pub now_ms: i64,
    pub expires_at_s: i64,
    pub correlation_id: String,
    pub flow: String,
    pub destination: String,
    pub entity: Option<String>,
    /// The log of the event's own record when the claim is a shared one (a flow's own
    /// idempotency key, or a patched replay's): carried into the claim, so that the
    /// outcome mirrored back into the event's history keeps what it told before
    /// (e.g. the mapper parking it).
    pub history: Vec<String>,
}

/// The log an armed record starts from: entries of `history` it lacks, then its own,
/// then the arm's entry.
pub(crate) fn armed_log(existing: Option<&LedgerRecord>, request: &ArmRequest) -> Vec<String> {
    let own = existing.map(|r| r.log.as_slice()).unwrap_or_default();
    let mut log: Vec<String> = request.history.iter().filter(|e| !own.contains(e)).cloned().collect();
    log.extend(own.iter().cloned());
    log.push(super::log_entry(
        request.now_ms,
        Status::Failed,
        None,
        &format!("armed for replay {}", request.replay_id),
    ));
    log
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArmOutcome {
    /// Claimable by the replayed delivery, with a whole retry budget; `attempts_before`
    /// is what the parked delivery had spent.
    Armed { attempts_before: u32 },
    /// This same replay already delivered it (a rerun): the DLQ copy can go.
    AlreadyReplayed,
    /// Delivered (or settled without sending) and not ours: refused without `force`.
    AlreadyDelivered { summary: Option<String> },
    /// Another worker is delivering or retrying it right now: leave the DLQ copy.
    Busy,
}

/// What to do given the record at the key (if any). `Some(n)`: write the arm, the
/// parked attempts being `n`; `None` with an outcome: write nothing.
pub(crate) fn decide(existing: Option<&LedgerRecord>, request: &ArmRequest) -> Result<u32, ArmOutcome> {
    let Some(r) = existing.filter(|r| r.expires_at_s > request.now_ms / 1000) else {
        return Ok(0);
    };
    let ours = r.replay_id.as_deref() == Some(request.replay_id.as_str());
    match r.status {
        Status::Parked => Ok(r.attempts),
        Status::Completed if ours => Err(ArmOutcome::AlreadyReplayed),
        Status::Completed if request.force => Ok(r.attempts),
        Status::Completed | Status::Stale | Status::Filtered | Status::Audit => {
            Err(ArmOutcome::AlreadyDelivered { summary: r.summary.clone().or(r.reason.clone()) })
        }
        // Armed by an earlier run of this replay (it died before deleting the DLQ copy,
        // or the delivery is on its way): send again; the dispatcher's claim absorbs it.
        Status::Failed | Status::InProgress if ours => Err(ArmOutcome::Armed { attempts_before: r.attempts }),
        Status::InProgress if r.in_progress_until_ms.unwrap_or(0) <= request.now_ms => Ok(r.attempts),
        Status::Failed | Status::InProgress => Err(ArmOutcome::Busy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(force: bool) -> ArmRequest {
        ArmRequest {
            key: RecordKey::delivery("stripe", "evt_1", "crm", 1),
            payload_hash: "h2".into(),
            replay_id: "r1".into(),
            force,
            now_ms: 10_000,
            expires_at_s: 1_000_000,
            correlation_id: "c".into(),
            flow: "crm".into(),
            destination: "crm".into(),
            entity: None,
            history: Vec::new(),
        }
    }

    fn record(status: Status, replay_id: Option<&str>) -> LedgerRecord {
        let mut r = LedgerRecord::new(RecordKey::delivery("stripe", "evt_1", "crm", 1), status, 1_000, 1_000_000);
        r.attempts = 9;
        r.replay_id = replay_id.map(str::to_owned);
        r.summary = Some("HTTP 201".into());
        r
    }

    #[test]
    fn a_parked_delivery_is_armed_and_reports_what_it_had_spent() {
        assert_eq!(decide(Some(&record(Status::Parked, None)), &request(false)), Ok(9));
        assert_eq!(decide(None, &request(false)), Ok(0));
    }

    #[test]
    fn a_delivered_one_is_refused_unless_forced() {
        let done = record(Status::Completed, None);
        assert_eq!(
            decide(Some(&done), &request(false)),
            Err(ArmOutcome::AlreadyDelivered { summary: Some("HTTP 201".into()) })
        );
        assert_eq!(decide(Some(&done), &request(true)), Ok(9));
    }

    #[test]
    fn a_rerun_finds_its_own_replay_delivered_even_when_forced() {
        let done = record(Status::Completed, Some("r1"));
        assert_eq!(decide(Some(&done), &request(false)), Err(ArmOutcome::AlreadyReplayed));
        assert_eq!(decide(Some(&done), &request(true)), Err(ArmOutcome::AlreadyReplayed));
    }

    #[test]
    fn a_delivery_being_retried_by_someone_else_is_left_alone_but_our_own_is_sent_again() {
        assert_eq!(decide(Some(&record(Status::Failed, None)), &request(false)), Err(ArmOutcome::Busy));
        assert_eq!(
            decide(Some(&record(Status::Failed, Some("r1"))), &request(false)),
            Err(ArmOutcome::Armed { attempts_before: 9 })
        );
    }

    #[test]
    fn an_expired_record_is_as_good_as_none() {
        let mut gone = record(Status::Completed, None);
        gone.expires_at_s = 5;
        assert_eq!(decide(Some(&gone), &request(false)), Ok(0));
    }
}
