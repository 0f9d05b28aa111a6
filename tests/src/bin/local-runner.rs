//! The `switchyard-local` command line built inside the test crate, so that the soak
//! and the end-to-end tests can start the runner as a process of its own (cargo builds
//! a package's own binaries for its integration tests, not another package's).

#[tokio::main]
async fn main() {
    std::process::exit(switchyard_local::cli::main().await);
}
