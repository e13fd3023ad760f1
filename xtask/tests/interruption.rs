//! `kill -9` in the middle of every step (fetch, compile, pack, image build, push), each time
//! followed by another run: the last run resumes rather than redoing finished work, and its
//! binaries and image digests equal those of a run that was never interrupted. Nothing
//! half-written is left behind.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use camino::Utf8Path;
use support::fixtures;
use xtask::{compare_trees, HostPaths, Report};
use xtask::{PAUSED_MESSAGE, PAUSE_ENV, POINTS};

/// arm64: its tools are packed (upx's amd64 output does not run) and it runs under qemu.
const ARCH: &str = "arm64";
const IMAGES: &str = "kubelet,kubelet-flannel,kube-proxy";
/// How long one paused run may take to reach its pause point.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(900);

struct Setup {
    manifest: PathBuf,
    registry: String,
    base: String,
}

impl Setup {
    fn command(&self, cache: &Path, repository: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .args(["release", fixtures::KUBERNETES_TAG, "--arch", ARCH])
            .args(["--image", IMAGES, "--builder", "buildah"])
            .args(["--registry", &format!("{}/{repository}", self.registry)])
            .args(["--base-image", &self.base])
            .env("XTASK_CACHE_DIR", cache)
            .env("XTASK_TOOL_CACHE_DIR", support::tool_cache())
            .env("XTASK_MANIFEST", &self.manifest)
            .env_remove(PAUSE_ENV);
        command
    }

    fn run(&self, cache: &Path, repository: &str) -> Output {
        let output = self.command(cache, repository).output().unwrap();
        assert!(
            output.status.success(),
            "release failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts a run that pauses at `point`, waits until it says so, and kills it with SIGKILL.
    /// Returns what it printed on stderr.
    fn run_and_kill_at(&self, cache: &Path, repository: &str, point: &str) -> String {
        let mut child = self
            .command(cache, repository)
            .env(PAUSE_ENV, point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let marker = format!("{PAUSED_MESSAGE} {point}");
        let mut seen = Vec::new();
        loop {
            match receiver.recv_timeout(PAUSE_TIMEOUT) {
                Ok(line) if line == marker => break,
                Ok(line) => seen.push(line),
                Err(error) => {
                    child.kill().ok();
                    panic!(
                        "the run never paused at {point} ({error}):\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no cleanup runs
        child.wait().unwrap();
        seen.join("\n")
    }
}

/// `reference digest` lines, by image name without the registry prefix.
fn digests(output: &Output, repository: &str) -> BTreeMap<String, String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (reference, digest) = line.split_once(' ')?;
            let name = reference.split(&format!("/{repository}/")).nth(1)?;
            Some((name.to_owned(), digest.to_owned()))
        })
        .collect()
}

fn tags(registry: &str, repository: &str) -> Vec<String> {
    let output = Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{registry}/{repository}"))
        .output()
        .unwrap();
    if !output.status.success() {
        return Vec::new();
    }
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    listing["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

fn has_entry_named(dir: &Path, pattern: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains(pattern))
        })
        .unwrap_or(false)
}

#[test]
#[ignore = "end-to-end: needs buildah, skopeo, docker-registry, qemu-user-static, zig and upx; run with -- --include-ignored (.ci/run installs them)"]
fn a_run_killed_in_any_step_resumes_to_the_same_result() {
    support::require_tools("interruption", &support::PIPELINE_TOOLS);
    support::require_minirootfs("interruption");
    let upstream = support::FixtureUpstream::create();
    let (work, manifest) = (&upstream.work, upstream.manifest.clone());
    let registry = support::Registry::start();
    let status = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["base", "--minirootfs"])
        .arg(support::minirootfs_dir())
        .args(["--registry", &format!("{}/base", registry.address)])
        .env("XTASK_CACHE_DIR", work.path().join("base-cache"))
        .env("XTASK_TOOL_CACHE_DIR", support::tool_cache())
        .status()
        .unwrap();
    assert!(status.success());
    let setup = Setup {
        manifest,
        registry: registry.address.clone(),
        base: format!("{}/base/alpine:3.20.3", registry.address),
    };

    let reference_cache = work.path().join("reference");
    let reference = setup.run(&reference_cache, "reference");

    let cache = work.path().join("interrupted");
    let out = cache.join("out").join(fixtures::KUBERNETES_TAG).join(ARCH);
    for point in POINTS {
        let before = setup.run_and_kill_at(&cache, "interrupted", point);
        // Each kill lands mid-step, with part of the step's work on disk.
        match point {
            "fetch" => assert!(
                has_entry_named(
                    &cache.join("sources/git/kubernetes"),
                    &format!(".{}.partial-", fixtures::KUBERNETES_TAG)
                ),
                "a staged, uncommitted checkout"
            ),
            "compile" => assert!(has_entry_named(&out.join("unpacked"), ".partial-go")),
            // Binaries are compiled and shipped one after the other: kubelet, kube-proxy and
            // kubeadm (the first to be packed) were done when the pack step was killed.
            "pack" => assert!(has_entry_named(&out.join("bin"), ".partial-packed")),
            "image-build" => {
                for done in ["kubelet", "kube-proxy", "kubeadm"] {
                    let line = format!("compiling {done} for");
                    assert!(!before.contains(&line), "{done} was not resumed:\n{before}");
                }
            }
            "push" => {
                assert!(!before.contains("compiling"), "{before}");
                assert_eq!(tags(&setup.registry, "interrupted/kubelet").len(), 1);
                assert!(tags(&setup.registry, "interrupted/kube-proxy").is_empty());
            }
            other => panic!("no check for pause point {other}"),
        }
    }
    let resumed = setup.run(&cache, "interrupted");
    let resumed_log = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed_log.contains("compiling"), "{resumed_log}");

    assert_eq!(
        digests(&resumed, "interrupted"),
        digests(&reference, "reference"),
        "the resumed run pushed the same images as the uninterrupted one"
    );
    assert_eq!(digests(&reference, "reference").len(), 3);
    let mut report = Report::default();
    let reference_out = reference_cache
        .join("out")
        .join(fixtures::KUBERNETES_TAG)
        .join(ARCH);
    compare_trees(
        Utf8Path::from_path(&reference_out).unwrap(),
        Utf8Path::from_path(&out).unwrap(),
        ARCH,
        &HostPaths::new(&[]),
        &mut report,
    )
    .unwrap();
    assert!(report.differences.is_empty(), "{}", report.render());
    assert!(report.same.len() >= 2 * 21, "{}", report.render());
    assert_eq!(support::leftovers(&cache), Vec::<String>::new());
}
