//! `upstream check` and `upstream bump` against git repositories this test creates, whose new
//! tags appear between two runs, and a module proxy in a directory that serves the same tags.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use git2::{Oid, Repository};
use kubelet_upstream::Manifest;
use support::goproxy::GoProxy;

const TIME: i64 = 1_700_000_000;
const LATER: i64 = 1_710_000_000;
const CRI_TOOLS_MODULE: &str = "sigs.k8s.io/cri-tools";
const CNI_MODULE: &str = "github.com/containernetworking/plugins";
/// The newest release's flannel stand-in, which a bump carries over with its own sum.
const FLANNEL_STAND_IN: &str = "[release.flannel-plugin.goproxy]\nmodule = \"github.com/containernetworking/plugins\"\nversion = \"v0.9.1\"\nsubdir = \"plugins/meta/flannel\"\nmodule-sum = \"h1:FD1tADPls2EEi3flPc2OegIY1M9pUa9r2Quag7HMLV8=\"\nreason = \"the module proxy serves no flannel-io/cni-plugin\"\n";

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

    /// Serves `tag` through `proxy` as `module@tag`; returns its sum.
    fn publish(&self, proxy: &GoProxy, module: &str, tag: &str) -> String {
        proxy.publish_tag(&self.path, tag, "", module, tag)
    }
}

/// What the runs share: the manifest, a private cache (the proxy's modules must not reach the
/// real module cache) and the proxy.
struct Env {
    manifest: PathBuf,
    cache: PathBuf,
    proxy: GoProxy,
}

fn run(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_MANIFEST", &env.manifest)
        .env("XTASK_CACHE_DIR", &env.cache)
        .env("XTASK_TOOL_CACHE_DIR", "")
        .envs(env.proxy.env())
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
    support::require_tools("upstream_tracking", &["go"]);
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
    // The newest release, the template of a bump, stands flannel in as the committed one does.
    manifest_text.push_str(&format!("\n{FLANNEL_STAND_IN}"));
    let manifest = dir.path().join("upstream.toml");
    std::fs::write(&manifest, &manifest_text).unwrap();
    let env = Env {
        manifest: manifest.clone(),
        cache: dir.path().join("cache"),
        proxy: GoProxy::new(&dir.path().join("proxy")),
    };
    let run = |args: &[&str]| run(&env, args);

    let check = run(&["upstream", "check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("up to date"));
    let bump = run(&["upstream", "bump"]);
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
    // The proxy serves the same tags, all but cri-tools v1.38.0 at first.
    let sum_cri_137 = cri.publish(&env.proxy, CRI_TOOLS_MODULE, "v1.37.0");
    let sum_1371 = kubernetes.publish(&env.proxy, "k8s.io/kubernetes", "v1.37.1");
    let sum_1380 = kubernetes.publish(&env.proxy, "k8s.io/kubernetes", "v1.38.0");
    let sum_cni = cni.publish(&env.proxy, CNI_MODULE, "v1.9.0");

    let check = run(&["upstream", "check"]);
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

    // A module the proxy cannot serve gets no sum: the bump stops, saying so, and writes nothing.
    let bump = run(&["upstream", "bump"]);
    assert!(!bump.status.success(), "{}", text(&bump));
    let errors = support::error_lines(&bump);
    assert_eq!(errors.len(), 1, "{}", text(&bump));
    assert!(
        errors[0].contains("module sums of sigs.k8s.io/cri-tools@v1.38.0 (")
            && errors[0].contains("set GOPROXY"),
        "{}",
        errors[0]
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), manifest_text);

    let sum_cri = cri.publish(&env.proxy, CRI_TOOLS_MODULE, "v1.38.0");
    let bump = run(&["upstream", "bump"]);
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
    let v1371 = parsed.release("v1.37.1".parse().unwrap()).unwrap();
    assert_eq!(v1371.go.to_string(), "1.26.8");

    // Every module the goproxy source will download is pinned by the sum the go command
    // computed from what the proxy served, which is what this test computed on its own.
    assert_eq!(
        v1371.kubernetes.module_sum.as_deref(),
        Some(sum_1371.as_str())
    );
    assert_eq!(
        v138.kubernetes.module_sum.as_deref(),
        Some(sum_1380.as_str())
    );
    assert_eq!(v138.cri_tools.module, CRI_TOOLS_MODULE);
    assert_eq!(v138.cri_tools.module_sum.as_deref(), Some(sum_cri.as_str()));
    assert_eq!(
        v138.cni_plugins.module_sum.as_deref(),
        Some(sum_cni.as_str())
    );
    assert_eq!(
        v1371.cri_tools.module_sum.as_deref(),
        Some(sum_cri_137.as_str())
    );
    let template = parsed.release("v1.37.0".parse().unwrap()).unwrap();
    for release in [v1371, v138] {
        assert_eq!(release.flannel_plugin, template.flannel_plugin);
        for pin in release.pins() {
            assert!(pin.goproxy_module_sum().is_some(), "{pin:?}");
        }
    }
    // In the committed manifest's format: a module-sum line right after the commit it sums.
    assert!(
        bumped.contains(&format!(
            "commit-date = \"2024-03-09T16:00:00Z\"\nmodule-sum = \"{sum_1380}\"\n"
        )),
        "{bumped}"
    );
    assert!(
        bumped.contains(&format!(
            "commit = \"{cri_138}\"\nmodule-sum = \"{sum_cri}\"\n"
        )),
        "{bumped}"
    );

    let again = run(&["upstream", "bump"]);
    assert!(
        again.status.success() && text(&again).contains("up to date"),
        "{}",
        text(&again)
    );
}
