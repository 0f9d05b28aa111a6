//! The operator CLI's logic: turning ledger records into a timeline.

pub mod trace;
