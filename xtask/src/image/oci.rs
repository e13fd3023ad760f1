//! Reading an OCI image layout: the named index, its platform manifests, configs and layers.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::Arch;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use serde::de::DeserializeOwned;

/// The annotation an OCI layout names its images by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// How deep nested indexes may go before a layout counts as malformed.
const MAX_INDEX_DEPTH: usize = 3;

/// The layout's index.json.
fn top_index(layout: &Utf8Path) -> Result<ImageIndex> {
    let path = layout.join("index.json");
    let bytes = std::fs::read(&path)
        .with_context(|| format!("no OCI layout at {layout}; build the images first"))?;
    parse_json(&bytes, &path)
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8], path: &Utf8Path) -> Result<T> {
    serde_json::from_slice(bytes)
        .with_context(|| format!("{path} is not a valid OCI document; build the images again"))
}

/// Every named image in the layout, by name, with the digest of its index.
pub fn named_digests(layout: &Utf8Path) -> Result<BTreeMap<String, String>> {
    let top = top_index(layout)?;
    let mut named = BTreeMap::new();
    for entry in top.manifests() {
        if let Some(name) = entry.annotations().as_ref().and_then(|a| a.get(REF_NAME)) {
            named.insert(name.clone(), entry.digest().to_string());
        }
    }
    Ok(named)
}

/// The multi-arch index named `name`.
pub fn find_index(layout: &Utf8Path, name: &str) -> Result<ImageIndex> {
    let digest = named_digests(layout)?
        .remove(name)
        .with_context(|| format!("{layout} has no image {name}; build it first"))?;
    read_index(layout, &digest)
}

/// The architecture a platform entry of an index stands for.
pub fn platform_arch(entry: &Descriptor) -> Result<Arch> {
    let platform = entry
        .platform()
        .as_ref()
        .with_context(|| format!("index entry {} names no platform", entry.digest()))?;
    let architecture = platform.architecture().to_string();
    let variant = platform.variant().as_deref();
    Arch::ALL
        .into_iter()
        .find(|a| a.oci_architecture() == architecture && a.oci_variant() == variant)
        .with_context(|| {
            format!(
                "unexpected platform {}/{architecture}{}",
                platform.os(),
                variant.map(|v| format!("/{v}")).unwrap_or_default()
            )
        })
}

pub fn blob_path(layout: &Utf8Path, digest: &str) -> Utf8PathBuf {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    layout.join("blobs").join(algorithm).join(hex)
}

fn read_blob<T: DeserializeOwned>(layout: &Utf8Path, digest: &str) -> Result<T> {
    let path = blob_path(layout, digest);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {path}"))?;
    parse_json(&bytes, &path)
}

pub fn read_index(layout: &Utf8Path, digest: &str) -> Result<ImageIndex> {
    read_blob(layout, digest)
}

pub fn read_manifest(layout: &Utf8Path, digest: &str) -> Result<ImageManifest> {
    read_blob(layout, digest)
}

/// Any JSON blob, such as an image config, for comparisons field by field.
pub fn read_blob_json(layout: &Utf8Path, digest: &str) -> Result<serde_json::Value> {
    read_blob(layout, digest)
}

/// A layer's tar stream, decompressed (gzip; zstd is not produced by our builders).
pub fn layer_reader(path: &Utf8Path, media_type: &MediaType) -> Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    let media_type = media_type.to_string();
    if media_type.ends_with("gzip") {
        Ok(Box::new(flate2::read::GzDecoder::new(file)))
    } else if media_type.ends_with("zstd") {
        bail!("{path}: zstd layers are not supported");
    } else {
        Ok(Box::new(file))
    }
}

/// The manifest of one platform of the layout's only image index (what a builder writes).
fn platform_manifest(layout: &Utf8Path, arch: Arch) -> Result<ImageManifest> {
    let mut index = top_index(layout)?;
    // Descend from index.json through nested indexes to the platform's entry.
    for _ in 0..MAX_INDEX_DEPTH {
        let entries = index.manifests();
        if let Some(entry) = entries
            .iter()
            .find(|e| e.platform().is_some() && platform_arch(e).ok() == Some(arch))
        {
            return read_manifest(layout, entry.digest().as_ref());
        }
        let [only] = entries.as_slice() else {
            bail!("{layout} holds no image for {arch}");
        };
        index = read_index(layout, only.digest().as_ref())?;
    }
    bail!("{layout} holds no image for {arch}")
}

/// Unpacks one platform's layers into `root`, applying whiteouts as a runtime would.
pub fn unpack_platform(layout: &Utf8Path, arch: Arch, root: &Utf8Path) -> Result<()> {
    let manifest = platform_manifest(layout, arch)?;
    for layer in manifest.layers() {
        let path = blob_path(layout, layer.digest().as_ref());
        let mut archive = tar::Archive::new(layer_reader(&path, layer.media_type())?);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        for entry in archive
            .entries()
            .with_context(|| format!("cannot read {path}"))?
        {
            let mut entry = entry.with_context(|| format!("cannot read {path}"))?;
            let name = entry.path()?.into_owned();
            let file_name = name
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(hidden) = file_name.strip_prefix(WHITEOUT) {
                let dir = root
                    .as_std_path()
                    .join(name.parent().unwrap_or(Path::new("")));
                if hidden == OPAQUE {
                    for child in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        remove_any(&child.path())?;
                    }
                } else {
                    remove_any(&dir.join(hidden))?;
                }
                continue;
            }
            entry
                .unpack_in(root)
                .with_context(|| format!("cannot unpack {} from {path}", name.display()))?;
        }
    }
    Ok(())
}

/// A whiteout hides the file of the same name in lower layers; an opaque one, a directory's
/// whole contents.
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..opq";

fn remove_any(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path)
            .with_context(|| format!("cannot remove {}", path.display())),
        Ok(_) => {
            std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))
        }
        Err(_) => Ok(()),
    }
}
