//! Getting the pinned upstream sources, two ways: git clones of the pinned tags, or Go module
//! proxy downloads. Both yield [`SourceTree`]s that the build reads the same way.

pub mod git;
pub mod goproxy;

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use kubelet_upstream::{Component, KubeVersion, Pin, Release};
use serde::{Deserialize, Serialize};

use crate::flags::SourceKind;
use crate::fsutil;
use crate::layout::Layout;

/// A component's source, ready for `go build`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTree {
    pub component: String,
    pub version: String,
    pub commit: String,
    /// The module and version actually built: the pin's, or a goproxy stand-in's.
    pub module: String,
    pub built_version: String,
    /// Where `go build` runs.
    pub dir: Utf8PathBuf,
    /// Prepended to a binary's package directory: `./` in a checkout, `k8s.io/kubernetes/` in
    /// the generated module that builds Kubernetes from the proxy.
    pub package_prefix: String,
    /// `-mod=vendor` where upstream vendors its dependencies, else `-mod=readonly`.
    pub mod_flag: String,
    /// Set when the proxy source built a stand-in for the pinned version.
    pub substitute: Option<String>,
}

impl SourceTree {
    pub fn built_from(&self) -> kubelet_upstream::rules::BuiltFrom<'_> {
        kubelet_upstream::rules::BuiltFrom {
            module: &self.module,
            version: &self.built_version,
            commit: &self.commit,
        }
    }

    /// The package argument for `go build`.
    pub fn package(&self, package_dir: &str) -> String {
        match package_dir {
            "." => self.package_prefix.trim_end_matches('/').to_owned(),
            dir => format!("{}{dir}", self.package_prefix),
        }
    }
}

/// All sources of one release, recorded so `build` knows what `fetch` brought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSet {
    pub version: String,
    pub source: String,
    pub trees: Vec<SourceTree>,
}

impl SourceSet {
    pub fn tree(&self, component: Component) -> Result<&SourceTree> {
        self.trees
            .iter()
            .find(|t| t.component == component.key())
            .with_context(|| {
                format!(
                    "the source record of {} lacks {component}; run `cargo xtask fetch {}` again",
                    self.version, self.version
                )
            })
    }

    pub fn save(&self, layout: &Layout, version: KubeVersion, source: SourceKind) -> Result<()> {
        let path = layout.sources_record(version, source.name());
        let json = serde_json::to_string_pretty(self)?;
        fsutil::write_atomic(&path, json.as_bytes())
    }
}

/// One way of bringing a pinned component onto this machine.
pub trait Fetcher {
    /// One line for the plan: where the component comes from.
    fn describe(&self, release: &Release, pin: &Pin) -> String;
    /// The tree `fetch` yields, without fetching: for plans.
    fn planned(&self, release: &Release, pin: &Pin) -> SourceTree;
    /// Brings the component into the cache, reusing a complete entry without network I/O.
    fn fetch(&self, release: &Release, pin: &Pin) -> Result<SourceTree>;
}

/// Marks a cache entry complete; written last, inside the staging directory.
pub const COMPLETE_MARKER: &str = ".xtask-complete";

/// Chooses the mod flag: vendored trees build offline from `vendor/`.
pub fn mod_flag_for(dir: &camino::Utf8Path) -> String {
    if dir.join("vendor/modules.txt").exists() {
        "-mod=vendor".to_owned()
    } else {
        "-mod=readonly".to_owned()
    }
}
