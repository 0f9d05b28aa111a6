//! The operator CLI's logic: ledger records as a timeline, DLQ listings, audited
//! actions, replay.

pub mod audit;
pub mod cli;
pub mod destinations;
pub mod diff;
pub mod dlq;
pub mod flows;
pub mod replay;
pub mod trace;
