//! End to end: `cargo xtask release` on fixture repositories this test creates, with buildah,
//! a base image made from Alpine's minirootfs fixtures, and a real registry on 127.0.0.1.
//! Everything is then checked through the registry, as a user pulling the images would see it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::fixtures;

const EXPECTED_PLATFORMS: [(&str, Option<&str>); 3] =
    [("amd64", None), ("arm64", None), ("arm", Some("v7"))];
const TAG_SUFFIX: &str = "alpine3.20";

fn minirootfs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/alpine-minirootfs-3.20.3")
}

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

fn skopeo(args: &[&str]) -> Vec<u8> {
    let output = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "skopeo {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn inspect_raw(reference: &str) -> Value {
    serde_json::from_slice(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
    .unwrap()
}

fn inspect_config(reference: &str) -> Value {
    serde_json::from_slice(&skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
    .unwrap()
}

/// Pulls one platform's image and unpacks its layers into a directory, as a runtime would.
fn unpack(reference: &str, into: &Path) {
    let layout = into.join("layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:image", layout.display()),
    ]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(manifest_digest)).unwrap(),
    )
    .unwrap();
    let rootfs = into.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let blob = layout.join("blobs/sha256").join(
            layer["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        );
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&blob)
            .arg("-C")
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[test]
fn release_builds_and_pushes_every_image_as_a_multi_arch_index() {
    let tools = [
        "go",
        "python3",
        "buildah",
        "skopeo",
        "docker-registry",
        "qemu-aarch64-static",
        "qemu-arm-static",
        "tar",
    ];
    if !support::tools_present("release_e2e", &tools) {
        return;
    }
    if !minirootfs_dir().join("SHA512SUMS").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs ../shared/fixtures beside the clone"
        );
        eprintln!("E2E-SKIPPED release_e2e: no ../shared/fixtures");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let repos = fixtures::create(&work.path().join("upstream"));
    let manifest = work.path().join("upstream.toml");
    std::fs::write(&manifest, fixtures::manifest(&repos, &support::host_go())).unwrap();
    // Toolchains and compiler caches persist between runs; outputs and sources do not.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache");
    for stale in ["sources", "out", "images", "buildah", "oci"] {
        std::fs::remove_dir_all(cache.join(stale)).ok();
    }
    let env = Env { cache, manifest };
    let registry = support::Registry::start();
    let prefix = format!("{}/ck", registry.address);

    let minirootfs = minirootfs_dir();
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

    let version = fixtures::KUBERNETES_TAG;
    let images: [(&str, &str, &[&str]); 6] = [
        ("kubelet", "", &["usr/local/bin/kubelet"]),
        (
            "kubelet",
            "flannel-",
            &[
                "usr/local/bin/kubelet",
                "usr/local/bin/install-cni",
                "opt/cni/bin/flannel",
                "opt/cni/bin/bridge",
                "opt/cni/bin/host-local",
                "opt/cni/bin/loopback",
                "opt/cni/bin/portmap",
            ],
        ),
        (
            "kubelet",
            "cni-",
            &[
                "usr/local/bin/kubelet",
                "usr/local/bin/install-cni",
                "opt/cni/bin/flannel",
                "opt/cni/bin/vrf",
                "opt/cni/bin/dhcp",
            ],
        ),
        (
            "kubelet",
            "kubeadm-",
            &[
                "usr/local/bin/kubelet",
                "usr/local/bin/kubeadm",
                "usr/local/bin/crictl",
            ],
        ),
        (
            "kubelet",
            "kubeadm-cni-",
            &[
                "usr/local/bin/kubeadm",
                "usr/local/bin/crictl",
                "opt/cni/bin/tuning",
            ],
        ),
        ("kube-proxy", "", &["usr/local/bin/kube-proxy"]),
    ];
    let tags: Value = serde_json::from_slice(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{prefix}/kubelet"),
    ]))
    .unwrap();
    assert_eq!(tags["Tags"].as_array().unwrap().len(), 5, "{tags}");

    for (repository, variant, files) in images {
        let reference = format!("{prefix}/{repository}:{version}-{variant}{TAG_SUFFIX}");
        let index = inspect_raw(&reference);
        let entries = index["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("{reference} is not an index: {index}"));
        let platforms: Vec<(&str, Option<&str>)> = entries
            .iter()
            .map(|m| {
                (
                    m["platform"]["architecture"].as_str().unwrap(),
                    m["platform"]["variant"].as_str(),
                )
            })
            .collect();
        assert_eq!(platforms, EXPECTED_PLATFORMS, "{reference}");
        for entry in entries {
            assert_eq!(entry["platform"]["os"], "linux");
            let digest = entry["digest"].as_str().unwrap();
            let platform_ref = format!("{prefix}/{repository}@{digest}");
            let config = inspect_config(&platform_ref);
            check_config(repository, variant, &config["config"]);
            let dir = tempfile::tempdir().unwrap();
            unpack(&platform_ref, dir.path());
            let rootfs = dir.path().join("rootfs");
            for file in files {
                assert!(
                    rootfs.join(file).is_file(),
                    "{reference} {digest} lacks /{file}"
                );
            }
            assert!(
                rootfs.join("etc/alpine-release").is_file(),
                "built on the Alpine base"
            );
            if variant == "flannel-" {
                let plugins = std::fs::read_dir(rootfs.join("opt/cni/bin"))
                    .unwrap()
                    .count();
                assert_eq!(
                    plugins, 5,
                    "the flannel image carries only flannel's plugins"
                );
            }
            let arch = entry["platform"]["architecture"].as_str().unwrap();
            check_runs(&rootfs, repository, arch, version);
            check_packing(&env, &rootfs, arch, files);
        }
    }
}

fn check_config(repository: &str, variant: &str, config: &Value) {
    let entrypoint: Vec<&str> = config["Entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let cmd: Vec<&str> = config["Cmd"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default();
    if repository == "kube-proxy" {
        assert_eq!(entrypoint, ["kube-proxy"]);
        return;
    }
    assert_eq!(entrypoint, ["kubelet"], "{variant}");
    assert_eq!(cmd[0], "--config=/var/lib/kubelet/config.yaml");
    assert!(
        cmd.contains(&"--container-runtime=remote"),
        "1.26 still has --container-runtime: {cmd:?}"
    );
    assert!(
        !cmd.iter().any(|a| a.starts_with("--network-plugin")),
        "gone since 1.24: {cmd:?}"
    );
    assert_eq!(
        config["Labels"]["org.opencontainers.image.version"],
        fixtures::KUBERNETES_TAG
    );
    assert_eq!(
        config["Labels"]["org.opencontainers.image.created"],
        "2022-12-08T19:51:43Z"
    );
}

fn qemu_for(arch: &str) -> Option<&'static str> {
    match arch {
        "amd64" => None,
        "arm64" => Some("qemu-aarch64-static"),
        _ => Some("qemu-arm-static"),
    }
}

fn check_runs(rootfs: &Path, repository: &str, arch: &str, version: &str) {
    let program = rootfs.join("usr/local/bin").join(repository);
    let output = match qemu_for(arch) {
        Some(qemu) => Command::new(qemu)
            .arg(&program)
            .arg("--version")
            .output()
            .unwrap(),
        None => Command::new(&program).arg("--version").output().unwrap(),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("Kubernetes {version}")),
        "{repository} {arch}: {text}"
    );
}

/// The image holds exactly the shipped binaries, and on arm the tools are the packed ones.
fn check_packing(env: &Env, rootfs: &Path, arch: &str, files: &[&str]) {
    let arch_dir = if arch == "arm" { "armv7" } else { arch };
    let manifest_path = env
        .cache
        .join("out")
        .join(fixtures::KUBERNETES_TAG)
        .join(arch_dir)
        .join("manifest.json");
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    for file in files {
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        let Some(record) = manifest["binaries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
        else {
            continue; // install-cni is a script, not a built binary
        };
        let bytes = std::fs::read(rootfs.join(file)).unwrap();
        let digest = xtask::fsutil::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        assert_eq!(
            record["sha256"].as_str().unwrap(),
            digest,
            "{arch} {name}: the image holds the shipped binary"
        );
        let is_daemon = name == "kubelet" || name == "kube-proxy";
        if !is_daemon && arch != "amd64" {
            assert!(
                record["packed_size"].is_u64(),
                "{arch} {name} should ship packed: {record}"
            );
        }
    }
}

#[test]
fn a_refusing_registry_is_retried_then_named_in_one_error() {
    if !support::tools_present("refusing_registry", &["buildah"])
        || !minirootfs_dir().join("SHA512SUMS").exists()
    {
        assert!(
            std::env::var_os("CI").is_none() || minirootfs_dir().exists(),
            "CI needs ../shared/fixtures"
        );
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: every push attempt is refused.
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "base",
            "--minirootfs",
            minirootfs_dir().to_str().unwrap(),
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
