//! The `switchyard-local` command line (serve | send), in the library so that the
//! end-to-end tests can start the very same program as a process of their own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::destinations::{self, DEFAULT_SINK};
use crate::pipeline::{Deps, Pipeline};
use crate::send::{send, SendArgs};
use crate::sink::Sink;
use crate::stack::Stack;
use switchyard_common::config::Config;
use switchyard_common::runtime;

const USAGE: &str = "usage:
  switchyard-local serve [--stack .local/stack.json] [--config config/flows.toml]
                         [--intake 127.0.0.1:3000] [--sink 127.0.0.1:3001] [--sink-file .local/sink.jsonl]
  switchyard-local send SOURCE PAYLOAD.json [--url http://127.0.0.1:3000] [--config config/flows.toml]
                         [--secrets infra/local-secrets.json] [--event-type TYPE]";

struct Args {
    positional: Vec<String>,
    options: std::collections::HashMap<String, String>,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut options = std::collections::HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            options.insert(name.to_owned(), value);
        } else {
            positional.push(a);
        }
    }
    Ok(Args { positional, options })
}

impl Args {
    fn opt(&self, name: &str, default: &str) -> String {
        self.options.get(name).cloned().unwrap_or_else(|| default.to_owned())
    }
}

/// Runs the command in `std::env::args()`; returns the process exit code.
pub async fn main() -> i32 {
    match run().await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("switchyard-local: {e}\n\n{USAGE}");
            2
        }
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let config_path = PathBuf::from(args.opt("config", "config/flows.toml"));
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    config.check_programs(switchyard_common::config::Programs::All).map_err(|e| e.to_string())?;
    config.check_contracts().map_err(|e| e.to_string())?;
    match args.positional.first().map(String::as_str) {
        Some("serve") => serve(&args, config).await,
        Some("send") => {
            let (Some(source), Some(payload)) = (args.positional.get(1), args.positional.get(2)) else {
                return Err("send needs SOURCE and PAYLOAD".to_owned());
            };
            let (status, body) = send(SendArgs {
                source,
                payload: &PathBuf::from(payload),
                url: &args.opt("url", "http://127.0.0.1:3000"),
                config: &config,
                secrets_file: &PathBuf::from(args.opt("secrets", "infra/local-secrets.json")),
                event_type: args.options.get("event-type").map(String::as_str),
            })
            .await?;
            println!("{status} {body}");
            Ok(())
        }
        _ => Err("which command?".to_owned()),
    }
}

async fn serve(args: &Args, mut config: Config) -> Result<(), String> {
    runtime::init_logging();
    let stack = Stack::load(&PathBuf::from(args.opt("stack", ".local/stack.json")))?;
    let addr = |name: &str, default: &str| -> Result<SocketAddr, String> {
        args.opt(name, default).parse().map_err(|e| format!("--{name}: {e}"))
    };
    let sink_file = PathBuf::from(args.opt("sink-file", ".local/sink.jsonl"));
    if let Some(dir) = sink_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let sink_addr =
        Sink::to_file(sink_file.clone()).start(addr("sink", DEFAULT_SINK)?).await.map_err(|e| e.to_string())?;
    // Destinations as a deployed function resolves them (plus: the example ones follow the sink).
    let routes = destinations::resolve(&mut config, sink_addr).map_err(|e| e.to_string())?;
    let sdk = runtime::aws_config().await;
    let deps = Deps::new(&sdk, &stack, Arc::new(config)).await?;
    let pipeline =
        Pipeline::start(&sdk, &stack, deps, addr("intake", "127.0.0.1:3000")?).await.map_err(|e| e.to_string())?;
    let routes: String = routes.iter().map(|r| format!("\n    {r}")).collect();
    eprintln!(
        "\nswitchyard is running (stage {}, AWS endpoint {}).\n  intake:       {}\n  sink:         http://{sink_addr} (requests appended to {})\n  destinations:{routes}\n\nSend a signed sample event:\n  cargo run -q -p switchyard-local -- send stripe events/stripe/payment_intent.succeeded.json\n\nCtrl-C stops.\n",
        stack.stage,
        stack.endpoint,
        pipeline.intake_url("{source}"),
        sink_file.display(),
    );
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    Ok(())
}
