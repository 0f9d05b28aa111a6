//! `make soak`: the chaos soak with the settings of `SOAK_*` variables (README,
//! "Chaos soak"). Prints the tally; exits 1 if any event is unaccounted for.

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let settings = switchyard_e2e::soak::Settings::from_env();
    match switchyard_e2e::soak::run(&settings).await {
        Ok(tally) => {
            print!("{}", tally.report);
            std::process::exit(if tally.passed() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    }
}
