//! Reading an OCI image layout: the named index, its platform manifests, configs and layers.

use std::io::Read;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::Arch;
use serde_json::Value;

/// The annotation an OCI layout names its images by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The top-level entry named `name` in the layout's index.json.
pub fn index_entry(layout: &Utf8Path, name: &str) -> Result<Value> {
    let top: Value = serde_json::from_slice(
        &std::fs::read(layout.join("index.json"))
            .with_context(|| format!("no OCI layout at {layout}; build the images first"))?,
    )?;
    top["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"][REF_NAME] == name)
        .cloned()
        .with_context(|| format!("{layout} has no image {name}; build it first"))
}

/// Every name the layout's index.json holds, sorted.
pub fn ref_names(layout: &Utf8Path) -> Result<Vec<String>> {
    let path = layout.join("index.json");
    let top: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("cannot read {path}"))?,
    )
    .with_context(|| format!("{path} is not JSON"))?;
    let mut names: Vec<String> = top["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["annotations"][REF_NAME].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// The multi-arch index named `name`.
pub fn find_index(layout: &Utf8Path, name: &str) -> Result<Value> {
    let entry = index_entry(layout, name)?;
    read_blob_json(
        layout,
        entry["digest"].as_str().context("entry without digest")?,
    )
}

pub fn platform_arch(entry: &Value) -> Result<Arch> {
    let platform = &entry["platform"];
    let arch = platform["architecture"].as_str().unwrap_or_default();
    let variant = platform["variant"].as_str();
    Arch::ALL
        .into_iter()
        .find(|a| a.oci_architecture() == arch && a.oci_variant() == variant)
        .with_context(|| format!("unexpected platform {platform}"))
}

pub fn blob_path(layout: &Utf8Path, digest: &str) -> Utf8PathBuf {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    layout.join("blobs").join(algorithm).join(hex)
}

pub fn read_blob_json(layout: &Utf8Path, digest: &str) -> Result<Value> {
    let path = blob_path(layout, digest);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {path}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{path} is not JSON"))
}

/// A layer's tar stream, decompressed (gzip; zstd is not produced by our builders).
pub fn layer_reader(path: &Utf8Path, media_type: &str) -> Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    if media_type.ends_with("gzip") {
        Ok(Box::new(flate2::read::GzDecoder::new(file)))
    } else if media_type.ends_with("zstd") {
        bail!("{path}: zstd layers are not supported");
    } else {
        Ok(Box::new(file))
    }
}
