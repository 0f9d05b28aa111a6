//! dispatcher: deliveries from the dispatch queue → calls on destination APIs, each
//! claimed in the ledger first so that a destination sees it once in effect.

pub mod backstop;
mod call;
mod deps;
mod handler;

pub use call::{read, warm_up, ReadBack};
pub use deps::{http_client, Deps, Settings};
pub use handler::handle;
