//! A fault-injection hook for the interruption tests: with `XTASK_TEST_PAUSE_AT=<point>`, a run
//! that reaches that point in the middle of a step says so on stderr and waits to be killed.
//! The points sit where a step has written part of its work and not yet committed it, which is
//! where a `kill -9` does the most harm.

use std::time::Duration;

pub const PAUSE_ENV: &str = "XTASK_TEST_PAUSE_AT";
/// What the paused run prints, followed by the point's name.
pub const PAUSED_MESSAGE: &str = "xtask: paused at";

/// The points, in pipeline order.
pub const POINTS: [&str; 5] = ["fetch", "compile", "pack", "image-build", "push"];

pub fn point(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown pause point {name}");
    if std::env::var(PAUSE_ENV).ok().as_deref() != Some(name) {
        return;
    }
    eprintln!("{PAUSED_MESSAGE} {name}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
