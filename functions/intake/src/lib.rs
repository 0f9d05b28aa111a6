//! intake: API Gateway → verified, deduplicated CloudEvents envelope on the ingest queue.

mod deps;
mod handler;
mod respond;

pub use deps::{Deps, Limits};
pub use handler::handle;
