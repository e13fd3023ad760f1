//! Sources from the Go module proxy, verified by the go command's checksums and by the pins.
//!
//! Kubernetes' `cmd/...` packages build only inside its repository, where `replace` lines
//! point the staging modules at `./staging/src/...`. Outside it we generate a small module
//! that requires `k8s.io/kubernetes` and the staging modules at their published
//! `v0.MINOR.PATCH` versions, mirroring upstream's other requirements.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
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
        if let Some(sum) = pin.goproxy_module_sum() {
            line.push_str(&format!(", {sum}"));
        }
        line
    }

    fn planned(&self, release: &Release, pin: &Pin) -> SourceTree {
        self.tree_for(&self.destination(release, pin), pin)
    }

    fn fetch(&self, release: &Release, pin: &Pin) -> Result<SourceTree> {
        let dest = self.destination(release, pin);
        let tree = self.tree_for(&dest, pin);
        let marker = format!("{} format {ENTRY_FORMAT}", pin.commit);
        if std::fs::read_to_string(dest.join(COMPLETE_MARKER)).is_ok_and(|m| m == marker) {
            return Ok(tree);
        }
        let toolchain = Toolchain::for_release(release);
        let download = self.download(&toolchain, pin)?;
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
        self.complete_go_sum(&toolchain, &staging_path, &packages, full_graph)?;
        fsutil::write_atomic(&staging_path.join(COMPLETE_MARKER), marker.as_bytes())?;
        crate::pause::point("fetch");
        fsutil::commit_dir(staging, &dest)?;
        Ok(tree)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Download {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    dir: Option<Utf8PathBuf>,
    #[serde(default)]
    sum: Option<String>,
    #[serde(default)]
    origin: Option<Origin>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Origin {
    #[serde(default)]
    hash: Option<String>,
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

    fn download(&self, toolchain: &Toolchain, pin: &Pin) -> Result<Downloaded> {
        let (module, version, _) = pin.goproxy_module();
        let target = format!("{module}@{version}");
        eprintln!("    downloading {target}");
        // `go mod download` exits non-zero on errors but still prints the JSON that says why.
        let output = cmd!(self.sh, "go mod download -json {target}")
            .envs(go::go_env(self.layout, toolchain, Network::Allowed))
            .ignore_status()
            .quiet()
            .output()
            .context("cannot run `go mod download`; is Go installed? (`cargo xtask doctor`)")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let download: Download = serde_json::from_str(&stdout).map_err(|_| {
            anyhow::anyhow!(
                "go mod download {target} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
        if let Some(error) = download.error {
            bail!("the module proxy cannot serve {target}: {}; check GOPROXY, or pin a served version", first_line(&error));
        }
        verify_download(
            pin,
            &target,
            download.sum.as_deref(),
            download.origin.and_then(|o| o.hash).as_deref(),
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
        for arch in Arch::ALL {
            let mut env = go::go_env(self.layout, toolchain, Network::Allowed);
            env.push(("GOFLAGS".into(), "-modcacherw -mod=mod".into()));
            cmd!(self.sh, "go list -deps -tags providerless {packages...}")
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
        let uses_staging_paths = go_mod
            .replace
            .iter()
            .flatten()
            .any(|r| r.new.path.starts_with(STAGING_PATH_PREFIX));
        if !uses_staging_paths {
            return Ok(());
        }
        let kubernetes = read_go_mod(self.sh, &self.kubernetes_go_mod(release)?)?;
        let version = staging_version(release.version);
        let edits: Vec<String> = staging_modules(&kubernetes)
            .into_iter()
            .map(|module| format!("-replace={module}={module}@{version}"))
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

/// Where old releases of tools that embed Kubernetes took the staging modules from.
const STAGING_PATH_PREFIX: &str = "k8s.io/kubernetes/staging/src/";

fn read_go_mod(sh: &Shell, path: &Utf8Path) -> Result<GoMod> {
    let json = cmd!(sh, "go mod edit -json {path}")
        .env("GOTOOLCHAIN", "local")
        .quiet()
        .read()
        .with_context(|| format!("cannot read {path}"))?;
    serde_json::from_str(&json).context("unexpected `go mod edit -json` output")
}

/// The staging modules: those upstream's go.mod replaces with local directories.
fn staging_modules(upstream: &GoMod) -> Vec<&str> {
    upstream
        .replace
        .iter()
        .flatten()
        .filter(|r| is_local_path(&r.new.path))
        .map(|r| r.old.path.as_str())
        .collect()
}

/// Checks what the go command reported against the pins.
pub fn verify_download(
    pin: &Pin,
    target: &str,
    sum: Option<&str>,
    origin_hash: Option<&str>,
) -> Result<()> {
    if let (Some(expected), Some(actual)) = (pin.goproxy_module_sum(), sum) {
        if expected != actual {
            bail!(
                "checksum mismatch for {target}: the proxy served {actual}, the manifest pins {expected}; the module was republished or the proxy is wrong. Check upstream, then re-pin with `cargo xtask upstream bump`"
            );
        }
    }
    if let (None, Some(hash)) = (&pin.goproxy, origin_hash) {
        if hash != pin.commit {
            bail!(
                "{target} comes from commit {hash}, but the manifest pins {}: the tag was moved. Check upstream, then re-pin with `cargo xtask upstream bump`",
                pin.commit
            );
        }
    }
    Ok(())
}

fn packages_of(release: &Release, component: Component, tree: &SourceTree) -> Vec<String> {
    rules::binaries(release)
        .into_iter()
        .filter(|b| b.component == component)
        .map(|b| tree.package(&b.package))
        .collect()
}

fn first_line(text: &str) -> &str {
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

/// Staging modules are published as `v0.MINOR.PATCH` for Kubernetes `v1.MINOR.PATCH`.
fn staging_version(version: KubeVersion) -> String {
    format!("v0.{}.{}", version.minor, version.patch)
}

fn build_module_go_mod(version: KubeVersion, upstream: &GoMod) -> String {
    let staging = staging_modules(upstream);
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
        let version = if staging.contains(&requirement.path.as_str()) {
            staging_version(version)
        } else {
            requirement.version.clone()
        };
        text.push_str(&format!("\t{} {version}\n", requirement.path));
    }
    text.push_str(")\n");
    let remote_replaces: Vec<&Replacement> = upstream
        .replace
        .iter()
        .flatten()
        .filter(|r| !is_local_path(&r.new.path))
        .collect();
    // Published staging modules still require each other at v0.0.0 (upstream resolves that with
    // its own local replaces, which dependencies' go.mod files cannot carry), so pin them all.
    text.push_str("\nreplace (\n");
    for module in &staging {
        text.push_str(&format!(
            "\t{module} => {module} {}\n",
            staging_version(version)
        ));
    }
    text.push_str(")\n");
    if !remote_replaces.is_empty() {
        text.push_str("\nreplace (\n");
        for r in remote_replaces {
            let old = match &r.old.version {
                Some(v) => format!("{} {v}", r.old.path),
                None => r.old.path.clone(),
            };
            let new_version = r.new.version.as_deref().unwrap_or_default();
            text.push_str(&format!("\t{old} => {} {new_version}\n", r.new.path));
        }
        text.push_str(")\n");
    }
    text
}

fn is_local_path(path: &str) -> bool {
    path.starts_with("./") || path.starts_with("../") || path.starts_with('/')
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
}
