//! The artifact manifest: one JSON file per release and architecture that says what was built,
//! how big it is before and after packing, and its digest. No clock time and no host paths.

use anyhow::{Context, Result};
use camino::Utf8Path;
use kubelet_upstream::{Arch, Release};
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::layout::Layout;

pub const MANIFEST_NAME: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactManifest {
    pub version: String,
    pub arch: String,
    pub platform: String,
    pub go: String,
    pub upx: String,
    pub binaries: Vec<BinaryRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryRecord {
    pub name: String,
    pub component: String,
    /// Relative to the manifest's directory.
    pub path: String,
    pub unpacked_size: u64,
    /// Set when the shipped binary is the upx-packed one.
    pub packed_size: Option<u64>,
    pub sha256: String,
    /// Why a binary that should be packed ships unpacked.
    pub note: Option<String>,
}

impl ArtifactManifest {
    pub fn path(layout: &Layout, release: &Release, arch: Arch) -> camino::Utf8PathBuf {
        layout.binaries(release.version, arch).join(MANIFEST_NAME)
    }

    pub fn load(layout: &Layout, release: &Release, arch: Arch) -> Result<ArtifactManifest> {
        let path = Self::path(layout, release, arch);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not built for {arch} yet; run `cargo xtask build {}`",
                release.version, release.version
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{path} is damaged; run the build again"))
    }

    pub fn save(&self, layout: &Layout, release: &Release, arch: Arch) -> Result<()> {
        let mut json = serde_json::to_string_pretty(self)?;
        json.push('\n');
        fsutil::write_atomic(&Self::path(layout, release, arch), json.as_bytes())
    }

    pub fn binary(&self, name: &str) -> Option<&BinaryRecord> {
        self.binaries.iter().find(|b| b.name == name)
    }
}

pub fn file_size(path: &Utf8Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot stat {path}"))?
        .len())
}
