use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let flags = xtask::flags::Xtask::parse();
    match xtask::run(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: what failed and why, with the fix in the message itself.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
