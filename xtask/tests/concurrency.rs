//! Two runs on one cache: the second waits for the first's lock instead of writing beside it.

mod support;

use std::fs::OpenOptions;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::fixtures;

#[test]
fn a_second_run_waits_for_the_cache_lock() {
    support::require_tools("concurrency", &["go"]);
    let upstream = support::FixtureUpstream::create();
    let (work, manifest) = (&upstream.work, upstream.manifest.clone());
    let cache = work.path().join("cache");
    std::fs::create_dir_all(cache.join("locks")).unwrap();

    // Another run holds the lock.
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join("locks/cache.lock"))
        .unwrap();
    lock.lock().unwrap();

    let xtask = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("XTASK_CACHE_DIR", &cache)
            .env("XTASK_MANIFEST", &manifest)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut second = xtask(&["release", fixtures::KUBERNETES_TAG, "--dry-run"]);
    // A dry run takes no lock: it must finish while the lock is held.
    assert!(second.wait().unwrap().success());

    let mut fetch = xtask(&["fetch", fixtures::KUBERNETES_TAG]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        fetch.try_wait().unwrap().is_none(),
        "the fetch must wait while another run holds the lock"
    );
    assert!(
        !cache.join("sources/git").exists(),
        "nothing is written while waiting"
    );

    drop(lock);
    let started = Instant::now();
    let output = fetch.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for another xtask run"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(cache
        .join("sources/git/kubernetes")
        .join(fixtures::KUBERNETES_TAG)
        .join("cmd/kubelet/main.go")
        .exists());
}
