//! The `switchyard-ops` command line built inside the test crate, so that end-to-end
//! tests can run it as a process of its own (and interrupt it).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(switchyard_ops::cli::main().await)
}
