//! switchyard-ops: the operator's CLI (see `switchyard-ops --help` and the README's
//! "Operating switchyard").
//!
//! Exit codes: 0 done, 1 nothing found, 2 bad arguments, 3 AWS or the flow file
//! unavailable, 130 interrupted (Ctrl-C).
//!
//! Uses the same environment as the functions: `SWITCHYARD_STAGE` (or `--stage`),
//! `SWITCHYARD_LEDGER_TABLE` (default `switchyard-{stage}-ledger`), `SWITCHYARD_CONFIG`,
//! and the AWS SDK's own variables (`AWS_ENDPOINT_URL` locally, with `make run`).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use switchyard_common::config::Config;
use switchyard_common::ledger::{DynamoLedger, IdempotencyStore, RecordKey};
use switchyard_common::names::Stage;
use switchyard_common::runtime;
use switchyard_ops::dlq::{self, DlqName, Filter, Parked};
use switchyard_ops::trace;

/// Exit codes, documented in the README.
mod exit {
    /// Found and printed.
    pub const OK: u8 = 0;
    /// Nothing matched (unknown event, wrong stage, expired).
    pub const NOT_FOUND: u8 = 1;
    /// Bad arguments (clap's own code for usage errors too).
    pub const USAGE: u8 = 2;
    /// The ledger, a queue or the flow file could not be read.
    pub const UNAVAILABLE: u8 = 3;
    /// Ctrl-C: stopped cleanly (a listing made every message visible again first).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(name = "switchyard-ops", version, about = "Operate switchyard: trace events, see what is parked and why.")]
struct Cli {
    /// Deployment stage whose table and queues to use.
    #[arg(long, global = true, env = "SWITCHYARD_STAGE", default_value = "dev")]
    stage: String,
    /// Print JSON (one document) instead of a table for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One event's whole history: intake, each flow's delivery, attempts and errors.
    Trace(TraceArgs),
    /// What is parked in the dead-letter queues, and why (read-only).
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Parked messages with their reasons, filtered, and counts by reason. Leaves the
    /// DLQs as they were: every message is visible again when the command ends.
    List(ListArgs),
    /// One parked message: its attributes and its body, redacted as in the logs.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Which DLQs (default: all three).
    #[arg(long = "dlq", value_enum)]
    dlqs: Vec<DlqName>,
    #[command(flatten)]
    filter: Filter,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The message id (as `dlq list` prints it) or the delivery id.
    id: String,
    #[arg(long = "dlq", value_enum)]
    dlqs: Vec<DlqName>,
}

#[derive(Debug, Args)]
struct TraceArgs {
    /// The provider's event id (as intake answered it in `event_id`).
    event_id: String,
    /// The source the event came from; without it every source of the flow file is tried.
    #[arg(long)]
    source: Option<String>,
}

/// A failure with the exit code it maps to and a message that says what to do.
struct Failure(u8, String);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, message)) => {
            eprintln!("switchyard-ops: {message}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let stage = Stage::new(&cli.stage).map_err(|e| Failure(exit::USAGE, e.to_string()))?;
    match cli.command {
        Command::Trace(args) => trace_command(&stage, cli.json, args).await,
        Command::Dlq(DlqCommand::List(args)) => dlq_list(&stage, cli.json, args).await,
        Command::Dlq(DlqCommand::Show(args)) => dlq_show(&stage, args).await,
    }
}

/// Scans the chosen DLQs (all when none is named); copies of one delivery count once.
async fn scan_dlqs(stage: &Stage, chosen: &[DlqName]) -> Result<(Vec<Parked>, u64), Failure> {
    let sqs = aws_sdk_sqs::Client::new(&runtime::aws_config().await);
    let chosen = if chosen.is_empty() { DlqName::ALL.to_vec() } else { chosen.to_vec() };
    let (mut messages, mut unseen) = (Vec::new(), 0);
    for name in chosen {
        let queue = stage.queue(name.queue_role());
        let url = sqs.get_queue_url().queue_name(&queue).send().await.map_err(|e| {
            let e = aws_sdk_sqs::error::DisplayErrorContext(e);
            Failure(exit::UNAVAILABLE, format!("no queue {queue}: {e} (is AWS_ENDPOINT_URL or --stage right?)"))
        })?;
        let scan = dlq::scan(&sqs, name, url.queue_url().unwrap_or_default()).await.map_err(|e| match e {
            dlq::DlqError::Interrupted => Failure(exit::INTERRUPTED, e.to_string()),
            e => Failure(exit::UNAVAILABLE, e.to_string()),
        })?;
        messages.extend(scan.messages);
        unseen += scan.unseen;
    }
    Ok((dlq::dedupe(messages), unseen))
}

async fn dlq_list(stage: &Stage, json: bool, args: ListArgs) -> Result<u8, Failure> {
    let (messages, unseen) = scan_dlqs(stage, &args.dlqs).await?;
    let selected: Vec<Parked> = messages.into_iter().filter(|m| args.filter.matches(m)).collect();
    if json {
        println!("{}", dlq::render_list_json(&selected, unseen));
    } else {
        print!("{}", dlq::render_list_text(&selected, unseen));
    }
    Ok(exit::OK)
}

async fn dlq_show(stage: &Stage, args: ShowArgs) -> Result<u8, Failure> {
    let (messages, _) = scan_dlqs(stage, &args.dlqs).await?;
    let found = messages.iter().find(|m| m.message_id == args.id || m.attribute("delivery_id") == Some(&args.id));
    match found {
        Some(m) => {
            println!("{}", serde_json::to_string_pretty(&dlq::render_show(m)).unwrap_or_default());
            Ok(exit::OK)
        }
        None => {
            eprintln!("{}: not in the DLQs of stage {stage} (replayed, expired, or another stage?)", args.id);
            Ok(exit::NOT_FOUND)
        }
    }
}

async fn trace_command(stage: &Stage, json: bool, args: TraceArgs) -> Result<u8, Failure> {
    let table = std::env::var("SWITCHYARD_LEDGER_TABLE").unwrap_or_else(|_| stage.ledger_table());
    let sources: Vec<String> = match args.source {
        Some(s) => vec![s],
        None => Config::from_env()
            .map_err(|e| Failure(exit::UNAVAILABLE, format!("{e} (or name the source with --source)")))?
            .sources
            .into_keys()
            .collect(),
    };
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&runtime::aws_config().await), &table);
    let mut found = Vec::new();
    for source in sources {
        let records = ledger.history(&RecordKey::event_pk(&source, &args.event_id)).await.map_err(|e| {
            Failure(exit::UNAVAILABLE, format!("{e} (is AWS_ENDPOINT_URL or the stage right? table {table})"))
        })?;
        if !records.is_empty() {
            found.push((format!("{source}/{}", args.event_id), trace::timeline(records)));
        }
    }
    if json {
        let events: Vec<_> = found.iter().map(|(name, records)| trace::render_json(name, records)).collect();
        println!("{}", serde_json::Value::Array(events));
    } else {
        for (name, records) in &found {
            print!("{}", trace::render_text(name, records));
        }
    }
    if found.is_empty() {
        eprintln!("{}: no records in {table} (unknown event, wrong stage, or expired)", args.event_id);
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_a_flag_wherever_it_stands_not_an_event_id() {
        for argv in [["switchyard-ops", "trace", "--json", "evt_1"], ["switchyard-ops", "--json", "trace", "evt_1"]] {
            let cli = Cli::try_parse_from(argv).expect("parses");
            assert!(cli.json);
            let Command::Trace(args) = cli.command else { panic!("not trace") };
            assert_eq!(args.event_id, "evt_1");
        }
    }

    #[test]
    fn trace_without_an_event_id_is_a_usage_error_that_names_what_is_missing() {
        let err = Cli::try_parse_from(["switchyard-ops", "trace"]).unwrap_err();
        assert_eq!(err.exit_code(), i32::from(exit::USAGE));
        assert!(err.to_string().contains("<EVENT_ID>"), "{err}");
    }
}
