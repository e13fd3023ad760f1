//! End to end with docker buildx: `cargo xtask release` on the fixture repositories, built by a
//! real BuildKit daemon through `docker buildx` (no Docker engine needed: the remote driver),
//! pushed by skopeo to a real registry on 127.0.0.1, and checked through the registry exactly
//! as the buildah build is.

mod support;

use std::process::Command;

use support::{fixtures, images};

#[test]
#[ignore = "end-to-end: needs buildah, skopeo, docker-registry, qemu-user-static, zig, upx, docker buildx, buildkitd and runc; run with -- --include-ignored (.ci/run installs them)"]
fn buildx_builds_and_pushes_every_image_as_a_multi_arch_index() {
    support::require_tools("buildx_e2e", &support::PIPELINE_TOOLS);
    support::require_tools("buildx_e2e", &["qemu-arm-static"]);
    support::require_buildx("buildx_e2e");
    support::require_minirootfs("buildx_e2e");
    let upstream = support::FixtureUpstream::create();
    let (work, manifest) = (&upstream.work, upstream.manifest.clone());
    let registry = support::Registry::start();
    let buildkit = support::Buildkit::start(&registry.address);
    let prefix = format!("{}/ck", registry.address);
    let cache = work.path().join("cache");
    let xtask = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("XTASK_CACHE_DIR", &cache)
            .env("XTASK_TOOL_CACHE_DIR", support::tool_cache())
            .env("XTASK_MANIFEST", &manifest)
            .env("DOCKER_CONFIG", buildkit.docker_config.path())
            .env_remove("XTASK_BUILDER")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "cargo xtask {}:\n{stderr}",
            args.join(" ")
        );
        stderr
    };
    // The base image is made with buildah from Alpine's minirootfs: Docker Hub is out of reach.
    let minirootfs = support::minirootfs_dir();
    xtask(&[
        "base",
        "--minirootfs",
        minirootfs.to_str().unwrap(),
        "--registry",
        &prefix,
    ]);
    let base = format!("{prefix}/alpine:3.20.3");
    // No --builder: where a buildx builder answers, it is the default.
    let log = xtask(&[
        "release",
        fixtures::KUBERNETES_TAG,
        "--buildx-builder",
        &buildkit.builder,
        "--registry",
        &prefix,
        "--base-image",
        &base,
    ]);
    assert!(log.contains("    buildx: kubelet:"), "{log}");
    assert!(!log.contains("    buildah: kubelet:"), "{log}");
    images::check_pushed_release(&prefix, &cache);
}
