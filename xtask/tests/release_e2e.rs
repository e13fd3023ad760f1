//! End to end: `cargo xtask release` on fixture repositories this test creates, with buildah,
//! a base image made from Alpine's minirootfs fixtures, and a real registry on 127.0.0.1.
//! Everything is then checked through the registry, as a user pulling the images would see it.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{fixtures, images};

struct Env {
    cache: PathBuf,
    manifest: PathBuf,
}

fn xtask(env: &Env, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_CACHE_DIR", &env.cache)
        .env("XTASK_MANIFEST", &env.manifest)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cargo xtask {} failed:\n{stderr}",
        args.join(" ")
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn release_builds_and_pushes_every_image_as_a_multi_arch_index() {
    if !support::tools_present("release_e2e", &support::PIPELINE_TOOLS)
        || !support::tools_present("release_e2e", &["qemu-arm-static", "tar"])
        || !support::minirootfs_present("release_e2e")
    {
        return;
    }
    let upstream = support::FixtureUpstream::create();
    let manifest = upstream.manifest.clone();
    // Toolchains and compiler caches persist between runs; outputs and sources do not.
    let cache = support::tool_cache();
    for stale in ["sources", "out", "images", "buildah", "oci"] {
        std::fs::remove_dir_all(cache.join(stale)).ok();
    }
    let env = Env { cache, manifest };
    let registry = support::Registry::start();
    let prefix = format!("{}/ck", registry.address);

    let minirootfs = support::minirootfs_dir();
    xtask(
        &env,
        &[
            "base",
            "--minirootfs",
            minirootfs.to_str().unwrap(),
            "--registry",
            &prefix,
        ],
    );
    let base = format!("{prefix}/alpine:3.20.3");
    xtask(
        &env,
        &[
            "release",
            fixtures::KUBERNETES_TAG,
            "--builder",
            "buildah",
            "--registry",
            &prefix,
            "--base-image",
            &base,
            "--skip-packages",
        ],
    );

    images::check_pushed_release(&prefix, &env.cache);
}

#[test]
fn a_refusing_registry_is_retried_then_named_in_one_error() {
    if !support::tools_present("refusing_registry", &["buildah"])
        || !support::minirootfs_present("refusing_registry")
    {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: every push attempt is refused.
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "base",
            "--minirootfs",
            support::minirootfs_dir().to_str().unwrap(),
            "--registry",
            "127.0.0.1:1/ck",
        ])
        .env("XTASK_CACHE_DIR", cache.path())
        .env("XTASK_RETRY_BASE_MS", "10")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains("127.0.0.1:1/ck") && error[0].contains("alpine:3.20.3"),
        "{stderr}"
    );
    assert!(error[0].contains("after 5 attempts"), "{stderr}");
    assert_eq!(
        stderr.matches("retrying alpine:3.20.3").count(),
        4,
        "{stderr}"
    );
}
