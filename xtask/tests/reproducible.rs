//! `cargo xtask verify-reproducible` on fixture repositories: two builds in fresh caches at
//! different paths give byte-identical binaries, host tools (each build compiles its own) and
//! image digests, with no host path in any artifact. (The failure side, naming what differs, has unit tests in `diff`.)

mod support;

use std::process::Command;

use support::fixtures;

#[test]
#[ignore = "end-to-end: needs buildah, skopeo, docker-registry, qemu-user-static, zig and upx; run with -- --include-ignored (.ci/run installs them)"]
fn two_clean_builds_give_identical_binaries_and_image_digests() {
    support::require_tools("reproducible", &support::PIPELINE_TOOLS);
    support::require_minirootfs("reproducible");
    let upstream = support::FixtureUpstream::create();
    let (work, manifest) = (&upstream.work, upstream.manifest.clone());
    let registry = support::Registry::start();
    let cache = work.path().join("cache");
    let xtask = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("XTASK_CACHE_DIR", &cache)
            .env("XTASK_TOOL_CACHE_DIR", support::tool_cache())
            .env("XTASK_MANIFEST", &manifest)
            .output()
            .unwrap()
    };
    let prefix = format!("{}/ck", registry.address);
    let minirootfs = support::minirootfs_dir();
    let base = xtask(&[
        "base",
        "--minirootfs",
        minirootfs.to_str().unwrap(),
        "--registry",
        &prefix,
    ]);
    assert!(
        base.status.success(),
        "{}",
        String::from_utf8_lossy(&base.stderr)
    );

    let base_image = format!("{prefix}/alpine:3.20.3");
    let output = xtask(&[
        "verify-reproducible",
        fixtures::KUBERNETES_TAG,
        "--arch",
        "arm64",
        "--image",
        "kubelet-kubeadm-cni,kube-proxy",
        "--builder",
        "buildah",
        "--base-image",
        &base_image,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("different (0):"), "{stdout}");
    assert!(stdout.contains("host paths in artifacts (0):"), "{stdout}");
    for artifact in [
        "v1.26.0/arm64/bin/kubelet sha256:",
        "v1.26.0/arm64/bin/kubeadm sha256:",
        "v1.26.0/arm64/unpacked/kubeadm sha256:",
        "v1.26.0/arm64/bin/flannel sha256:",
        "v1.26.0/arm64/manifest.json sha256:",
        "image kubelet_v1.26.0-kubeadm-cni-alpine3.20 sha256:",
        "image kube-proxy_v1.26.0-alpine3.20 sha256:",
        "host-tools/iptables-1.8.11/arm64/usr/sbin/xtables-legacy-multi sha256:",
        "host-tools/util-linux-2.41.5/arm64/usr/bin/mount sha256:",
        "host-tools/e2fsprogs-1.47.2/arm64/usr/sbin/mke2fs sha256:",
    ] {
        assert!(
            stdout.contains(artifact),
            "{artifact} missing from:\n{stdout}"
        );
    }
    // Both builds really happened, each in its own cache.
    for build in ["first", "second"] {
        let out = cache
            .join("reproducible/v1.26.0")
            .join(build)
            .join("out/v1.26.0/arm64/bin");
        assert!(
            out.join("kubelet").is_file(),
            "{build} build has no kubelet"
        );
        let tools = cache
            .join("reproducible/v1.26.0")
            .join(build)
            .join("host-tools/out/iptables-1.8.11/arm64/usr/sbin/xtables-legacy-multi");
        assert!(tools.is_file(), "{build} build made its own host tools");
    }
    assert!(stderr.contains("build 2 of 2"), "{stderr}");
}
