//! The containerized-kubelet release pipeline. `main.rs` only dispatches; each command lives in
//! its own module with a `run(self, sh)` on its flags.

mod artifact;
mod bench;
mod build;
mod compile;
mod context;
mod doctor;
mod elf;
mod fetch;
pub mod flags;
mod fsutil;
mod go;
mod hosttools;
mod image;
mod layout;
mod lock;
mod pack;
mod pause;
mod plan;
mod release;
mod reproducible;
mod retry;
mod runner;
mod sizes;
mod source;
mod upstream;
mod upx;
mod zig;

// What the integration tests drive, and nothing more: every module stays private to the
// crate, so the compiler reports code that nothing uses.
pub use build::{build_release, plan_build, BuildOptions};
pub use compile::CCompiler;
pub use elf::check as check_elf;
pub use fsutil::{hex, sha256_file};
pub use layout::Layout;
pub use pause::{PAUSED_MESSAGE, PAUSE_ENV, POINTS};
pub use reproducible::diff::{compare_trees, HostPaths, Report};
pub use runner::run as run_on;
pub use source::git::GitFetcher;
pub use source::Fetcher;
pub use upstream::pins_markdown;
pub use zig::SELF_ENV as ZIG_WRAPPER_SELF_ENV;

use anyhow::Result;
use flags::{Command, Xtask};
use xshell::Shell;

pub fn run(xtask: Xtask) -> Result<()> {
    let sh = Shell::new()?;
    match xtask.command {
        Command::Release(cmd) => cmd.run(&sh),
        Command::Fetch(cmd) => cmd.run(&sh),
        Command::Build(cmd) => cmd.run(&sh),
        Command::Image(cmd) => cmd.run(&sh),
        Command::Sizes(cmd) => cmd.run(&sh),
        Command::Upstream(cmd) => cmd.run(&sh),
        Command::Doctor(cmd) => cmd.run(&sh),
        Command::Bench(cmd) => cmd.run(&sh),
        Command::Tools(cmd) => cmd.run(&sh),
        Command::Base(cmd) => cmd.run(&sh),
        Command::VerifyReproducible(cmd) => cmd.run(&sh),
        Command::ZigCc(cmd) => cmd.run(&sh),
    }
}
