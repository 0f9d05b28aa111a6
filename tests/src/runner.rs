//! `switchyard-local serve` as a process, as the tests that need its output start it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{repo, LocalAws};

pub struct Banner {
    pub intake: String,
    pub sink: String,
    /// `(destination, url, why)` lines.
    pub routes: Vec<(String, String, String)>,
}

/// Starts `switchyard-local serve` as a process and reads its banner from stderr;
/// with `stdout`, its stdout (the log and metric lines) is left piped for the caller.
pub async fn serve(aws: &LocalAws, dir: &Path, env: &[(&str, String)], stdout: bool) -> (Child, Banner) {
    serve_with(aws, dir, &repo().join("config/flows.toml"), env, stdout).await
}

/// [`serve`] with the flow file at `config` (its mappings and contracts next to it).
pub async fn serve_with(
    aws: &LocalAws,
    dir: &Path,
    config: &Path,
    env: &[(&str, String)],
    stdout: bool,
) -> (Child, Banner) {
    let stack = dir.join("stack.json");
    std::fs::write(&stack, serde_json::to_vec(&aws.stack).unwrap()).unwrap();
    let mut cmd = Command::new(runner_binary());
    cmd.args(["serve", "--stack"])
        .arg(&stack)
        .arg("--config")
        .arg(config)
        .args(["--intake", "127.0.0.1:0", "--sink", "127.0.0.1:0", "--sink-file"])
        .arg(dir.join("sink.jsonl"))
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env_remove("SWITCHYARD_DESTINATION_CRM_URL")
        .stdout(if stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the runner");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut banner = Banner { intake: String::new(), sink: String::new(), routes: Vec::new() };
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
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
        panic!("the runner ended before its banner was complete:\n{}", seen.join("\n"));
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("banner within 60 s");
    (child, banner)
}

pub fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn sink_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("sink.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The runner built for this test run (next to the test binary, as cargo places it).
fn runner_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("local-runner")
}

/// A copy of the checked-in `config/` directory in `dir`, its flow file passed through
/// `edit`: a test's own variant of the example flows. Returns the flow file's path.
pub fn config_copy(dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let to = dir.join("config");
    copy_dir(&repo().join("config"), &to);
    let flows = to.join("flows.toml");
    let text = std::fs::read_to_string(&flows).unwrap();
    std::fs::write(&flows, edit(text)).unwrap();
    flows
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
