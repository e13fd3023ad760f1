//! Checks of a pushed release through the registry API, as a user pulling the images sees it:
//! the six tags, each an index of exactly amd64, arm64 and arm/v7, the files, the shipped
//! binaries, entrypoint, cmd and labels, and kubelet or kube-proxy running from every
//! platform's unpacked root filesystem.

use std::path::Path;
use std::process::Command;

use kubelet_upstream::hostcommands;
use kubelet_upstream::rules::Image;
use kubelet_upstream::Arch;
use serde_json::Value;

use super::fixtures;

const EXPECTED_PLATFORMS: [(&str, Option<&str>); 3] =
    [("amd64", None), ("arm64", None), ("arm", Some("v7"))];
const TAG_SUFFIX: &str = "alpine3.20";

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

/// The registry serves, byte for byte, the index the builder wrote into its OCI layout under
/// the cache: the layout every platform was checked in.
fn check_published_is_built(cache: &Path, repository: &str, tag: &str, reference: &str) {
    let layout = cache.join("oci-built").join(format!("{repository}_{tag}"));
    let top: Value = serde_json::from_slice(
        &std::fs::read(layout.join("index.json"))
            .unwrap_or_else(|e| panic!("no built OCI layout at {}: {e}", layout.display())),
    )
    .unwrap();
    let built = top["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    let pushed = format!(
        "sha256:{}",
        xtask::hex(&<sha2::Sha256 as sha2::Digest>::digest(&raw))
    );
    assert_eq!(
        pushed, built,
        "{reference}: the published index is the built one"
    );
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

/// Everything a user pulling the release from `prefix` relies on; `cache` holds the build's
/// artifact manifests.
pub fn check_pushed_release(prefix: &str, cache: &Path) {
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
        (
            "kube-proxy",
            "",
            &["usr/local/bin/kube-proxy", "usr/sbin/iptables-wrapper"],
        ),
    ];
    let tags: Value = serde_json::from_slice(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{prefix}/kubelet"),
    ]))
    .unwrap();
    assert_eq!(tags["Tags"].as_array().unwrap().len(), 5, "{tags}");

    for (repository, variant, files) in images {
        let tag = format!("{version}-{variant}{TAG_SUFFIX}");
        let reference = format!("{prefix}/{repository}:{tag}");
        check_published_is_built(cache, repository, &tag, &reference);
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
            check_packing(cache, &rootfs, arch, files);
            check_host_tools(&rootfs, repository, variant, arch);
        }
    }
}

/// The image carries exactly the host tool programs its release needs, each the packed program
/// the tool build installed (by sha256), with its links, and the iptables wrapper linked as the
/// commands it stands for; a kube-proxy image carries no volume tools.
fn check_host_tools(rootfs: &Path, repository: &str, variant: &str, arch: &str) {
    let name = match variant.trim_end_matches('-') {
        "" => repository.to_owned(),
        variant => format!("{repository}-{variant}"),
    };
    let image = Image::from_name(&name).unwrap();
    let version = fixtures::KUBERNETES_TAG.parse().unwrap();
    let arch = match arch {
        "amd64" => Arch::Amd64,
        "arm64" => Arch::Arm64,
        _ => Arch::Armv7,
    };
    let programs = hostcommands::tool_programs(image, version);
    assert!(!programs.is_empty(), "{name}: carries host tools");
    for (tool, program) in programs {
        let shipped = std::fs::read(rootfs.join(program.installed))
            .unwrap_or_else(|e| panic!("{name} {arch}: /{}: {e}", program.installed));
        let built = super::installed_host_tool(tool, arch, program.installed);
        assert_eq!(
            shipped,
            std::fs::read(&built).unwrap(),
            "{name} {arch}: /{} is the built program",
            program.installed
        );
        assert!(
            memchr::memmem::find(&shipped, UPX_MAGIC).is_some(),
            "{name} {arch}: /{} is packed",
            program.installed
        );
        let dir = rootfs.join(program.installed).parent().unwrap().to_owned();
        for link in program.links {
            assert_eq!(
                std::fs::read_link(dir.join(link)).unwrap().to_str(),
                Some(program.file_name()),
                "{name} {arch}: {link}"
            );
        }
    }
    let wrapped = rootfs.join("sbin/iptables");
    assert_eq!(
        std::fs::read_link(&wrapped).unwrap().to_str(),
        Some("/usr/sbin/iptables-wrapper"),
        "{name} {arch}: 1.26 images all run iptables through the wrapper"
    );
    assert!(rootfs.join("usr/sbin/iptables-wrapper").is_file());
    let has_mount_tools = rootfs.join("usr/bin/mount").exists();
    assert_eq!(
        has_mount_tools,
        image != Image::KubeProxy,
        "{name}: util-linux only where kubelet runs"
    );
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
        cmd.contains(&"--container-runtime-endpoint=unix:///run/containerd/containerd.sock"),
        "a remote runtime needs its endpoint: {cmd:?}"
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

/// Where the built programs go in an image, and the one file there that is not a built binary.
const BINARY_DIRS: [&str; 2] = ["usr/local/bin", "opt/cni/bin"];
const SCRIPTS: [&str; 2] = ["install-cni", "iptables-wrapper"];
/// upx writes this in the header of every file it packs.
const UPX_MAGIC: &[u8] = b"UPX!";

/// Every built binary in the image is the one the artifact manifest records, packed exactly
/// where the record says so (see [`check_shipped`]).
fn check_packing(cache: &Path, rootfs: &Path, arch: &str, files: &[&str]) {
    let arch_dir = if arch == "arm" { "armv7" } else { arch };
    let manifest_path = cache
        .join("out")
        .join(fixtures::KUBERNETES_TAG)
        .join(arch_dir)
        .join("manifest.json");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let upx = manifest["upx"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no upx version", manifest_path.display()));
    let records = manifest["binaries"].as_array().unwrap();
    let mut checked = Vec::new();
    for dir in BINARY_DIRS {
        let Ok(entries) = std::fs::read_dir(rootfs.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if SCRIPTS.contains(&name.as_str()) {
                continue;
            }
            let record = records
                .iter()
                .find(|b| b["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{arch}: /{dir}/{name} is not a built binary"));
            let bytes = std::fs::read(entry.path()).unwrap();
            if let Err(problem) = check_shipped(arch, upx, record, &bytes) {
                panic!("/{dir}/{name}: {problem}");
            }
            checked.push(format!("{dir}/{name}"));
        }
    }
    for file in files {
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        assert!(
            SCRIPTS.contains(&name) || checked.iter().any(|c| c == file),
            "{arch}: /{file} was not checked against the manifest"
        );
    }
}

/// One file shipped in an image against its record in the artifact manifest; `upx` is the
/// manifest's upx version. The file is the shipped binary (sha256), and:
/// - where the record says packed (`packed_size`), it is smaller than the unpacked binary, that
///   is the file's size, and the file carries upx's `UPX!` magic;
/// - where it says unpacked, the file has no `UPX!` magic and is the unpacked size, and a tool
///   (anything but the daemons kubelet and kube-proxy, which are never packed unless asked)
///   carries the note the build writes when its packed binary did not run.
pub fn check_shipped(arch: &str, upx: &str, record: &Value, bytes: &[u8]) -> Result<(), String> {
    let name = record["name"]
        .as_str()
        .ok_or_else(|| format!("{arch}: a record without a name: {record}"))?;
    let what = format!("{arch} {name}");
    let digest = xtask::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes));
    if record["sha256"].as_str() != Some(digest.as_str()) {
        return Err(format!(
            "{what}: the image holds sha256 {digest}, not the shipped binary: {record}"
        ));
    }
    let unpacked_size = record["unpacked_size"]
        .as_u64()
        .ok_or_else(|| format!("{what}: no unpacked_size: {record}"))?;
    let size = bytes.len() as u64;
    let has_magic = memchr::memmem::find(bytes, UPX_MAGIC).is_some();
    match &record["packed_size"] {
        Value::Null => {
            if has_magic {
                return Err(format!(
                    "{what}: recorded as unpacked, but the file carries upx's UPX! magic: {record}"
                ));
            }
            if size != unpacked_size {
                return Err(format!(
                    "{what}: recorded as unpacked ({unpacked_size} bytes), but the file has {size}"
                ));
            }
            // upx 4.2 packs every architecture's tools and they run: a tool shipped unpacked
            // means packing failed, whatever the note says.
            let is_daemon = name == "kubelet" || name == "kube-proxy";
            if !is_daemon {
                let note = record["note"].as_str().unwrap_or("no note");
                return Err(format!(
                    "{what}: a tool shipped unpacked by {upx} ({note}): {record}"
                ));
            }
        }
        Value::Number(packed) => {
            let packed = packed
                .as_u64()
                .ok_or_else(|| format!("{what}: packed_size is not a size: {record}"))?;
            if packed >= unpacked_size {
                return Err(format!(
                    "{what}: packed to {packed} bytes from {unpacked_size}: not smaller"
                ));
            }
            if size != packed {
                return Err(format!(
                    "{what}: recorded as packed to {packed} bytes, but the file has {size}"
                ));
            }
            if !has_magic {
                return Err(format!(
                    "{what}: recorded as packed, but the file has no UPX! magic: {record}"
                ));
            }
        }
        other => {
            return Err(format!(
                "{what}: packed_size is neither a size nor null: {other}"
            ))
        }
    }
    Ok(())
}
