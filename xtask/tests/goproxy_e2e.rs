//! End to end through the goproxy source: the real xtask fetches and builds the fixture release
//! from a module proxy in a directory (`GOPROXY=file:///...`) that serves the fixture
//! repositories' tags, so every check of the source runs against what a proxy served.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::fixtures;
use support::goproxy::{self, GoProxy, Sums};

const VERSION: &str = fixtures::KUBERNETES_TAG;
const CNI_MODULE: &str = "github.com/containernetworking/plugins";

/// A fixture upstream served by a proxy, a manifest pinning it with its sums, and a cache.
struct Setup {
    work: tempfile::TempDir,
    repos: fixtures::Repos,
    proxy: GoProxy,
    sums: Sums,
    manifest: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let work = tempfile::tempdir().unwrap();
        let repos = fixtures::create(&work.path().join("upstream"));
        let proxy = GoProxy::new(&work.path().join("proxy"));
        let sums = goproxy::publish_fixtures(&proxy, &repos);
        let manifest = work.path().join("upstream.toml");
        let text = goproxy::fixture_manifest(&repos, &support::host_go(), &sums);
        std::fs::write(&manifest, text).unwrap();
        Setup {
            work,
            repos,
            proxy,
            sums,
            manifest,
        }
    }

    fn cache(&self) -> PathBuf {
        self.work.path().join("cache")
    }

    /// Runs the xtask on this setup's proxy and cache, with `extra` environment last.
    fn xtask(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("XTASK_CACHE_DIR", self.cache())
            .env("XTASK_TOOL_CACHE_DIR", tool_cache(self.work.path()))
            .env("XTASK_MANIFEST", &self.manifest)
            .envs(self.proxy.env())
            .envs(extra.iter().copied())
            .output()
            .unwrap()
    }
}

/// A tool cache whose module cache is this test's own, since the fixtures reuse real module
/// paths and versions (k8s.io/kubernetes@v1.26.0) that must never reach a shared module cache,
/// while zig, upx and zig's libc builds come from the end-to-end tests' shared cache, where
/// they are built once.
fn tool_cache(work: &Path) -> PathBuf {
    let tools = work.join("tools");
    if !tools.exists() {
        std::fs::create_dir_all(&tools).unwrap();
        for shared in ["toolchains", "zig"] {
            let target = support::tool_cache().join(shared);
            std::fs::create_dir_all(&target).unwrap();
            std::os::unix::fs::symlink(&target, tools.join(shared)).unwrap();
        }
    }
    tools
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
#[ignore = "end-to-end: needs go, python3 (zig), curl, cmake and c++ (upx), builds with zig; run with -- --include-ignored (.ci/run installs them)"]
fn fetch_and_build_through_a_file_module_proxy() {
    support::require_tools("goproxy_e2e", &["go", "python3", "curl", "cmake", "c++"]);
    let setup = Setup::new();
    let fetch = setup.xtask(&["fetch", VERSION, "--source", "goproxy"], &[]);
    assert!(fetch.status.success(), "{}", stderr(&fetch));
    let log = stderr(&fetch);
    assert!(
        log.contains(&format!(
            "note: {CNI_MODULE}@v0.9.1 stands in for flannel-plugin {}",
            fixtures::FLANNEL_TAG
        )),
        "{log}"
    );

    // Kubernetes builds from the generated module, with the staging module at its published
    // version and go.sum holding the sums the proxy's files hash to.
    let sources = setup.cache().join("sources/goproxy");
    let build_module = sources.join("kubernetes-build").join(VERSION);
    let go_mod = read(&build_module.join("go.mod"));
    assert!(go_mod.contains("\tk8s.io/kubernetes v1.26.0\n"), "{go_mod}");
    assert!(
        go_mod.contains("\tk8s.io/component-base v0.26.0\n")
            && go_mod.contains("\tk8s.io/component-base => k8s.io/component-base v0.26.0\n"),
        "{go_mod}"
    );
    let go_sum = read(&build_module.join("go.sum"));
    for (module, version) in [
        ("k8s.io/kubernetes", VERSION),
        (goproxy::STAGING_MODULE, goproxy::STAGING_VERSION),
    ] {
        let line = format!(
            "{module} {version} {}\n",
            setup.sums[&format!("{module}@{version}")]
        );
        assert!(go_sum.contains(&line), "{line} in\n{go_sum}");
    }
    let cni_tree = sources.join(format!(
        "cni-plugins/{}@{}",
        CNI_MODULE.replace('/', "!"),
        fixtures::CNI_TAG
    ));
    assert!(cni_tree.join("plugins/main/bridge/main.go").exists());
    let flannel_tree = sources.join(format!(
        "flannel-plugin/{}@v0.9.1",
        CNI_MODULE.replace('/', "!")
    ));
    assert!(flannel_tree
        .join("plugins/meta/flannel/flannel.go")
        .exists());
    let record: serde_json::Value = serde_json::from_str(&read(
        &setup
            .cache()
            .join(format!("sources/{VERSION}-goproxy.json")),
    ))
    .unwrap();
    let trees = record["trees"].as_array().unwrap();
    assert_eq!(trees.len(), 4, "{record}");
    assert_eq!(trees[0]["commit"], setup.repos.kubernetes.1.as_str());
    assert_eq!(trees[3]["module"], CNI_MODULE);
    assert_eq!(trees[3]["built_version"], "v0.9.1");
    assert_eq!(trees[3]["package_prefix"], "./plugins/meta/flannel/");
    assert!(support::leftovers(&setup.cache()).is_empty());

    // A complete cache is used as it is: with the proxy switched off, the fetch still succeeds.
    let again = setup.xtask(
        &["fetch", VERSION, "--source", "goproxy"],
        &[("GOPROXY", "off")],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        !stderr(&again).contains("downloading"),
        "{}",
        stderr(&again)
    );

    let build = setup.xtask(
        &["build", VERSION, "--source", "goproxy", "--arch", "amd64"],
        &[],
    );
    assert!(build.status.success(), "{}", stderr(&build));
    let bin = setup.cache().join(format!("out/{VERSION}/amd64/bin"));
    for (binary, args, expected) in [
        ("kubelet", "--version", "Kubernetes v1.26.0"),
        ("crictl", "--version", "crictl version v1.26.1"),
    ] {
        let output = Command::new(bin.join(binary)).arg(args).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && text.trim() == expected,
            "{binary} {args}: {text}"
        );
    }
    let flannel = Command::new(bin.join("flannel"))
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&flannel.stdout).contains("cniVersion"));
}

#[test]
fn a_tampered_module_is_named_in_one_error_and_leaves_no_cache_entry() {
    support::require_tools("goproxy_e2e", &["go"]);
    let setup = Setup::new();
    // The proxy now serves other contents under the pinned version.
    let (mut files, _, time) =
        goproxy::files_at_tag(Path::new(&setup.repos.cni_plugins.0), fixtures::CNI_TAG, "");
    files
        .get_mut("plugins/main/bridge/main.go")
        .unwrap()
        .extend_from_slice(b"\n// republished\n");
    let served = setup
        .proxy
        .publish(CNI_MODULE, fixtures::CNI_TAG, &files, time, None);
    let pinned = &setup.sums[&format!("{CNI_MODULE}@{}", fixtures::CNI_TAG)];
    assert_ne!(&served, pinned);

    let fetch = setup.xtask(&["fetch", VERSION, "--source", "goproxy"], &[]);
    assert!(!fetch.status.success(), "{}", stderr(&fetch));
    let errors = support::error_lines(&fetch);
    assert_eq!(errors.len(), 1, "{}", stderr(&fetch));
    assert!(
        errors[0].contains(&format!(
            "checksum mismatch for {CNI_MODULE}@{}: the proxy served {served}, the manifest pins {pinned}",
            fixtures::CNI_TAG
        )),
        "{}",
        errors[0]
    );
    let cache = setup.cache();
    assert!(!cache.join("sources/goproxy/cni-plugins").exists());
    assert!(!cache
        .join(format!("sources/{VERSION}-goproxy.json"))
        .exists());
    assert_eq!(support::leftovers(&cache), Vec::<String>::new());
}

#[test]
fn a_module_without_a_sum_pin_stops_the_fetch_before_anything_is_downloaded() {
    support::require_tools("goproxy_e2e", &["go"]);
    let setup = Setup::new();
    let sum = &setup.sums[&format!(
        "github.com/kubernetes-sigs/cri-tools@{}",
        fixtures::CRI_TOOLS_TAG
    )];
    let text = read(&setup.manifest).replace(&format!("module-sum = \"{sum}\"\n"), "");
    std::fs::write(&setup.manifest, text).unwrap();

    let fetch = setup.xtask(&["fetch", VERSION, "--source", "goproxy"], &[]);
    assert!(!fetch.status.success(), "{}", stderr(&fetch));
    let errors = support::error_lines(&fetch);
    assert_eq!(errors.len(), 1, "{}", stderr(&fetch));
    assert!(
        errors[0].starts_with(&format!(
            "error: release {VERSION}: cri-tools has no module-sum pin for github.com/kubernetes-sigs/cri-tools@{}",
            fixtures::CRI_TOOLS_TAG
        )) && errors[0].contains(&format!(
                "[release.cri-tools] of {VERSION} in {}",
                setup.manifest.display()
            )),
        "{}",
        errors[0]
    );
    assert!(
        !setup.cache().join("sources").exists(),
        "nothing is fetched for a release with an unpinned module"
    );
}
