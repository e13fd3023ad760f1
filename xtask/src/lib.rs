//! The containerized-kubelet release pipeline. `main.rs` only dispatches; each command lives in
//! its own module with a `run(self, sh)` on its flags.

pub mod artifact;
mod bench;
pub mod build;
pub mod compile;
pub mod context;
pub mod elf;
pub mod fetch;
pub mod flags;
pub mod fsutil;
pub mod go;
pub mod layout;
pub mod lock;
pub mod pack;
pub mod pause;
pub mod plan;
pub mod retry;
pub mod runner;
pub mod source;
pub mod upx;
pub mod zig;

mod doctor;
pub mod image;
mod release;
pub mod reproducible;
pub mod sizes;
pub mod upstream;

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
        Command::Base(cmd) => cmd.run(&sh),
        Command::VerifyReproducible(cmd) => cmd.run(&sh),
        Command::ZigCc(cmd) => cmd.run(&sh),
    }
}
