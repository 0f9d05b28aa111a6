//! switchyard-ops trace EVENT_ID [--source NAME] [--json]
//!
//! Reads `SWITCHYARD_STAGE` (default dev), `SWITCHYARD_LEDGER_TABLE` (default
//! `switchyard-{stage}-ledger`) and the usual AWS environment (`AWS_ENDPOINT_URL` locally).

use switchyard_common::config::Config;
use switchyard_common::ledger::{DynamoLedger, IdempotencyStore, RecordKey};
use switchyard_common::names::Stage;
use switchyard_common::runtime;
use switchyard_ops::trace;

const USAGE: &str = "usage: switchyard-ops trace EVENT_ID [--source NAME] [--json]";

#[tokio::main]
async fn main() {
    match run().await {
        Ok(found) => std::process::exit(if found { 0 } else { 1 }),
        Err(e) => {
            eprintln!("switchyard-ops: {e}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

async fn run() -> Result<bool, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some("trace"), Some(event_id)) = (args.first().map(String::as_str), args.get(1)) else {
        return Err("which event?".to_owned());
    };
    let json = args.iter().any(|a| a == "--json");
    let source = args.iter().position(|a| a == "--source").and_then(|i| args.get(i + 1)).cloned();
    let stage = Stage::new(&std::env::var("SWITCHYARD_STAGE").unwrap_or_else(|_| "dev".to_owned()))
        .map_err(|e| e.to_string())?;
    let table = std::env::var("SWITCHYARD_LEDGER_TABLE").unwrap_or_else(|_| stage.ledger_table());
    let sources: Vec<String> = match source {
        Some(s) => vec![s],
        None => Config::from_env().map_err(|e| e.to_string())?.sources.keys().cloned().collect(),
    };
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&runtime::aws_config().await), table);
    let mut found = false;
    for source in sources {
        let records = ledger.history(&RecordKey::event_pk(&source, event_id)).await.map_err(|e| e.to_string())?;
        if records.is_empty() {
            continue;
        }
        found = true;
        let records = trace::timeline(records);
        let name = format!("{source}/{event_id}");
        if json {
            println!("{}", trace::render_json(&name, &records));
        } else {
            print!("{}", trace::render_text(&name, &records));
        }
    }
    if !found {
        eprintln!("{event_id}: no records in the ledger (unknown event, wrong stage, or expired)");
    }
    Ok(found)
}
