//! One poller invocation as EventBridge Scheduler makes it, as a process of its own
//! (so that a test can SIGKILL it mid-run): the poller's `Deps` from the same
//! environment as in AWS, every polling source read now (`force`), the reports
//! printed as JSON. Exit 0 when no run stopped early, 1 otherwise.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    switchyard_common::runtime::init_logging();
    let sdk = switchyard_common::runtime::aws_config().await;
    let deps = match switchyard_poller::Deps::from_env(&sdk).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("poll-once: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    let only = std::env::args().nth(1);
    let reports = switchyard_poller::handle(&deps, only.as_deref(), true, i64::MAX).await;
    println!("{}", serde_json::to_string(&reports).unwrap_or_default());
    std::process::ExitCode::from(u8::from(reports.iter().any(|r| r.error.is_some())))
}
