//! `upstream check` and `upstream bump` against git repositories this test creates, whose new
//! tags appear between two runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use git2::{Oid, Repository};
use kubelet_upstream::Manifest;

const TIME: i64 = 1_700_000_000;
const LATER: i64 = 1_710_000_000;

struct Repo {
    path: PathBuf,
    repo: Repository,
}

impl Repo {
    fn new(dir: &Path, name: &str) -> Repo {
        let path = dir.join(name);
        let repo = Repository::init(&path).unwrap();
        Repo { path, repo }
    }

    fn release(&self, tag: &str, go_version: &str, time: i64) -> Oid {
        support::write(&self.path, ".go-version", &format!("{go_version}\n"));
        support::write(&self.path, "VERSION", tag);
        let commit = support::commit_all(&self.repo, tag, time);
        support::tag(&self.repo, tag, commit, time);
        commit
    }

    fn url(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

fn run(manifest: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_MANIFEST", manifest)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_and_bump_follow_new_upstream_tags() {
    let dir = tempfile::tempdir().unwrap();
    let kubernetes = Repo::new(dir.path(), "kubernetes");
    let cri = Repo::new(dir.path(), "cri-tools");
    let cni = Repo::new(dir.path(), "plugins");
    let flannel = Repo::new(dir.path(), "cni-plugin");
    let mut pins = Vec::new();
    for minor in 35..=37 {
        let tag = format!("v1.{minor}.0");
        let k = kubernetes.release(&tag, "1.26.5", TIME);
        let c = cri.release(&tag, "1.26.5", TIME);
        pins.push((tag, k, c));
    }
    let cni_commit = cni.release("v1.9.0", "1.26.5", TIME);
    let flannel_commit = flannel.release("v1.6.2-flannel1", "1.26.5", TIME);

    let mut manifest_text = format!(
        "# Pins for the test; this comment must survive a bump.\nschema = 1\n\n[remotes]\nkubernetes = \"{}\"\ncri-tools = \"{}\"\ncni-plugins = \"{}\"\nflannel-plugin = \"{}\"\n",
        kubernetes.url(),
        cri.url(),
        cni.url(),
        flannel.url()
    );
    for (tag, k, c) in &pins {
        manifest_text.push_str(&format!(
            "\n[[release]]\nversion = \"{tag}\"\ncommit = \"{k}\"\ncommit-date = \"2023-11-14T22:13:20Z\"\ngo = \"1.26.5\"\nalpine = \"3.20.3\"\nalpine-digest = \"sha256:1e42bbe2508154c9126d48c2b8a75420c3544343bf86fd041fb7527e017a4b4a\"\n\n[release.cri-tools]\nmodule = \"sigs.k8s.io/cri-tools\"\nversion = \"{tag}\"\ncommit = \"{c}\"\n\n[release.cni-plugins]\nversion = \"v1.9.0\"\ncommit = \"{cni_commit}\"\n\n[release.flannel-plugin]\nversion = \"v1.6.2-flannel1\"\ncommit = \"{flannel_commit}\"\n"
        ));
    }
    let manifest = dir.path().join("upstream.toml");
    std::fs::write(&manifest, &manifest_text).unwrap();

    let check = run(&manifest, &["upstream", "check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("up to date"));
    let bump = run(&manifest, &["upstream", "bump"]);
    assert!(
        bump.status.success() && text(&bump).contains("up to date"),
        "{}",
        text(&bump)
    );
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap(),
        manifest_text,
        "nothing to bump, nothing written"
    );

    // Upstream moves on: a patch of 1.37 and a new minor, 1.38, with its cri-tools.
    let patch = kubernetes.release("v1.37.1", "1.26.8", LATER);
    let minor = kubernetes.release("v1.38.0", "1.27.1", LATER);
    let cri_138 = cri.release("v1.38.0", "1.27.1", LATER);

    let check = run(&manifest, &["upstream", "check"]);
    assert!(!check.status.success(), "outdated pins fail the check");
    let report = text(&check);
    assert!(
        report.contains("v1.37.1") && report.contains("v1.38.0"),
        "{report}"
    );
    assert!(
        !report.contains("v1.36.0 ("),
        "v1.36.0 is still the newest 1.36: {report}"
    );

    let bump = run(&manifest, &["upstream", "bump"]);
    assert!(bump.status.success(), "{}", text(&bump));
    let report = text(&bump);
    assert!(
        report.contains(&format!("pinned v1.37.1 = {patch}")),
        "{report}"
    );
    assert!(
        report.contains(&format!("pinned v1.38.0 = {minor}")),
        "{report}"
    );

    let bumped = std::fs::read_to_string(&manifest).unwrap();
    assert!(bumped.starts_with("# Pins for the test; this comment must survive a bump."));
    let parsed = Manifest::parse(&bumped, "upstream.toml").unwrap();
    let v138 = parsed.release("v1.38.0".parse().unwrap()).unwrap();
    assert_eq!(v138.kubernetes.commit, minor.to_string());
    assert_eq!(v138.go.to_string(), "1.27.1");
    assert_eq!(v138.source_date_epoch, LATER);
    assert_eq!(v138.cri_tools.version, "v1.38.0");
    assert_eq!(v138.cri_tools.commit, cri_138.to_string());
    assert_eq!(
        parsed
            .release("v1.37.1".parse().unwrap())
            .unwrap()
            .go
            .to_string(),
        "1.26.8"
    );

    let again = run(&manifest, &["upstream", "bump"]);
    assert!(
        again.status.success() && text(&again).contains("up to date"),
        "{}",
        text(&again)
    );
}
