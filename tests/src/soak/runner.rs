//! The local runner as a process of its own, so that it can be killed with SIGKILL
//! mid-stream and started again on the same addresses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The runner's executable: `local-runner` (this crate's build of the
/// `switchyard-local` command line, `switchyard_local::cli`) next to the running
/// binary, or `SOAK_RUNNER`.
pub fn executable() -> PathBuf {
    if let Ok(path) = std::env::var("SOAK_RUNNER") {
        return PathBuf::from(path);
    }
    let me = std::env::current_exe().expect("own path");
    // A test binary lives in target/<profile>/deps, the binaries one level up.
    let dir = me.parent().expect("a directory");
    let dir = if dir.ends_with("deps") { dir.parent().expect("target dir") } else { dir };
    dir.join("local-runner")
}

pub struct Runner {
    exe: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    pub intake: SocketAddr,
    child: Option<Child>,
    pub starts: u32,
}

impl Runner {
    /// `switchyard-local serve` on `intake`, with the stack description at `stack`,
    /// the flow file `config`, and `env` on top of this process's environment.
    pub fn new(stack: &Path, config: &Path, intake: SocketAddr, env: Vec<(String, String)>, log_dir: &Path) -> Self {
        let args = vec![
            "serve".to_owned(),
            "--stack".to_owned(),
            stack.display().to_string(),
            "--config".to_owned(),
            config.display().to_string(),
            "--intake".to_owned(),
            intake.to_string(),
            "--sink".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--sink-file".to_owned(),
            log_dir.join("sink.jsonl").display().to_string(),
        ];
        Self { exe: executable(), args, env, log_dir: log_dir.to_owned(), intake, child: None, starts: 0 }
    }

    /// Starts the runner and waits until its intake accepts connections.
    pub async fn start(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log = |what: &str| {
            std::fs::File::create(self.log_dir.join(format!("runner-{}.{what}", self.starts)))
                .map_err(|e| format!("runner log: {e}"))
        };
        let mut child = Command::new(&self.exe)
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::from(log("log")?))
            .stderr(Stdio::from(log("err")?))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(self.intake).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the runner exited ({status}); see {}", self.log_dir.display()));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err("the runner did not open its intake within 60 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown, no flush, in-flight work is lost as in a crashed container.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}
