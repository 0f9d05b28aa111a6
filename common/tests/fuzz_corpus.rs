//! Replays what the fuzzers found: every committed seed under `fuzz/corpus/<target>/`
//! and every crash under `fuzz/artifacts/<target>/`, through the same function the
//! cargo-fuzz target calls, in an ordinary stable `cargo test`. A crash that comes
//! back fails here without nightly or cargo-fuzz.

use std::path::Path;

use switchyard_common::fuzz_entry::{replay_committed, TARGETS};

#[test]
fn every_committed_seed_and_crash_of_every_target_replays_without_panicking() {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (name, run) in TARGETS {
        let replay = replay_committed(&fuzz_dir, name, run);
        assert!(replay.seeds > 0, "fuzz/corpus/{name} has no seeds");
        assert!(replay.failed.is_empty(), "{name}: these inputs panic again:\n{}", replay.failed.join("\n"));
    }
}
