//! Issue 7, part 6: the local runner tells the truth. `switchyard-local serve` resolves
//! destinations as a deployed function does (`SWITCHYARD_DESTINATION_{NAME}_URL`),
//! the example destinations follow a sink moved with `--sink`, and the banner names
//! where each destination's deliveries go — which is where they arrive.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, Scheme, SigningSecret};
use switchyard_e2e::{eventually, local_secret, repo, stripe_payment, LocalAws};
use switchyard_local::sink::Sink;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Banner {
    intake: String,
    sink: String,
    /// `(destination, url, why)` lines.
    routes: Vec<(String, String, String)>,
}

/// Starts `switchyard-local serve` as a process and reads its banner from stderr.
async fn serve(aws: &LocalAws, dir: &Path, env: &[(&str, String)]) -> (Child, Banner) {
    let stack = dir.join("stack.json");
    std::fs::write(&stack, serde_json::to_vec(&aws.stack).unwrap()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_local-runner"));
    cmd.args(["serve", "--stack"])
        .arg(&stack)
        .arg("--config")
        .arg(repo().join("config/flows.toml"))
        .args(["--intake", "127.0.0.1:0", "--sink", "127.0.0.1:0", "--sink-file"])
        .arg(dir.join("sink.jsonl"))
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env_remove("SWITCHYARD_DESTINATION_CRM_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the runner");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut banner = Banner { intake: String::new(), sink: String::new(), routes: Vec::new() };
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = line.trim();
            if let Some(url) = line.strip_prefix("intake:") {
                banner.intake = url.trim().replace("/hooks/{source}", "");
            } else if let Some(rest) = line.strip_prefix("sink:") {
                banner.sink = rest.split_whitespace().next().unwrap().to_owned();
            } else if let Some((name, rest)) = line.split_once(" → ") {
                let (url, why) = rest.split_once(' ').unwrap();
                banner.routes.push((name.to_owned(), url.to_owned(), why.to_owned()));
            } else if line == "Ctrl-C stops." {
                return;
            }
        }
        panic!("the runner ended before its banner was complete");
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("banner within 60 s");
    (child, banner)
}

async fn post_event(intake: &str, event_id: &str) {
    let body = stripe_payment(event_id).to_string();
    let headers =
        sign(&Scheme::Stripe, &SigningSecret::new(local_secret("source/stripe")), body.as_bytes(), now_ms() / 1000, "")
            .unwrap();
    let mut req = reqwest::Client::new().post(format!("{intake}/hooks/stripe")).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 202);
}

fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sink_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("sink.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_moved_with_dash_dash_sink_takes_the_example_crms_deliveries_as_the_banner_says() {
    let aws = LocalAws::start().await;
    let dir = work_dir("moved-sink");
    let (_runner, banner) = serve(&aws, &dir, &[]).await;

    let crm = banner.routes.iter().find(|(name, ..)| name == "crm").expect("a banner line for crm");
    assert_ne!(banner.sink, "http://127.0.0.1:3001", "the sink was moved to a free port");
    assert_eq!((crm.1.as_str(), crm.2.as_str()), (banner.sink.as_str(), "(the local sink)"));

    post_event(&banner.intake, "evt_moved_sink").await;
    let arrived =
        eventually(Duration::from_secs(30), async || sink_lines(&dir).iter().any(|r| r["path"] == "/api/contacts"))
            .await;
    assert!(arrived, "the delivery reached the sink at {} (its file {})", banner.sink, dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_url_variable_takes_the_deliveries_and_the_banner_names_it() {
    let aws = LocalAws::start().await;
    let dir = work_dir("env-destination");
    let api = Sink::default();
    let api_addr = api.clone().start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{api_addr}");
    let (_runner, banner) = serve(&aws, &dir, &[("SWITCHYARD_DESTINATION_CRM_URL", url.clone())]).await;

    let crm = banner.routes.iter().find(|(name, ..)| name == "crm").expect("a banner line for crm");
    assert_eq!((crm.1.as_str(), crm.2.as_str()), (url.as_str(), "(SWITCHYARD_DESTINATION_CRM_URL)"));

    post_event(&banner.intake, "evt_env_destination").await;
    let arrived =
        eventually(Duration::from_secs(30), async || api.received().iter().any(|r| r.path == "/api/contacts")).await;
    assert!(arrived, "the delivery reached {url}, where the banner said it would go");
    assert!(sink_lines(&dir).is_empty(), "nothing went to the runner's own sink");
}
