//! switchyard-ops: the operator's CLI; everything is in `switchyard_ops::cli`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    ExitCode::from(switchyard_ops::cli::main().await)
}
