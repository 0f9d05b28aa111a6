//! Replays the `intake_request` fuzz target's committed seeds (`fuzz/corpus/`) and
//! crashes (`fuzz/artifacts/`) through the same function the cargo-fuzz target
//! calls: intake's whole request path against in-memory ports.

use std::path::Path;

use switchyard_common::fuzz_entry::replay_committed;
use switchyard_intake::fuzz_entry::request;

#[test]
fn every_committed_intake_request_seed_and_crash_replays_without_panicking() {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let replay = replay_committed(&fuzz_dir, "intake_request", request);
    assert!(replay.seeds > 0, "fuzz/corpus/intake_request has no seeds");
    assert!(replay.failed.is_empty(), "these inputs panic again:\n{}", replay.failed.join("\n"));
}
