//! The poller: reads the flow file's polling sources (`kind = "poll"`) on a schedule.
//! EventBridge Scheduler invokes it every minute; each invocation reads the sources
//! that are due (`every_secs` since their last run), page by page from the cursor
//! kept in the ledger, and puts each record on the ingest queue as an envelope —
//! from there a polled record is mapped and delivered like any webhook's event.

pub mod cursor;
mod deps;
pub mod run;

pub use deps::Deps;
pub use run::{handle, poll_source, RunReport};
