//! The command line as a user meets it: one clear error line for bad input, plans that print.

use std::process::{Command, Output};

fn xtask(args: &[&str], env: &[(&str, &str)]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args).env("XTASK_CACHE_DIR", cache.path());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn unknown_version_lists_the_pins() {
    let output = xtask(&["release", "v1.99.0", "--dry-run"], &[]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(text.contains("v1.99.0 is not pinned"), "{text}");
    assert!(text.contains("v1.26.0"), "{text}");
}

#[test]
fn malformed_version_says_what_is_expected() {
    let output = xtask(&["fetch", "1.26"], &[]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("malformed version `1.26`") && text.contains("v1.26.0"),
        "{text}"
    );
}

#[test]
fn broken_manifest_is_one_line_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upstream.toml");
    let text = kubelet_upstream::MANIFEST_TEXT.replacen(
        "commit = \"b46a3f887ca979b1a5d14fd39cb1af43e7e5d12d\"",
        "commit = \"b46a3f8\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let output = xtask(
        &["release", "v1.26.0", "--dry-run"],
        &[("XTASK_MANIFEST", path.to_str().unwrap())],
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("upstream.toml:"), "{message}");
    assert!(message.contains("release v1.26.0: commit"), "{message}");
    assert!(message.contains("40 lowercase hex digits"), "{message}");
}

#[test]
fn dry_run_prints_every_step() {
    let output = xtask(
        &["release", "v1.26.0", "--dry-run", "--source", "goproxy"],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = String::from_utf8(output.stdout).unwrap();
    assert!(plan.contains("b46a3f887ca979b1a5d14fd39cb1af43e7e5d12d"));
    assert!(plan.contains("go1.19.4"));
    for platform in ["linux/amd64", "linux/arm64", "linux/arm/v7"] {
        assert!(
            plan.contains(&format!("kubelet {platform}: ")),
            "{platform}"
        );
    }
    assert!(plan.contains("GOARM=7"));
    assert!(plan.contains("CGO_ENABLED=1"));
    assert!(plan.contains("upx --best"));
    assert!(plan.contains("kubeadm linux/arm64: upx"));
    assert!(plan.contains("kubelet: not packed"));
    assert!(plan.contains("kubelet:v1.26.0-kubeadm-cni-alpine3.20"));
    assert!(plan.contains("kube-proxy:v1.26.0-alpine3.20"));
    assert!(plan.contains("SUBSTITUTES pinned flannel-plugin"));
}

/// The plan `release v1.26.0 --dry-run --source goproxy` prints with `args` added.
fn release_plan(args: &[&str]) -> String {
    let mut all = vec!["release", "v1.26.0", "--dry-run", "--source", "goproxy"];
    all.extend_from_slice(args);
    let output = xtask(&all, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// Every entry below a cache directory, relative to it, to show what a command wrote.
fn files_below(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found
}

#[test]
fn image_dry_run_prints_the_plan_and_builds_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["image", "v1.26.0", "--dry-run", "--image", "kube-proxy"])
        .args(["--builder", "buildah", "--registry", "127.0.0.1:9/ck"])
        .env("XTASK_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = String::from_utf8(output.stdout).unwrap();
    assert!(
        plan.contains("127.0.0.1:9/ck/kube-proxy:v1.26.0-alpine3.20"),
        "{plan}"
    );
    assert!(
        !plan.contains("kubelet:v1.26.0"),
        "only the selected image: {plan}"
    );
    let written = files_below(cache.path());
    assert!(
        written
            .iter()
            .all(|f| !f.starts_with("images") && !f.starts_with("oci")),
        "a dry run writes no context or layout: {written:?}"
    );
}

#[test]
fn release_plan_follows_the_image_and_arch_selection() {
    let plan = release_plan(&["--image", "kubelet-flannel,kube-proxy", "--arch", "arm64"]);
    assert!(
        plan.contains("kubelet:v1.26.0-flannel-alpine3.20"),
        "{plan}"
    );
    assert!(plan.contains("kube-proxy:v1.26.0-alpine3.20"), "{plan}");
    for unselected in [
        "kubelet:v1.26.0-alpine3.20",
        "kubelet:v1.26.0-cni-alpine3.20",
    ] {
        assert!(
            !plan.contains(unselected),
            "{unselected} was not asked for: {plan}"
        );
    }
    assert!(!plan.contains("linux/amd64"), "{plan}");
    assert!(!plan.contains("linux/arm/v7"), "{plan}");
}

#[test]
fn the_printed_pack_step_is_the_one_that_runs() {
    let plan = release_plan(&["--arch", "arm64"]);
    let line = plan
        .lines()
        .find(|l| l.trim_start().starts_with("kubeadm linux/arm64: upx"))
        .unwrap_or_else(|| panic!("no pack line for kubeadm: {plan}"));
    // What `Upx::pack` passes: the packing flags, quiet, and the packed binary's path.
    assert!(
        line.contains("upx --best --no-progress -q -o ") && line.contains("/arm64/bin/kubeadm"),
        "{line}"
    );
    assert!(line.contains("kubeadm version -o short"), "{line}");
}

#[test]
fn help_lists_the_commands() {
    let output = xtask(&["--help"], &[]);
    let help = String::from_utf8(output.stdout).unwrap();
    for command in [
        "release", "fetch", "build", "image", "sizes", "upstream", "doctor",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}
