//! Sources from the Go module proxy, verified by the go command's checksums and by the pins.
//!
//! Kubernetes' `cmd/...` packages build only inside its repository, where `replace` lines
//! point the staging modules at `./staging/src/...`. Outside it we generate a small module
//! that requires `k8s.io/kubernetes` and the staging modules at their published
//! `v0.MINOR.PATCH` versions, mirroring upstream's other requirements.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::modules::{self, Replace};
use kubelet_upstream::{rules, Arch, Component, KubeVersion, Pin, Release};
use serde::Deserialize;
use xshell::{cmd, Shell};

use super::{Fetcher, SourceTree, COMPLETE_MARKER};
use crate::fsutil;
use crate::go::{self, Network, Toolchain};
use crate::layout::Layout;

/// The module path of the generated Kubernetes build module.
const BUILD_MODULE_PREFIX: &str = "containerized-kubelet.local/kubernetes";
/// Bump when what a cache entry holds changes, so older entries are fetched again.
const ENTRY_FORMAT: u32 = 6;

pub struct GoproxyFetcher<'a> {
    pub layout: &'a Layout,
    pub sh: &'a Shell,
}

impl Fetcher for GoproxyFetcher<'_> {
    fn describe(&self, _release: &Release, pin: &Pin) -> String {
        let (module, version, subdir) = pin.goproxy_module();
        let mut line = format!("go module {module}@{version}");
        if let Some(subdir) = subdir {
            line.push_str(&format!(" (directory {subdir})"));
        }
        match &pin.goproxy {
            Some(sub) => line.push_str(&format!(
                " SUBSTITUTES pinned {} {} = {}: {}",
                pin.component, pin.version, pin.commit, sub.reason
            )),
            None => line.push_str(&format!(" = {}", pin.commit)),
        }
        match pin.goproxy_module_sum() {
            Some(sum) => line.push_str(&format!(", {sum}")),
            None => line.push_str(", NO module-sum pin: the fetch refuses it"),
        }
        line
    }

    fn planned(&self, release: &Release, pin: &Pin) -> SourceTree {
        self.tree_for(&self.destination(release, pin), pin)
    }

    fn fetch(&self, release: &Release, pin: &Pin) -> Result<SourceTree> {
        // Every pin of the release, before anything is read or downloaded: a manifest that
        // lacks a sum stops the fetch with the cache as it was.
        let manifest = self.layout.manifest();
        for other in release.pins() {
            pinned_sum(release, other, &manifest)?;
        }
        let sum = pinned_sum(release, pin, &manifest)?;
        let dest = self.destination(release, pin);
        let tree = self.tree_for(&dest, pin);
        // The sum in the marker: an entry verified against another pin is fetched again.
        let marker = format!("{} {sum} format {ENTRY_FORMAT}", pin.commit);
        if std::fs::read_to_string(dest.join(COMPLETE_MARKER)).is_ok_and(|m| m == marker) {
            return Ok(tree);
        }
        let toolchain = Toolchain::for_release(release);
        let download = self.download(&toolchain, pin, sum)?;
        let staging = fsutil::staging_dir(&dest)?;
        let staging_path = Utf8Path::from_path(staging.path())
            .context("non-UTF-8 cache path")?
            .to_owned();
        match pin.component {
            Component::Kubernetes => {
                write_build_module(self.sh, release, &download, &staging_path)?
            }
            _ => {
                fsutil::copy_tree(&download.dir, &staging_path)?;
                self.pin_staging_replaces(release, &staging_path)?;
            }
        }
        let packages = packages_of(release, pin.component, &self.tree_for(&staging_path, pin));
        let full_graph = pin.component == Component::Kubernetes;
        let tags = rules::component_build_tags(pin.component);
        self.complete_go_sum(&toolchain, &staging_path, &packages, tags, full_graph)?;
        fsutil::write_atomic(&staging_path.join(COMPLETE_MARKER), marker.as_bytes())?;
        crate::pause::point("fetch");
        fsutil::commit_dir(staging, &dest)?;
        Ok(tree)
    }
}

/// What `go mod download -json` reports for one module.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModuleDownload {
    pub path: String,
    pub version: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub dir: Option<Utf8PathBuf>,
    /// The go command's `h1:` hash of the module zip, as go.sum and `module-sum` spell it.
    #[serde(default)]
    pub sum: Option<String>,
    #[serde(default)]
    origin: Option<Origin>,
}

impl ModuleDownload {
    /// The commit the proxy says the version came from, when it records one.
    pub fn origin_hash(&self) -> Option<&str> {
        self.origin.as_ref()?.hash.as_deref()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Origin {
    #[serde(default)]
    hash: Option<String>,
}

/// Downloads `targets` (`module@version`) through GOPROXY with one go command, and reports on
/// each; a module the proxy cannot serve has `error` set.
pub fn download_modules(
    sh: &Shell,
    env: Vec<(String, String)>,
    targets: &[String],
) -> Result<Vec<ModuleDownload>> {
    // `go mod download` exits non-zero on errors but still prints the JSON that says why.
    let output = cmd!(sh, "go mod download -json {targets...}")
        .envs(env)
        .ignore_status()
        .quiet()
        .output()
        .context("cannot run `go mod download`; is Go installed? (`cargo xtask doctor`)")?;
    let failed = || {
        anyhow::anyhow!(
            "go mod download {} failed: {}",
            targets.join(" "),
            first_line(String::from_utf8_lossy(&output.stderr).trim())
        )
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    // One JSON object per module asked for, concatenated.
    let reports: Vec<ModuleDownload> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|_| failed())?;
    if reports.len() != targets.len() {
        return Err(failed());
    }
    Ok(reports)
}

/// A verified module download.
pub struct Downloaded {
    pub dir: Utf8PathBuf,
}

impl GoproxyFetcher<'_> {
    fn destination(&self, release: &Release, pin: &Pin) -> Utf8PathBuf {
        let (module, version, _) = pin.goproxy_module();
        match pin.component {
            Component::Kubernetes => self.layout.goproxy_kubernetes_module(release.version),
            component => self.layout.goproxy_tree(
                component,
                &format!("{}@{version}", module.replace('/', "!")),
            ),
        }
    }

    fn tree_for(&self, dir: &Utf8Path, pin: &Pin) -> SourceTree {
        let (module, version, subdir) = pin.goproxy_module();
        let package_prefix = match (pin.component, subdir) {
            (Component::Kubernetes, _) => format!("{}/", Component::Kubernetes.module_path()),
            (_, Some(subdir)) => format!("./{subdir}/"),
            (_, None) => "./".to_owned(),
        };
        SourceTree {
            component: pin.component.key().to_owned(),
            version: pin.version.clone(),
            commit: pin.commit.clone(),
            module: module.to_owned(),
            built_version: version.to_owned(),
            dir: dir.to_owned(),
            package_prefix,
            // Module zips drop parts of vendor/ (nested modules), so proxy trees always
            // build from the module cache, which `fetch` fills completely.
            mod_flag: "-mod=readonly".to_owned(),
            substitute: pin.goproxy.as_ref().map(|sub| {
                format!(
                    "{module}@{version} stands in for {} {}: {}",
                    pin.component, pin.version, sub.reason
                )
            }),
        }
    }

    fn download(&self, toolchain: &Toolchain, pin: &Pin, sum: &str) -> Result<Downloaded> {
        let (module, version, _) = pin.goproxy_module();
        let target = format!("{module}@{version}");
        eprintln!("    downloading {target}");
        let env = go::go_env(self.layout, toolchain, Network::Allowed);
        let download = download_modules(self.sh, env, std::slice::from_ref(&target))?
            .pop()
            .context("go mod download reported nothing")?;
        if let Some(error) = &download.error {
            bail!("the module proxy cannot serve {target}: {}; check GOPROXY, or pin a served version", first_line(error));
        }
        verify_download(
            sum,
            pin,
            &target,
            download.sum.as_deref(),
            download.origin_hash(),
        )?;
        let dir = download
            .dir
            .with_context(|| format!("go mod download {target} reported no directory"))?;
        Ok(Downloaded { dir })
    }

    /// Loads every package the build needs once per platform, with network, so go.sum is
    /// complete and builds run with GOPROXY=off.
    ///
    /// With `full_graph`, also every go.mod of the module graph: the generated Kubernetes
    /// module lists all of upstream's requirements, and builds read their go versions. Other
    /// components' graphs name staging modules at v0.0.0 that only their vendor/ resolved.
    fn complete_go_sum(
        &self,
        toolchain: &Toolchain,
        dir: &Utf8Path,
        packages: &[String],
        tags: &[&str],
        full_graph: bool,
    ) -> Result<()> {
        if packages.is_empty() {
            return Ok(());
        }
        let _cwd = self.sh.push_dir(dir);
        // The whole module graph's go.mod files: builds read every dependency's go version
        // from them, and with GOPROXY=off a missing one fails the build.
        if full_graph {
            let mut graph_env = go::go_env(self.layout, toolchain, Network::Allowed);
            graph_env.push(("GOFLAGS".into(), "-modcacherw -mod=mod".into()));
            cmd!(self.sh, "go list -m all")
                .envs(graph_env)
                .quiet()
                .ignore_stdout()
                .run()
                .context("cannot load the module graph")?;
        }
        // The same build tags as the builds, so the same files' imports are resolved.
        let tags = format!("-tags={}", tags.join(","));
        for arch in Arch::ALL {
            let mut env = go::go_env(self.layout, toolchain, Network::Allowed);
            env.push(("GOFLAGS".into(), "-modcacherw -mod=mod".into()));
            cmd!(self.sh, "go list -deps {tags} {packages...}")
                .envs(env)
                .env("GOOS", "linux")
                .env("GOARCH", arch.goarch())
                .env("CGO_ENABLED", "1")
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| {
                    format!(
                        "cannot resolve the dependencies of {} for {arch}",
                        packages.join(" ")
                    )
                })?;
        }
        Ok(())
    }
}

impl GoproxyFetcher<'_> {
    /// Older cri-tools replace the Kubernetes staging modules with pseudo-versions of
    /// `k8s.io/kubernetes/staging/src/...`, which only their vendor/ resolved (module zips drop
    /// vendor/). Points every staging module at its published `v0.MINOR.PATCH` instead.
    fn pin_staging_replaces(&self, release: &Release, dir: &Utf8Path) -> Result<()> {
        let go_mod = read_go_mod(self.sh, &dir.join("go.mod"))?;
        if !modules::uses_staging_paths(&go_mod.replaces()) {
            return Ok(());
        }
        let kubernetes = read_go_mod(self.sh, &self.kubernetes_go_mod(release)?)?;
        let staging = modules::staging_modules(&kubernetes.replaces());
        let edits: Vec<String> = modules::staging_pins(release.version, &staging)
            .into_iter()
            .map(|(module, version)| format!("-replace={module}={module}@{version}"))
            .collect();
        let _cwd = self.sh.push_dir(dir);
        cmd!(self.sh, "go mod edit {edits...}")
            .env("GOTOOLCHAIN", "local")
            .quiet()
            .run()
            .context("cannot point the staging modules at their published versions")?;
        Ok(())
    }

    /// Upstream's go.mod of the release, from the module cache (fetched just before).
    fn kubernetes_go_mod(&self, release: &Release) -> Result<Utf8PathBuf> {
        let path = self
            .layout
            .gomodcache()
            .join("cache/download/k8s.io/kubernetes/@v")
            .join(format!("{}.mod", release.version));
        if !path.exists() {
            bail!(
                "{path} is missing; fetch Kubernetes {} first",
                release.version
            );
        }
        Ok(path)
    }
}

fn read_go_mod(sh: &Shell, path: &Utf8Path) -> Result<GoMod> {
    let json = cmd!(sh, "go mod edit -json {path}")
        .env("GOTOOLCHAIN", "local")
        .quiet()
        .read()
        .with_context(|| format!("cannot read {path}"))?;
    serde_json::from_str(&json).context("unexpected `go mod edit -json` output")
}

/// The `h1:` sum a pin's download must have. Every module the proxy source builds is pinned by
/// its sum, stand-ins by their own: without one, a republished module would go unnoticed.
pub fn pinned_sum<'p>(release: &Release, pin: &'p Pin, manifest: &Utf8Path) -> Result<&'p str> {
    if let Some(sum) = pin.goproxy_module_sum() {
        return Ok(sum);
    }
    let (module, version, _) = pin.goproxy_module();
    let table = match (pin.component, &pin.goproxy) {
        (Component::Kubernetes, _) => "[[release]]".to_owned(),
        (component, Some(_)) => format!("[release.{component}.goproxy]"),
        (component, None) => format!("[release.{component}]"),
    };
    bail!(
        "release {}: {} has no module-sum pin for {module}@{version}, so the proxy's download cannot be checked; add module-sum = \"h1:...\" (the Sum that `go mod download -json {module}@{version}` prints) to {table} of {} in {manifest}, or pin new releases with `cargo xtask upstream bump`, which records it",
        release.version,
        pin.component,
        release.version
    )
}

/// Checks what the go command reported against the pins.
pub fn verify_download(
    expected: &str,
    pin: &Pin,
    target: &str,
    sum: Option<&str>,
    origin_hash: Option<&str>,
) -> Result<()> {
    let actual = sum.with_context(|| format!("go mod download {target} reported no Sum"))?;
    if expected != actual {
        bail!(
            "checksum mismatch for {target}: the proxy served {actual}, the manifest pins {expected}; the module was republished or the proxy is wrong. Check upstream, then re-pin with `cargo xtask upstream bump`"
        );
    }
    if pin.goproxy.is_none() {
        check_origin(target, &pin.commit, origin_hash)?;
    }
    Ok(())
}

/// Where the proxy records the commit a version came from, it must be the pinned one.
pub fn check_origin(target: &str, commit: &str, origin_hash: Option<&str>) -> Result<()> {
    match origin_hash {
        Some(hash) if hash != commit => bail!(
            "{target} comes from commit {hash}, but the manifest pins {commit}: the tag was moved. Check upstream, then re-pin with `cargo xtask upstream bump`"
        ),
        _ => Ok(()),
    }
}

fn packages_of(release: &Release, component: Component, tree: &SourceTree) -> Vec<String> {
    rules::binaries(release)
        .into_iter()
        .filter(|b| b.component == component)
        .map(|b| tree.package(&b.package))
        .collect()
}

/// The first line of a go command's error, for one-line messages.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim()
}

/// `go mod edit -json` output: what we mirror from upstream's go.mod.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GoMod {
    #[serde(default)]
    go: Option<String>,
    #[serde(default, rename = "GoDebug")]
    godebug: Option<Vec<KeyValue>>,
    #[serde(default)]
    require: Option<Vec<Requirement>>,
    #[serde(default)]
    replace: Option<Vec<Replacement>>,
}

impl GoMod {
    fn replaces(&self) -> Vec<Replace<'_>> {
        self.replace
            .iter()
            .flatten()
            .map(|r| Replace {
                old: &r.old.path,
                old_version: r.old.version.as_deref(),
                new: &r.new.path,
                new_version: r.new.version.as_deref(),
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyValue {
    key: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Requirement {
    path: String,
    version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Replacement {
    old: ModuleRef,
    new: ModuleRef,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModuleRef {
    path: String,
    #[serde(default)]
    version: Option<String>,
}

fn write_build_module(
    sh: &Shell,
    release: &Release,
    download: &Downloaded,
    dir: &Utf8Path,
) -> Result<()> {
    let go_mod = read_go_mod(sh, &download.dir.join("go.mod"))?;
    let text = build_module_go_mod(release.version, &go_mod);
    fsutil::write_atomic(&dir.join("go.mod"), text.as_bytes())?;
    // Some go.sum lines of upstream's dependencies are reused verbatim; the rest are added
    // by `complete_go_sum`, which checks them against the checksum database.
    let sums = std::fs::read_to_string(download.dir.join("go.sum")).unwrap_or_default();
    fsutil::write_atomic(&dir.join("go.sum"), sums.as_bytes())?;
    Ok(())
}

fn build_module_go_mod(version: KubeVersion, upstream: &GoMod) -> String {
    let replaces = upstream.replaces();
    let staging = modules::staging_modules(&replaces);
    let mut text = format!(
        "// Generated by `cargo xtask fetch --source goproxy`: builds k8s.io/kubernetes {version}\n// outside its repository. Do not edit.\nmodule {BUILD_MODULE_PREFIX}-{version}\n\n"
    );
    if let Some(go) = &upstream.go {
        text.push_str(&format!("go {go}\n\n"));
    }
    for debug in upstream.godebug.iter().flatten() {
        text.push_str(&format!("godebug {}={}\n", debug.key, debug.value));
    }
    text.push_str(&format!(
        "\nrequire (\n\t{} {version}\n",
        Component::Kubernetes.module_path()
    ));
    for requirement in upstream.require.iter().flatten() {
        let required =
            modules::required_version(version, &staging, &requirement.path, &requirement.version);
        text.push_str(&format!("\t{} {required}\n", requirement.path));
    }
    text.push_str(")\n");
    text.push_str("\nreplace (\n");
    for (module, published) in modules::staging_pins(version, &staging) {
        text.push_str(&format!("\t{module} => {module} {published}\n"));
    }
    text.push_str(")\n");
    let remote_replaces = modules::remote_replaces(&replaces);
    if !remote_replaces.is_empty() {
        text.push_str("\nreplace (\n");
        for r in remote_replaces {
            let old = match r.old_version {
                Some(v) => format!("{} {v}", r.old),
                None => r.old.to_owned(),
            };
            let new_version = r.new_version.unwrap_or_default();
            text.push_str(&format!("\t{old} => {} {new_version}\n", r.new));
        }
        text.push_str(")\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_module_maps_staging_and_keeps_remote_replaces() {
        let upstream: GoMod = serde_json::from_str(
            r#"{
                "Go": "1.19",
                "GoDebug": [{"Key": "default", "Value": "go1.19"}],
                "Require": [
                    {"Path": "k8s.io/api", "Version": "v0.0.0"},
                    {"Path": "github.com/spf13/cobra", "Version": "v1.6.0"}
                ],
                "Replace": [
                    {"Old": {"Path": "k8s.io/api"}, "New": {"Path": "./staging/src/k8s.io/api"}},
                    {"Old": {"Path": "example.com/x", "Version": "v1.0.0"}, "New": {"Path": "example.com/y", "Version": "v1.0.1"}}
                ]
            }"#,
        )
        .unwrap();
        let text = build_module_go_mod("v1.26.0".parse().unwrap(), &upstream);
        assert!(text.contains("module containerized-kubelet.local/kubernetes-v1.26.0\n"));
        assert!(text.contains("go 1.19\n"));
        assert!(text.contains("godebug default=go1.19\n"));
        assert!(text.contains("\tk8s.io/kubernetes v1.26.0\n"));
        assert!(text.contains("\tk8s.io/api v0.26.0\n"));
        assert!(text.contains("\tgithub.com/spf13/cobra v1.6.0\n"));
        assert!(text.contains("\texample.com/x v1.0.0 => example.com/y v1.0.1\n"));
        assert!(!text.contains("staging/src"));
        assert!(text.contains("\tk8s.io/api => k8s.io/api v0.26.0\n"));
    }

    fn committed() -> &'static Utf8Path {
        Utf8Path::new(kubelet_upstream::MANIFEST_FILE)
    }

    fn committed_release(version: &str) -> Release {
        let manifest = kubelet_upstream::Manifest::parse(
            kubelet_upstream::MANIFEST_TEXT,
            committed().as_str(),
        )
        .unwrap();
        manifest.release(version.parse().unwrap()).unwrap().clone()
    }

    #[test]
    fn a_stand_in_is_checked_against_its_own_sum() {
        let release = committed_release("v1.26.0");
        assert_eq!(release.flannel_plugin.module_sum, None);
        assert_eq!(
            pinned_sum(&release, &release.flannel_plugin, committed()).unwrap(),
            "h1:FD1tADPls2EEi3flPc2OegIY1M9pUa9r2Quag7HMLV8="
        );
    }

    #[test]
    fn a_module_without_a_sum_is_refused_with_where_to_pin_it() {
        let mut release = committed_release("v1.26.0");
        release.cni_plugins.module_sum = None;
        let error = pinned_sum(&release, &release.cni_plugins, committed())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("release v1.26.0: cni-plugins has no module-sum pin for github.com/containernetworking/plugins@v1.1.1"),
            "{error}"
        );
        assert!(
            error.contains("[release.cni-plugins] of v1.26.0 in kubelet-upstream/upstream.toml"),
            "{error}"
        );
        assert!(error.contains("cargo xtask upstream bump"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");

        release.flannel_plugin.goproxy.as_mut().unwrap().module_sum = None;
        let error = pinned_sum(&release, &release.flannel_plugin, committed())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("[release.flannel-plugin.goproxy]"),
            "{error}"
        );
        release.kubernetes.module_sum = None;
        let error = pinned_sum(&release, &release.kubernetes, committed())
            .unwrap_err()
            .to_string();
        assert!(error.contains("k8s.io/kubernetes@v1.26.0"), "{error}");
        assert!(error.contains("[[release]] of v1.26.0"), "{error}");
    }

    #[test]
    fn downloads_must_match_the_pinned_sum_and_commit() {
        let release = committed_release("v1.26.0");
        let pin = &release.cni_plugins;
        let sum = pinned_sum(&release, pin, committed()).unwrap();
        let target = "github.com/containernetworking/plugins@v1.1.1";
        verify_download(sum, pin, target, Some(sum), Some(&pin.commit)).unwrap();
        let other = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let error = verify_download(sum, pin, target, Some(other), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("checksum mismatch for {target}")),
            "{error}"
        );
        let error = verify_download(sum, pin, target, None, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("reported no Sum"), "{error}");
        let moved = "0".repeat(40);
        let error = verify_download(sum, pin, target, Some(sum), Some(&moved))
            .unwrap_err()
            .to_string();
        assert!(error.contains("the tag was moved"), "{error}");
        // A stand-in comes from another commit by definition; its sum is what binds it.
        let flannel = &release.flannel_plugin;
        let flannel_sum = pinned_sum(&release, flannel, committed()).unwrap();
        verify_download(
            flannel_sum,
            flannel,
            "x@v0.9.1",
            Some(flannel_sum),
            Some(&moved),
        )
        .unwrap();
    }
}
