//! Running a built binary for its architecture: natively on its own host, through qemu-user
//! elsewhere, with a time limit so a hanging binary cannot stall a release.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::Arch;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(50);

/// What a run printed, stdout and stderr together.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub success: bool,
    /// The exit status, when it exited rather than died of a signal.
    pub code: Option<i32>,
    /// How it ended, e.g. `exit status: 1` or `signal: 11 (SIGSEGV)`.
    pub status: String,
    pub text: String,
}

/// The qemu-user program for `arch`, or None when this host runs it natively.
pub fn emulator(arch: Arch) -> Result<Option<Utf8PathBuf>> {
    if Arch::host() == Some(arch) {
        return Ok(None);
    }
    let static_name = arch.qemu_user();
    let plain_name = static_name.trim_end_matches("-static");
    for name in [static_name, plain_name] {
        if let Ok(path) = which::which(name) {
            return Ok(Some(
                Utf8PathBuf::from_path_buf(path)
                    .map_err(|p| anyhow::anyhow!("non-UTF-8 path {}", p.display()))?,
            ));
        }
    }
    bail!("running {arch} binaries needs {static_name}; install it with `apt-get install qemu-user-static`")
}

pub fn run(
    binary: &Utf8Path,
    arch: Arch,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<RunOutput> {
    let mut command = match emulator(arch)? {
        Some(qemu) => {
            let mut command = Command::new(qemu);
            command.arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command.args(args).envs(env.iter().copied());
    let output = with_timeout(command, RUN_TIMEOUT)
        .with_context(|| format!("cannot run {binary} for {arch}"))?;
    Ok(output)
}

fn with_timeout(mut command: Command, limit: Duration) -> Result<RunOutput> {
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("output");
    let log = std::fs::File::create(&log_path)?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = command.spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            bail!("it did not exit within {} s", limit.as_secs());
        }
        std::thread::sleep(POLL);
    };
    let text = String::from_utf8_lossy(&std::fs::read(&log_path)?).into_owned();
    Ok(RunOutput {
        success: status.success(),
        code: status.code(),
        status: status.to_string(),
        text,
    })
}
