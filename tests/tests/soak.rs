//! A small chaos soak in `make test` (issue 7, part 5; `make soak` runs the full one):
//! a few hundred events with duplicates, changed bodies and malformed requests, the
//! runner killed once with SIGKILL and restarted, a flaky destination with a short
//! outage. Every event must be delivered exactly once or parked with a reason, and
//! every request answered as documented.

use std::time::Duration;

use switchyard_e2e::soak::{self, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_soak_with_a_killed_runner_accounts_for_every_event() {
    let mut settings = Settings::from_env();
    settings.events = 300;
    settings.kills = 1;
    settings.outage = Duration::from_secs(5);
    // A dead runner's messages come back after this (the template's 120 s would make
    // the test wait two minutes for them).
    settings.visibility_secs = Some(30);
    settings.drain_timeout = Duration::from_secs(240);
    settings.work_dir = std::env::temp_dir().join(format!("switchyard-soak-{}", uuid::Uuid::new_v4()));
    let tally = soak::run(&settings).await.expect("the soak ran");
    print!("{}", tally.report);
    assert!(tally.passed(), "the soak found unaccounted events or wrong answers:\n{}", tally.report);
    // Kept when the test fails: the runner's logs are the evidence.
    let _ = std::fs::remove_dir_all(&settings.work_dir);
}
