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
#[ignore = "end-to-end: needs buildah, skopeo, docker-registry, qemu-user-static, zig and upx; run with -- --include-ignored (.ci/run installs them)"]
fn release_builds_and_pushes_every_image_as_a_multi_arch_index() {
    support::require_tools("release_e2e", &support::PIPELINE_TOOLS);
    support::require_tools("release_e2e", &["qemu-arm-static", "tar"]);
    support::require_minirootfs("release_e2e");
    let upstream = support::FixtureUpstream::create();
    let manifest = upstream.manifest.clone();
    // Toolchains and compiler caches persist between runs; outputs and sources do not.
    let cache = support::tool_cache();
    for stale in ["sources", "out", "images", "buildah", "oci", "oci-built"] {
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
        ],
    );

    images::check_pushed_release(&prefix, &env.cache);
}

#[test]
#[ignore = "end-to-end: needs buildah; run with -- --include-ignored (.ci/run installs them)"]
fn a_refusing_registry_is_retried_then_named_in_one_error() {
    support::require_tools("refusing_registry", &["buildah"]);
    support::require_minirootfs("refusing_registry");
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

/// The packing check of [`images::check_pushed_release`], on fake files and records: it passes
/// what the build writes and rejects each way a record and the shipped file can disagree.
mod packing_check {
    use serde_json::{json, Value};

    use super::images::check_shipped;

    const UPX: &str = "upx 4.2.4";

    /// A file of `size` bytes that starts like an ELF binary, with upx's magic or without.
    fn file(size: usize, upx_magic: bool) -> Vec<u8> {
        let mut bytes = b"\x7fELF".to_vec();
        if upx_magic {
            bytes.extend_from_slice(b"\0\0\0\0UPX!");
        }
        bytes.resize(size, 0x5a);
        bytes
    }

    fn record(
        name: &str,
        bytes: &[u8],
        unpacked: u64,
        packed: Option<u64>,
        note: Option<&str>,
    ) -> Value {
        let sha256 = xtask::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes));
        json!({
            "name": name,
            "component": "kubernetes",
            "path": format!("bin/{name}"),
            "unpacked_size": unpacked,
            "packed_size": packed,
            "sha256": sha256,
            "note": note,
        })
    }

    fn not_run_note(name: &str) -> String {
        format!(
            "shipped unpacked: {name} amd64 packed by {UPX} does not run (signal: 11 (SIGSEGV))"
        )
    }

    #[test]
    fn accepts_what_the_build_ships() {
        let packed = file(400, true);
        let tool = record("kubeadm", &packed, 1000, Some(400), None);
        assert_eq!(check_shipped("arm64", UPX, &tool, &packed), Ok(()));

        assert_eq!(check_shipped("amd64", UPX, &tool, &packed), Ok(()));

        let unpacked = file(1000, false);
        let daemon = record("kubelet", &unpacked, 1000, None, None);
        assert_eq!(check_shipped("amd64", UPX, &daemon, &unpacked), Ok(()));
    }

    #[test]
    fn rejects_a_packed_record_whose_file_has_no_upx_magic() {
        let bytes = file(400, false);
        let tool = record("crictl", &bytes, 1000, Some(400), None);
        let error = check_shipped("arm64", UPX, &tool, &bytes).unwrap_err();
        assert!(error.contains("no UPX! magic"), "{error}");
    }

    #[test]
    fn rejects_a_packed_size_that_is_not_smaller() {
        let bytes = file(1000, true);
        let tool = record("crictl", &bytes, 1000, Some(1000), None);
        let error = check_shipped("arm64", UPX, &tool, &bytes).unwrap_err();
        assert!(error.contains("not smaller"), "{error}");
    }

    #[test]
    fn rejects_a_tool_shipped_unpacked_on_any_architecture() {
        let bytes = file(1000, false);
        for arch in ["amd64", "arm64", "arm"] {
            for note in [None, Some(not_run_note("kubeadm"))] {
                let tool = record("kubeadm", &bytes, 1000, None, note.as_deref());
                let error = check_shipped(arch, UPX, &tool, &bytes).unwrap_err();
                assert!(error.contains("a tool shipped unpacked"), "{error}");
            }
        }
    }

    #[test]
    fn rejects_upx_magic_in_a_file_recorded_as_unpacked() {
        let bytes = file(1000, true);
        let daemon = record("kubelet", &bytes, 1000, None, None);
        let error = check_shipped("arm64", UPX, &daemon, &bytes).unwrap_err();
        assert!(error.contains("UPX! magic"), "{error}");
        let note = not_run_note("kubeadm");
        let tool = record("kubeadm", &bytes, 1000, None, Some(&note));
        assert!(check_shipped("amd64", UPX, &tool, &bytes).is_err());
    }

    #[test]
    fn rejects_a_file_that_is_not_the_shipped_binary() {
        let bytes = file(400, true);
        let tool = record("kubeadm", &bytes, 1000, Some(400), None);
        let mut other = bytes.clone();
        other[100] ^= 1;
        let error = check_shipped("arm64", UPX, &tool, &other).unwrap_err();
        assert!(error.contains("not the shipped binary"), "{error}");
    }
}
