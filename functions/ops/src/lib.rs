//! The operator CLI's logic: ledger records as a timeline, DLQ listings.

pub mod dlq;
pub mod trace;
