//! rotator: the Secrets Manager rotation function for the secrets switchyard owns.
//!
//! Secrets Manager calls it four times per rotation, with the same
//! `ClientRequestToken` (the id of the new version):
//!
//! 1. `createSecret` — a new value, derived from the shape of the current one, is put
//!    as `AWSPENDING` with the token as its version id.
//! 2. `setSecret` — nothing to do: no external system holds a copy switchyard must
//!    update. Secrets a provider checks (inbound signing secrets) are set at the
//!    provider by hand or through its API; a destination that verifies our key reads
//!    it from the same secret (`AWSCURRENT` and `AWSPREVIOUS`).
//! 3. `testSecret` — the pending value parses and is usable for what the flow file
//!    uses the secret for (a source's signature scheme, a destination's auth kind or
//!    outbound signing).
//! 4. `finishSecret` — `AWSCURRENT` moves to the new version (the old one becomes
//!    `AWSPREVIOUS`), and `AWSPENDING` is removed from it explicitly.
//!
//! Every step is idempotent: Secrets Manager retries failed invocations, and a step
//! run again finds its work done and changes nothing. Values are never logged.

mod check;
mod generate;
mod memory;
mod port;
mod sdk;
mod steps;

pub use check::usable;
pub use generate::next_value;
pub use memory::MemoryVersions;
pub use port::{RotationError, SecretDescription, SecretVersions, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
pub use sdk::AwsSecretVersions;
pub use steps::{Done, RotationEvent, Rotator, Step};
