//! Where things live: the workspace and the cache under `target/`.
//!
//! Every cache path is derived here, so a second run finds what the first one left.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::{Arch, Component, KubeVersion, MANIFEST_FILE};

/// The cache's folder inside cargo's target directory.
const CACHE_DIR_NAME: &str = "kubelet-build";
/// Overrides the cache location (tests give each case its own).
pub const CACHE_DIR_ENV: &str = "XTASK_CACHE_DIR";
/// Overrides the manifest, to try a candidate pin set without editing the committed one.
pub const MANIFEST_ENV: &str = "XTASK_MANIFEST";
/// Overrides where toolchains, downloaded Go modules and zig's libc builds live (default: the
/// cache). Several caches can share them: none depends on what is being built.
pub const TOOL_CACHE_DIR_ENV: &str = "XTASK_TOOL_CACHE_DIR";
/// The host tools' folder, in the tool cache or a build cache.
const HOST_TOOLS_DIR_NAME: &str = "host-tools";

#[derive(Debug, Clone)]
pub struct Layout {
    root: Utf8PathBuf,
    cache: Utf8PathBuf,
    /// Toolchains, the Go module download cache and zig's cache: verified downloads and
    /// toolchain-level builds that a fresh build cache may reuse.
    tools: Utf8PathBuf,
    /// The host tools' builds and installed trees: in the tool cache, since they depend only on
    /// their pins and the compiler, unless a build must make its own (`verify-reproducible`).
    host_tools: Utf8PathBuf,
}

impl Layout {
    /// The workspace this xtask was built from, with its cache under cargo's target directory.
    pub fn discover() -> Result<Layout> {
        let root = workspace_root();
        let cache = match path_from_env(CACHE_DIR_ENV) {
            Some(dir) => dir,
            None => target_dir(&root)?.join(CACHE_DIR_NAME),
        };
        let tools = path_from_env(TOOL_CACHE_DIR_ENV).unwrap_or_else(|| cache.clone());
        Ok(Layout::with_tools(root, cache, tools))
    }

    pub fn new(root: Utf8PathBuf, cache: Utf8PathBuf) -> Layout {
        let tools = cache.clone();
        Layout::with_tools(root, cache, tools)
    }

    fn with_tools(root: Utf8PathBuf, cache: Utf8PathBuf, tools: Utf8PathBuf) -> Layout {
        let host_tools = tools.join(HOST_TOOLS_DIR_NAME);
        Layout {
            root,
            cache,
            tools,
            host_tools,
        }
    }

    /// A layout with its own build cache that keeps this one's tool cache.
    pub fn with_cache(&self, cache: Utf8PathBuf) -> Layout {
        Layout::with_tools(self.root.clone(), cache, self.tools.clone())
    }

    /// The same layout, with host tools built inside its own build cache rather than taken from
    /// the shared tool cache: for builds that must show they make the same tools.
    pub fn with_private_host_tools(mut self) -> Layout {
        self.host_tools = self.cache.join(HOST_TOOLS_DIR_NAME);
        self
    }

    /// Where host tools are built and installed, one tree per tool and architecture.
    pub fn host_tools(&self) -> &Utf8Path {
        &self.host_tools
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    pub fn cache(&self) -> &Utf8Path {
        &self.cache
    }

    pub fn tools(&self) -> &Utf8Path {
        &self.tools
    }

    pub fn manifest(&self) -> Utf8PathBuf {
        path_from_env(MANIFEST_ENV).unwrap_or_else(|| self.root.join(MANIFEST_FILE))
    }

    pub fn dockerfiles(&self) -> Utf8PathBuf {
        self.root.join("dockerfiles")
    }

    /// A git checkout of one component at one tag.
    pub fn git_checkout(&self, component: Component, tag: &str) -> Utf8PathBuf {
        self.cache
            .join("sources/git")
            .join(component.key())
            .join(tag)
    }

    /// An unpacked module-proxy download of one component.
    pub fn goproxy_tree(&self, component: Component, module_version: &str) -> Utf8PathBuf {
        self.cache
            .join("sources/goproxy")
            .join(component.key())
            .join(module_version)
    }

    /// The generated module that builds `k8s.io/kubernetes/cmd/...` outside its repository.
    pub fn goproxy_kubernetes_module(&self, version: KubeVersion) -> Utf8PathBuf {
        self.cache
            .join("sources/goproxy/kubernetes-build")
            .join(version.to_string())
    }

    /// The source set of a release, as written by `fetch` and read by `build`.
    pub fn sources_record(&self, version: KubeVersion, source: &str) -> Utf8PathBuf {
        self.cache
            .join("sources")
            .join(format!("{version}-{source}.json"))
    }

    pub fn gomodcache(&self) -> Utf8PathBuf {
        self.tools.join("go/mod")
    }

    pub fn gocache(&self) -> Utf8PathBuf {
        self.cache.join("go/build")
    }

    pub fn zig_cache(&self) -> Utf8PathBuf {
        self.tools.join("zig/cache")
    }

    pub fn toolchains(&self) -> Utf8PathBuf {
        self.tools.join("toolchains")
    }

    /// The per-target compiler wrapper that Go's cgo calls as CC.
    pub fn zig_cc_wrapper(&self, arch: Arch) -> Utf8PathBuf {
        self.toolchains()
            .join("zig-cc")
            .join(format!("{}-cc", arch.musl_target()))
    }

    /// Built binaries of one release and architecture, before and after packing.
    pub fn binaries(&self, version: KubeVersion, arch: Arch) -> Utf8PathBuf {
        self.cache
            .join("out")
            .join(version.to_string())
            .join(arch.name())
    }

    pub fn oci_layout(&self) -> Utf8PathBuf {
        self.cache.join("oci")
    }

    pub fn locks(&self) -> Utf8PathBuf {
        self.cache.join("locks")
    }

    /// The two throw-away caches `verify-reproducible` builds a release in.
    pub fn reproducible(&self, version: KubeVersion) -> Utf8PathBuf {
        self.cache.join("reproducible").join(version.to_string())
    }
}

/// A path an environment variable overrides; unset and empty both mean "no override".
fn path_from_env(name: &str) -> Option<Utf8PathBuf> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .map(Utf8PathBuf::from)
}

fn workspace_root() -> Utf8PathBuf {
    let xtask_dir = Utf8Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

/// Cargo's target directory, honouring CARGO_TARGET_DIR and `build.target-dir`.
fn target_dir(root: &Utf8Path) -> Result<Utf8PathBuf> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .no_deps()
        .exec()
        .context("cannot ask cargo for the target directory (is `cargo` on PATH?)")?;
    Ok(metadata.target_directory)
}
