//! intake: API Gateway → verified, deduplicated CloudEvents envelope on the ingest queue.

mod deps;
pub mod fuzz_entry;
mod handler;
mod respond;

pub use deps::{Deps, Limits};
pub use handler::{handle, warm_up};
