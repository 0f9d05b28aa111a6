//! mapper: envelopes from the ingest queue → one delivery per matching flow on the
//! dispatch queue, each mapped by its jq program and checked against its contract.

mod deps;
mod handler;

pub use deps::{check_ordered_delivery, Deps};
pub use handler::{handle, map_envelope, map_flow, Mapped, NotMapped};
