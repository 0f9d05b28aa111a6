//! switchyard-ops: the operator's CLI (see `switchyard-ops --help` and the README's
//! "Operating switchyard").
//!
//! Exit codes: 0 done, 1 nothing found or selected, 2 bad arguments, 3 AWS or the flow
//! file unavailable, 4 a replay left some selected messages failed, 130 interrupted
//! (Ctrl-C).
//!
//! Uses the same environment as the functions: `SWITCHYARD_STAGE` (or `--stage`),
//! `SWITCHYARD_LEDGER_TABLE` (default `switchyard-{stage}-ledger`), `SWITCHYARD_CONFIG`,
//! and the AWS SDK's own variables (`AWS_ENDPOINT_URL` locally, with `make run`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use clap::{Args, Parser, Subcommand};
use switchyard_common::archive::{Archive, S3Archive};
use switchyard_common::config::Config;
use switchyard_common::gate::{DynamoGate, GateStore};
use switchyard_common::ledger::{entity_hash, DynamoLedger, IdempotencyStore, RecordKey};
use switchyard_common::names::Stage;
use switchyard_common::runtime::{self, now_ms};

use crate::dlq::{self, DlqName, Filter, Parked};
use crate::replay::{self, Patch};
use crate::{audit, destinations, flows, trace};

/// Exit codes, documented in the README.
pub mod exit {
    /// Found and printed; replayed everything selected.
    pub const OK: u8 = 0;
    /// Nothing matched (unknown event, wrong stage, expired, nothing selected).
    pub const NOT_FOUND: u8 = 1;
    /// Bad arguments (clap's own code for usage errors too).
    pub const USAGE: u8 = 2;
    /// The ledger, a queue, STS or the flow file could not be reached or read.
    pub const UNAVAILABLE: u8 = 3;
    /// A replay could not replay some selected messages (they are still in the DLQ).
    pub const PARTIAL: u8 = 4;
    /// Ctrl-C: stopped cleanly (every message not replayed is visible again).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-ops",
    version,
    about = "Operate switchyard: trace and find events, see what is parked and why, replay it."
)]
struct Cli {
    /// Deployment stage whose table and queues to use.
    #[arg(long, global = true, env = "SWITCHYARD_STAGE", default_value = "dev")]
    stage: String,
    /// Print JSON (one document) instead of text for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One event's whole history: intake, the mapper's decisions, each delivery attempt,
    /// operator actions.
    Trace(TraceArgs),
    /// Events by business key (a flow's entity_key) or by correlation id, with their
    /// timelines.
    Find(FindArgs),
    /// What is parked in the dead-letter queues, and why.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Send parked messages again: a dry run unless --yes; guarded and audited.
    Replay(ReplayArgs),
    /// Each destination's rate limit and circuit breaker: as configured and as they
    /// stand now (open, half-open, paused by a Retry-After).
    Destinations,
    /// Two versions of a flow compared event by event: live against dark (`diff`),
    /// or any two over archived events, sending nothing (`backtest`).
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// What the scheduled reconciler found at a flow's destination; --repair re-sends
    /// what it is missing through the guarded replay.
    #[command(subcommand)]
    Reconcile(ReconcileCommand),
}

#[derive(Debug, Subcommand)]
enum ReconcileCommand {
    /// The latest reconciliation report of a flow: equal, missing, different (which
    /// fields), unreadable, unknown at the destination.
    Report(ReconcileArgs),
}

#[derive(Debug, Args)]
struct ReconcileArgs {
    /// The flow's name.
    flow: String,
    /// The latest report made at or after: RFC 3339 or an age (30m, 2h, 7d).
    #[arg(long, value_parser = dlq::parse_time, default_value = "7d")]
    since: i64,
    /// Re-send the report's missing deliveries from the archive (`replay --archived
    /// --flow FLOW --force`): a dry run unless --yes.
    #[arg(long)]
    repair: bool,
    /// Why (kept in each replay's audit record); needed to send.
    #[arg(long, requires = "repair")]
    reason: Option<String>,
    #[arg(long, requires = "repair")]
    yes: bool,
}

#[derive(Debug, Subcommand)]
enum FlowsCommand {
    /// What version --from sent against what version --to (dark) recorded it would
    /// send: identical, different (a redacted diff per distinct change), one side only.
    Diff(FlowDiffArgs),
    /// Maps archived events with two versions of the flow file's flow and compares
    /// the requests they would make. Sends nothing.
    Backtest(BacktestArgs),
}

#[derive(Debug, Args)]
struct FlowDiffArgs {
    /// The flow's name.
    name: String,
    /// The version that sent (usually the live one).
    #[arg(long)]
    from: u32,
    /// The version that recorded (usually the dark one).
    #[arg(long)]
    to: u32,
    /// Recorded at or after: RFC 3339 or an age (30m, 2h, 7d).
    #[arg(long, value_parser = dlq::parse_time, default_value = "24h")]
    since: i64,
    /// Recorded before: RFC 3339 or an age.
    #[arg(long, value_parser = dlq::parse_time)]
    until: Option<i64>,
}

#[derive(Debug, Args)]
struct BacktestArgs {
    /// The flow's name.
    name: String,
    /// The version to try (in the flow file, any mode: off is fine).
    #[arg(long)]
    version: u32,
    /// The version to compare it with (default: the live one).
    #[arg(long)]
    against: Option<u32>,
    /// Events accepted at or after: RFC 3339 or an age (30m, 2h, 7d).
    #[arg(long, value_parser = dlq::parse_time, default_value = "7d")]
    since: i64,
    /// Accepted before: RFC 3339 or an age.
    #[arg(long, value_parser = dlq::parse_time)]
    until: Option<i64>,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Parked deliveries with their reasons, filtered, and counts by reason. Reads the
    /// ledger's parked index; --scan reads the queues themselves (leaving them as
    /// they were).
    List(ListArgs),
    /// One parked message: its attributes and its body, redacted as in the logs.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Which DLQs (default: all three).
    #[arg(long = "dlq", value_enum)]
    dlqs: Vec<DlqName>,
    /// Read the DLQs themselves instead of the ledger's index: also lists messages the
    /// ledger never recorded (a malformed body, a message SQS's redrive moved).
    #[arg(long)]
    scan: bool,
    #[command(flatten)]
    filter: Filter,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The message id or the delivery id (as `dlq list` prints them).
    id: String,
    #[arg(long = "dlq", value_enum)]
    dlqs: Vec<DlqName>,
    /// Print the body in clear. Writes an audit record (who, when) in the event's
    /// history; needs the operator-replay policy.
    #[arg(long)]
    reveal: bool,
    /// Why you need to see it in clear (kept in the audit record).
    #[arg(long, requires = "reveal")]
    reason: Option<String>,
}

#[derive(Debug, Args)]
struct TraceArgs {
    /// The provider's event id (as intake answered it in `event_id`).
    event_id: String,
    /// The source the event came from; without it every source of the flow file is tried.
    #[arg(long)]
    source: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("by").required(true).args(["key", "correlation"])))]
struct FindArgs {
    /// The flow whose entity_key the key is (with --key).
    #[arg(long, requires = "key")]
    flow: Option<String>,
    /// The business key's value, e.g. INV-1042 (hashed before the lookup).
    #[arg(long, requires = "flow")]
    key: Option<String>,
    /// A correlation id (intake's X-Correlation-Id, or the one it generated).
    #[arg(long)]
    correlation: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("selection").required(true).multiple(true)
    .args(["ids", "flow", "destination", "error_class", "reason_text", "since", "until", "all"])))]
struct ReplayArgs {
    /// Message ids or delivery ids (as `dlq list` prints them); with --archived, event
    /// ids. Without ids, the filters select.
    ids: Vec<String>,
    /// The ids are event ids (as intake answered them), replayed from the event
    /// archive instead of a DLQ: any archived event, also one whose queues are long
    /// done with it, through the current version of each flow that wants it.
    #[arg(long, requires = "ids", conflicts_with_all = ["dlqs", "destination", "error_class", "reason_text", "since", "until", "all"])]
    archived: bool,
    /// With --archived: the events' source (default: whichever source has them).
    #[arg(long, requires = "archived")]
    source: Option<String>,
    /// Which DLQs (default: all three).
    #[arg(long = "dlq", value_enum)]
    dlqs: Vec<DlqName>,
    /// Only messages of this flow.
    #[arg(long)]
    flow: Option<String>,
    /// Only deliveries to this destination.
    #[arg(long)]
    destination: Option<String>,
    /// Only this error class (terminal, transient, auth).
    #[arg(long = "class")]
    error_class: Option<String>,
    /// Only reasons containing this text (case-insensitive).
    #[arg(long = "reason-text")]
    reason_text: Option<String>,
    /// Parked at or after: RFC 3339 or an age (30m, 2h, 7d).
    #[arg(long, value_parser = dlq::parse_time)]
    since: Option<i64>,
    /// Parked before: RFC 3339 or an age.
    #[arg(long, value_parser = dlq::parse_time)]
    until: Option<i64>,
    /// Every parked message (of the chosen DLQs).
    #[arg(long)]
    all: bool,
    /// Why (kept in each replayed event's audit record). Required with --yes.
    #[arg(long)]
    reason: Option<String>,
    /// A jq program that corrects the payload (the provider's event for an ingest-DLQ
    /// envelope, the request body for a delivery), e.g. '.data.object.receipt_email = "x@y.z"'.
    #[arg(long, conflicts_with = "edit")]
    patch: Option<String>,
    /// Edit the payload in $EDITOR (one message, named by its id).
    #[arg(long)]
    edit: bool,
    /// Replay at most this many messages.
    #[arg(long)]
    max: Option<usize>,
    /// At most this many sends per second (e.g. 50).
    #[arg(long)]
    rate: Option<f64>,
    /// Send again even what the ledger says was delivered.
    #[arg(long)]
    force: bool,
    /// Send. Without it nothing changes: a dry run prints what would be sent.
    #[arg(long)]
    yes: bool,
    /// Print each message's request (and diff) also when sending.
    #[arg(long, short)]
    verbose: bool,
}

/// A failure with the exit code it maps to and a message that says what to do.
struct Failure(u8, String);

/// Parses the command line, runs it, and returns the exit code (errors on stderr).
pub async fn main() -> u8 {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(Failure(code, message)) => {
            eprintln!("switchyard-ops: {message}");
            code
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let stage = Stage::new(&cli.stage).map_err(|e| Failure(exit::USAGE, e.to_string()))?;
    match cli.command {
        Command::Trace(args) => trace_command(&stage, cli.json, args).await,
        Command::Find(args) => find_command(&stage, cli.json, args).await,
        Command::Dlq(DlqCommand::List(args)) => dlq_list(&stage, cli.json, args).await,
        Command::Dlq(DlqCommand::Show(args)) => dlq_show(&stage, args).await,
        Command::Replay(args) => replay_command(&stage, cli.json, args).await,
        Command::Destinations => destinations_command(&stage, cli.json).await,
        Command::Flows(FlowsCommand::Diff(args)) => flows_diff(&stage, cli.json, args).await,
        Command::Flows(FlowsCommand::Backtest(args)) => flows_backtest(&stage, cli.json, args).await,
        Command::Reconcile(ReconcileCommand::Report(args)) => Box::pin(reconcile_report(&stage, cli.json, args)).await,
    }
}

/// The latest report of `flow` written at or after `since_ms`, with its key.
async fn latest_report(
    archive: &S3Archive,
    flow: &str,
    since_ms: i64,
) -> Result<Option<switchyard_reconciler::Report>, Failure> {
    let prefix = format!("{}{flow}/", switchyard_reconciler::REPORTS);
    let listed = archive.list(&prefix).await.map_err(|e| Failure(exit::UNAVAILABLE, e.to_string()))?;
    let Some(latest) = listed.into_iter().filter(|o| o.written_at_ms >= since_ms).max_by_key(|o| o.written_at_ms)
    else {
        return Ok(None);
    };
    let bytes =
        archive.get(&latest.key).await.map_err(|e| Failure(exit::UNAVAILABLE, e.to_string()))?.unwrap_or_default();
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Failure(exit::UNAVAILABLE, format!("{} is not a reconciliation report: {e}", latest.key)))
}

async fn reconcile_report(stage: &Stage, json: bool, args: ReconcileArgs) -> Result<u8, Failure> {
    let sdk = runtime::aws_config().await;
    let archive = S3Archive::new(&sdk, archive_bucket(stage, &sdk).await?);
    let Some(report) = latest_report(&archive, &args.flow, args.since).await? else {
        eprintln!(
            "switchyard-ops: no reconciliation report of flow {} since then (has the reconciler run?)",
            args.flow
        );
        return Ok(exit::NOT_FOUND);
    };
    if json {
        println!("{}", serde_json::to_value(&report).unwrap_or_default());
    } else {
        print!("{}", reconcile_text(&report));
    }
    if !args.repair {
        return Ok(exit::OK);
    }
    let Some(source) = report.missing.first().map(|f| f.source.clone()) else {
        eprintln!("switchyard-ops: nothing missing: nothing to repair");
        return Ok(exit::OK);
    };
    // The repair is the guarded replay from the archive, with its every guard.
    let mut argv: Vec<String> =
        ["switchyard-ops", "--stage", stage.as_str(), "replay", "--archived"].map(String::from).to_vec();
    argv.extend(report.missing.iter().map(|f| f.event_id.clone()));
    argv.extend(["--source".into(), source, "--flow".into(), report.flow.clone(), "--force".into()]);
    if let Some(reason) = &args.reason {
        argv.extend(["--reason".into(), reason.clone()]);
    }
    if args.yes {
        argv.push("--yes".into());
    }
    let cli = Cli::try_parse_from(argv).map_err(|e| Failure(exit::USAGE, e.to_string()))?;
    Box::pin(run(cli)).await
}

fn reconcile_text(r: &switchyard_reconciler::Report) -> String {
    let mut out = format!(
        "reconcile {} v{} at {}: deliveries of {} .. {}, read back {}\n  checked: {}\n  equal: {}\n  missing: {}\n  different: {}\n  unreadable: {}\n",
        r.flow,
        r.version,
        r.destination,
        runtime::rfc3339(r.since_ms),
        runtime::rfc3339(r.until_ms),
        runtime::rfc3339(r.ran_at_ms),
        r.checked,
        r.equal,
        r.missing.len(),
        r.different.len(),
        r.unreadable.len(),
    );
    if r.listed {
        out.push_str(&format!("  at the destination, explained by no delivery of the window: {}\n", r.unknown.len()));
    }
    for f in &r.missing {
        out.push_str(&format!("missing    {}/{}\n", f.source, f.event_id));
    }
    for f in &r.different {
        out.push_str(&format!("different  {}/{} ({})\n", f.source, f.event_id, f.fields.join(", ")));
    }
    for f in &r.unreadable {
        out.push_str(&format!("unreadable {}/{}: {}\n", f.source, f.event_id, f.reason.as_deref().unwrap_or_default()));
    }
    out
}

/// Prints a comparison; nothing compared is exit 1 (wrong window, name or stage?).
fn print_comparison(json: bool, c: &flows::Comparison) -> u8 {
    if json {
        println!("{}", flows::to_json(c));
    } else {
        print!("{}", flows::render_text(c));
    }
    if c.events == 0 {
        eprintln!("switchyard-ops: nothing to compare in that window (is the name, the window or the stage right?)");
        return exit::NOT_FOUND;
    }
    exit::OK
}

async fn flows_diff(stage: &Stage, json: bool, args: FlowDiffArgs) -> Result<u8, Failure> {
    let sdk = runtime::aws_config().await;
    let archive = S3Archive::new(&sdk, archive_bucket(stage, &sdk).await?);
    let (ledger, _) = ledger(stage).await;
    let window = (args.since, args.until.unwrap_or(now_ms() + 60_000));
    let c = flows::diff_recorded(&archive, &ledger, &args.name, (args.from, args.to), window)
        .await
        .map_err(|e| Failure(exit::UNAVAILABLE, e))?;
    Ok(print_comparison(json, &c))
}

async fn flows_backtest(stage: &Stage, json: bool, args: BacktestArgs) -> Result<u8, Failure> {
    let config = Config::from_env().map_err(|e| Failure(exit::UNAVAILABLE, format!("flow file: {e}")))?;
    let to = config.flow(&args.name, args.version).ok_or_else(|| {
        Failure(exit::USAGE, format!("flow {} has no version {} in the flow file", args.name, args.version))
    })?;
    let from = match args.against {
        Some(v) => config.flow(&args.name, v),
        None => config.live_flow(&args.name),
    }
    .ok_or_else(|| Failure(exit::USAGE, format!("flow {} has no version to compare with (--against)", args.name)))?;
    let sdk = runtime::aws_config().await;
    let archive = S3Archive::new(&sdk, archive_bucket(stage, &sdk).await?);
    let window = (args.since, args.until.unwrap_or(now_ms() + 60_000));
    let c = flows::backtest(&archive, &config, (from, to), window).await.map_err(|e| Failure(exit::UNAVAILABLE, e))?;
    Ok(print_comparison(json, &c))
}

async fn destinations_command(stage: &Stage, json: bool) -> Result<u8, Failure> {
    let config = Config::from_env().map_err(|e| Failure(exit::UNAVAILABLE, format!("flow file: {e}")))?;
    let table = table(stage);
    let gate = DynamoGate::new(aws_sdk_dynamodb::Client::new(&runtime::aws_config().await), &table);
    let mut rows = Vec::new();
    for d in config.destinations.values() {
        let state = gate.read(&d.name).await.map_err(|e| {
            Failure(exit::UNAVAILABLE, format!("{e} (is AWS_ENDPOINT_URL or the stage right? table {table})"))
        })?;
        rows.push((d, state));
    }
    let now = now_ms();
    if json {
        let all: Vec<_> = rows.iter().map(|(d, s)| destinations::to_json(d, s, now)).collect();
        println!("{}", serde_json::Value::Array(all));
    } else {
        print!("{}", destinations::render_text(&rows, now));
    }
    Ok(exit::OK)
}

fn unavailable(table: &str) -> impl Fn(switchyard_common::ledger::LedgerError) -> Failure + '_ {
    move |e| Failure(exit::UNAVAILABLE, format!("{e} (is AWS_ENDPOINT_URL or the stage right? table {table})"))
}

/// The stage's archive bucket: `SWITCHYARD_ARCHIVE_BUCKET`, else the template's name
/// for it (`switchyard-{stage}-archive-{account}-{region}`, the account from STS).
async fn archive_bucket(stage: &Stage, sdk: &aws_config::SdkConfig) -> Result<String, Failure> {
    if let Ok(bucket) = std::env::var("SWITCHYARD_ARCHIVE_BUCKET") {
        if !bucket.trim().is_empty() {
            return Ok(bucket.trim().to_owned());
        }
    }
    let who = aws_sdk_sts::Client::new(sdk).get_caller_identity().send().await.map_err(|e| {
        Failure(
            exit::UNAVAILABLE,
            format!("cannot find the archive bucket: {}", aws_sdk_sts::error::DisplayErrorContext(e)),
        )
    })?;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    Ok(format!("switchyard-{stage}-archive-{}-{region}", who.account().unwrap_or_default()))
}

fn table(stage: &Stage) -> String {
    std::env::var("SWITCHYARD_LEDGER_TABLE").unwrap_or_else(|_| stage.ledger_table())
}

async fn ledger(stage: &Stage) -> (DynamoLedger, String) {
    let table = table(stage);
    (DynamoLedger::new(aws_sdk_dynamodb::Client::new(&runtime::aws_config().await), &table), table)
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, Failure> {
    let out = sqs.get_queue_url().queue_name(name).send().await.map_err(|e| {
        let e = aws_sdk_sqs::error::DisplayErrorContext(e);
        Failure(exit::UNAVAILABLE, format!("no queue {name}: {e} (is AWS_ENDPOINT_URL or --stage right?)"))
    })?;
    Ok(out.queue_url().unwrap_or_default().to_owned())
}

fn chosen(dlqs: &[DlqName]) -> Vec<DlqName> {
    if dlqs.is_empty() {
        DlqName::ALL.to_vec()
    } else {
        dlqs.to_vec()
    }
}

/// Scans the chosen DLQs (all when none is named); copies of one delivery count once.
async fn scan_dlqs(stage: &Stage, chosen_dlqs: &[DlqName]) -> Result<(Vec<Parked>, u64), Failure> {
    let sqs = aws_sdk_sqs::Client::new(&runtime::aws_config().await);
    let (mut messages, mut unseen) = (Vec::new(), 0);
    for name in chosen(chosen_dlqs) {
        let url = queue_url(&sqs, &stage.queue(name.queue_role())).await?;
        let scan = dlq::scan(&sqs, name, &url).await.map_err(|e| match e {
            dlq::DlqError::Interrupted => Failure(exit::INTERRUPTED, e.to_string()),
            e => Failure(exit::UNAVAILABLE, e.to_string()),
        })?;
        messages.extend(scan.messages);
        unseen += scan.unseen;
    }
    Ok((dlq::dedupe(messages), unseen))
}

async fn dlq_list(stage: &Stage, json: bool, args: ListArgs) -> Result<u8, Failure> {
    if args.scan {
        let (messages, unseen) = scan_dlqs(stage, &args.dlqs).await?;
        let selected: Vec<Parked> = messages.into_iter().filter(|m| args.filter.matches(m)).collect();
        if json {
            println!("{}", dlq::render_list_json(&selected, unseen));
        } else {
            print!("{}", dlq::render_list_text(&selected, unseen));
        }
        return Ok(exit::OK);
    }
    // The ledger is the index, the DLQs the store of bodies: one Query, no receive.
    let (ledger, table) = ledger(stage).await;
    let since = args.filter.since.unwrap_or(0);
    let until = args.filter.until.unwrap_or(now_ms() + 60_000);
    let chosen = chosen(&args.dlqs);
    let indexed: Vec<Parked> = ledger
        .parked(since, until)
        .await
        .map_err(unavailable(&table))?
        .iter()
        .filter_map(dlq::from_record)
        .filter(|m| chosen.contains(&m.dlq))
        .collect();
    // What the queues hold beyond the index: parked without a ledger record.
    let sqs = aws_sdk_sqs::Client::new(&runtime::aws_config().await);
    let mut held = 0;
    for name in &chosen {
        let url = queue_url(&sqs, &stage.queue(name.queue_role())).await?;
        held += dlq::depth(&sqs, &url).await.map_err(|e| Failure(exit::UNAVAILABLE, e.to_string()))?;
    }
    let beyond = held.saturating_sub(indexed.len() as u64);
    let selected: Vec<Parked> = indexed.into_iter().filter(|m| args.filter.matches(m)).collect();
    if json {
        let mut v = dlq::render_list_json(&selected, 0);
        v["source"] = "ledger parked index".into();
        v["in_dlqs_not_indexed"] = beyond.into();
        println!("{v}");
    } else {
        print!("{}", dlq::render_list_text(&selected, 0));
        if beyond > 0 && args.filter.since.is_none() && args.filter.until.is_none() {
            println!(
                "note: the DLQs hold {held} messages, {beyond} more than the ledger's parked index lists \
                 (copies, bodies the ledger never recorded, or SQS redrives); `dlq list --scan` reads the queues"
            );
        }
    }
    Ok(exit::OK)
}

async fn dlq_show(stage: &Stage, args: ShowArgs) -> Result<u8, Failure> {
    // The actor first: a reveal that cannot be audited does not happen.
    let sdk = runtime::aws_config().await;
    let actor = match args.reveal {
        true => Some(audit::caller(&sdk).await.map_err(|e| Failure(exit::UNAVAILABLE, e))?),
        false => None,
    };
    let (messages, _) = scan_dlqs(stage, &args.dlqs).await?;
    let Some(m) = messages.iter().find(|m| m.message_id == args.id || m.attribute("delivery_id") == Some(&args.id))
    else {
        eprintln!("{}: not in the DLQs of stage {stage} (replayed, expired, or another stage?)", args.id);
        return Ok(exit::NOT_FOUND);
    };
    let Some(actor) = actor else {
        println!("{}", serde_json::to_string_pretty(&dlq::render_show(m)).unwrap_or_default());
        return Ok(exit::OK);
    };
    let pk = m.event_pk().ok_or_else(|| {
        Failure(exit::UNAVAILABLE, "the body names no event, so the reveal cannot be audited; nothing shown".into())
    })?;
    let details = BTreeMap::from([
        ("reason".to_owned(), args.reason.unwrap_or_else(|| "(none given)".into())),
        ("message_id".to_owned(), m.message_id.clone()),
        ("from_dlq".to_owned(), m.dlq.as_str().to_owned()),
        ("delivery_id".to_owned(), m.attribute("delivery_id").unwrap_or_default().to_owned()),
    ]);
    // Each reveal is a record of its own: the time and the message make it unique.
    let id = format!("{:013}-{}", now_ms(), m.message_id);
    let record = audit::record(&pk, "reveal", &id, &actor, details);
    let (ledger, table) = ledger(stage).await;
    audit::write(&ledger, &record).await.map_err(unavailable(&table))?;
    println!("{}", serde_json::to_string_pretty(&dlq::render_revealed(m)).unwrap_or_default());
    Ok(exit::OK)
}

async fn trace_command(stage: &Stage, json: bool, args: TraceArgs) -> Result<u8, Failure> {
    let sources: Vec<String> = match args.source {
        Some(s) => vec![s],
        None => Config::from_env()
            .map_err(|e| Failure(exit::UNAVAILABLE, format!("{e} (or name the source with --source)")))?
            .sources
            .into_keys()
            .collect(),
    };
    let pks: Vec<String> = sources.iter().map(|s| RecordKey::event_pk(s, &args.event_id)).collect();
    let (ledger, table) = ledger(stage).await;
    let shown = print_events(stage, &ledger, &table, &pks, json).await?;
    if shown == 0 {
        eprintln!("{}: no records in {table} (unknown event, wrong stage, or expired)", args.event_id);
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
}

/// Prints the timelines of the events with these partition keys, each with whether its
/// payload is archived; returns how many had records.
async fn print_events(
    stage: &Stage,
    ledger: &DynamoLedger,
    table: &str,
    pks: &[String],
    json: bool,
) -> Result<usize, Failure> {
    let mut found = Vec::new();
    for pk in pks {
        let records = ledger.history(pk).await.map_err(unavailable(table))?;
        if !records.is_empty() {
            let name = pk.strip_prefix("EVT#").unwrap_or(pk).replacen('#', "/", 1);
            let at = trace::archive_locator(pk, &records);
            found.push((name, at, trace::timeline(records)));
        }
    }
    let archive = match found.is_empty() {
        true => None,
        false => Some(archive_for_trace(stage).await),
    };
    let mut states = Vec::new();
    for (_, at, _) in &found {
        states.push(archive_state(archive.as_ref(), at.as_ref()).await);
    }
    let mut out = std::io::stdout().lock();
    if json {
        let events: Vec<_> = found
            .iter()
            .zip(&states)
            .map(|((name, _, records), state)| {
                let mut v = trace::render_json(name, records);
                v["archive"] = trace::archive_json(state);
                v
            })
            .collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(events));
    } else {
        for ((name, _, records), state) in found.iter().zip(&states) {
            let _ = write!(out, "{}{}", trace::render_text(name, records), trace::render_archive_text(state));
        }
    }
    Ok(found.len())
}

/// The stage's archive as `trace` sees it, or why it cannot be asked.
async fn archive_for_trace(stage: &Stage) -> Result<S3Archive, String> {
    let sdk = runtime::aws_config().await;
    archive_bucket(stage, &sdk).await.map(|bucket| S3Archive::new(&sdk, bucket)).map_err(|Failure(_, m)| m)
}

/// Whether the envelope is there, from listings only (s3:ListBucket: the read-only
/// policy sees keys, never payloads): an object of its minute whose name holds it.
async fn archive_state(
    archive: Option<&Result<S3Archive, String>>,
    at: Option<&switchyard_common::archive::Locator>,
) -> trace::ArchiveState {
    let Some(at) = at else { return trace::ArchiveState::NoIntakeRecord };
    let archive = match archive {
        Some(Ok(a)) => a,
        Some(Err(why)) => return trace::ArchiveState::Unknown(why.clone()),
        None => return trace::ArchiveState::Unknown("not asked".into()),
    };
    match at.candidates(archive).await {
        Ok(objects) => match objects.into_iter().next() {
            Some(o) => trace::ArchiveState::Archived { key: o.key, object_bytes: o.size },
            None => trace::ArchiveState::Missing { prefix: at.prefix() },
        },
        Err(e) => trace::ArchiveState::Unknown(e.to_string()),
    }
}

async fn find_command(stage: &Stage, json: bool, args: FindArgs) -> Result<u8, Failure> {
    let (ledger, table) = ledger(stage).await;
    let (pks, what) = match (&args.flow, &args.key, &args.correlation) {
        (Some(flow), Some(key), _) => {
            (ledger.events_by_entity(&entity_hash(flow, key)).await, format!("flow {flow} key {key}"))
        }
        (_, _, Some(id)) => {
            (switchyard_common::ledger::events_with_correlation(&ledger, id).await, format!("correlation id {id}"))
        }
        _ => return Err(Failure(exit::USAGE, "name --flow and --key, or --correlation".into())),
    };
    let pks = pks.map_err(unavailable(&table))?;
    let shown = print_events(stage, &ledger, &table, &pks, json).await?;
    if shown == 0 {
        eprintln!("no events for {what} in {table} (does the flow declare entity_key? wrong stage? expired?)");
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
}

/// Opens `$EDITOR` on the payload of the one message named, returns the edited text.
fn edit_in_editor(original: &serde_json::Value) -> Result<String, Failure> {
    let editor = std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).map_err(|_| {
        Failure(exit::USAGE, "--edit needs $EDITOR (or $VISUAL); or correct it with --patch 'JQ'".into())
    })?;
    let path = std::env::temp_dir().join(format!("switchyard-replay-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string_pretty(original).unwrap_or_default())
        .map_err(|e| Failure(exit::UNAVAILABLE, format!("cannot write {}: {e}", path.display())))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("editor")
        .arg(&path)
        .status()
        .map_err(|e| Failure(exit::UNAVAILABLE, format!("cannot start {editor}: {e}")))?;
    let text = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    if !status.success() {
        return Err(Failure(exit::USAGE, format!("{editor} exited with {status}; nothing was replayed")));
    }
    text.map_err(|e| Failure(exit::UNAVAILABLE, format!("cannot read the edited payload: {e}")))
}

async fn replay_command(stage: &Stage, json: bool, args: ReplayArgs) -> Result<u8, Failure> {
    if args.yes && args.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(Failure(
            exit::USAGE,
            "--yes needs --reason \"why\" (it goes into each event's audit record)".into(),
        ));
    }
    if args.edit && args.archived {
        return Err(Failure(
            exit::USAGE,
            "--edit works on a parked message; correct an archived event with --patch".into(),
        ));
    }
    if args.edit && args.ids.len() != 1 {
        return Err(Failure(exit::USAGE, "--edit works on one message: name it by its message or delivery id".into()));
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Failure(exit::USAGE, "--rate must be a positive number of sends per second".into()));
    }
    // Caught from here on: a Ctrl-C during the set-up below (STS, queue URLs) is seen
    // by the run as soon as it starts, which then stops at once with exit 130, instead
    // of the signal's default killing the process.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure(exit::UNAVAILABLE, format!("cannot watch for Ctrl-C: {e}")))?;
    let config = Config::from_env().map_err(|e| Failure(exit::UNAVAILABLE, format!("flow file: {e}")))?;
    let sdk = runtime::aws_config().await;
    let actor = match args.yes {
        true => audit::caller(&sdk).await.map_err(|e| Failure(exit::UNAVAILABLE, e))?,
        false => String::new(),
    };
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut dlq_urls = BTreeMap::new();
    for name in chosen(&args.dlqs).into_iter().filter(|_| !args.archived) {
        dlq_urls.insert(name, queue_url(&sqs, &stage.queue(name.queue_role())).await?);
    }
    let mut patch = match &args.patch {
        Some(text) => Some(Patch::jq(text).map_err(|e| Failure(exit::USAGE, e))?),
        None => None,
    };
    if args.edit {
        patch = Some(edit_patch(stage, &args).await?);
    }
    let selection = selection_words(&args);
    let filter = Filter {
        flow: args.flow,
        destination: args.destination,
        error_class: args.error_class,
        reason: args.reason_text,
        since: args.since,
        until: args.until,
    };
    let options = replay::Options {
        ids: args.ids,
        dlqs: args.dlqs,
        filter,
        reason: args.reason.unwrap_or_default(),
        patch,
        max: args.max,
        rate: args.rate,
        force: args.force,
        yes: args.yes,
        selection,
    };
    let (ledger, _) = ledger(stage).await;
    let ctx = replay::Context {
        sqs: sqs.clone(),
        ledger: &ledger,
        config: &config,
        dlq_urls,
        dispatch_url: queue_url(&sqs, &stage.queue("dispatch")).await?,
        dispatch_fifo_url: queue_url(&sqs, &stage.queue("dispatch.fifo")).await?,
        actor,
    };
    let report = if args.archived {
        let archive = S3Archive::new(&sdk, archive_bucket(stage, &sdk).await?);
        let sources: Vec<String> = match &args.source {
            Some(s) => vec![s.clone()],
            None => config.sources.keys().cloned().collect(),
        };
        let mut events = Vec::new();
        for id in &options.ids {
            let mut found = false;
            for source in &sources {
                let records =
                    ledger.history(&RecordKey::event_pk(source, id)).await.map_err(unavailable(&table(stage)))?;
                if !records.is_empty() {
                    events.push((source.clone(), id.clone()));
                    found = true;
                }
            }
            if !found {
                // Reported as having no intake record.
                events.push((args.source.clone().unwrap_or_else(|| "*".into()), id.clone()));
            }
        }
        tokio::select! {
            report = replay::run_archived(&ctx, &options, &archive, &events) => report,
            _ = interrupt.recv() => return Ok(exit::INTERRUPTED),
        }
    } else {
        let ctrl_c = async move {
            interrupt.recv().await;
        };
        replay::run(&ctx, &options, ctrl_c).await.map_err(|e| Failure(exit::UNAVAILABLE, e.to_string()))?
    };
    if json {
        println!("{}", replay::render_json(&report));
    } else {
        print!("{}", replay::render_text(&report, args.verbose));
    }
    Ok(if report.interrupted {
        exit::INTERRUPTED
    } else if report.items.is_empty() {
        eprintln!("nothing selected: no parked message matches (see `switchyard-ops dlq list`)");
        exit::NOT_FOUND
    } else if report.items.iter().any(|i| matches!(i.outcome, replay::Outcome::Failed(_))) {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

/// `--edit`: finds the one message, opens its payload in the editor, shows the diff and
/// (on a terminal, without --yes) asks before going on.
async fn edit_patch(stage: &Stage, args: &ReplayArgs) -> Result<Patch, Failure> {
    let (messages, _) = scan_dlqs(stage, &args.dlqs).await?;
    let id = &args.ids[0];
    let m = messages
        .iter()
        .find(|m| m.message_id == *id || m.attribute("delivery_id") == Some(id))
        .ok_or_else(|| Failure(exit::NOT_FOUND, format!("{id}: not in the DLQs of stage {stage}")))?;
    let payload = replay::payload_of(m).map_err(|e| Failure(exit::NOT_FOUND, e))?;
    let text = edit_in_editor(&payload)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure(exit::USAGE, format!("the edited payload is not JSON ({e}); nothing was replayed")))?;
    let d = crate::diff::unified(&replay::pretty_redacted(&payload), &replay::pretty_redacted(&value));
    eprint!("{}", if d.is_empty() { "(no change)\n".to_owned() } else { d });
    if args.yes && std::io::stdin().is_terminal() {
        eprint!("send this? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !answer.trim().eq_ignore_ascii_case("y") {
            return Err(Failure(exit::OK, "not sent".into()));
        }
    }
    Ok(Patch::Document { text, value })
}

/// The selection in the command's own words, for the audit record.
fn selection_words(args: &ReplayArgs) -> String {
    let mut words = Vec::new();
    if !args.ids.is_empty() {
        words.push(format!("ids {}", args.ids.join(",")));
    }
    for (flag, value) in [
        ("--flow", &args.flow),
        ("--destination", &args.destination),
        ("--class", &args.error_class),
        ("--reason-text", &args.reason_text),
    ] {
        if let Some(v) = value {
            words.push(format!("{flag} {v}"));
        }
    }
    for (flag, value) in [("--since", args.since), ("--until", args.until)] {
        if let Some(t) = value {
            words.push(format!("{flag} {}", runtime::rfc3339(t)));
        }
    }
    if args.all {
        words.push("--all".into());
    }
    if !args.dlqs.is_empty() {
        words.push(format!("--dlq {}", args.dlqs.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(",")));
    }
    if let Some(max) = args.max {
        words.push(format!("--max {max}"));
    }
    if args.force {
        words.push("--force".into());
    }
    words.join(" ")
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
