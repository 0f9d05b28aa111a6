//! switchyard-local serve | send — see the README and `switchyard_local::cli`.

#[tokio::main]
async fn main() {
    std::process::exit(switchyard_local::cli::main().await);
}
