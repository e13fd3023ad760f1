//! Compares two builds of one release: the binaries file by file, the images digest by digest
//! down to the files inside differing layers, and every artifact against the host paths that
//! must never reach one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::{Arch, KubeVersion};
use memchr::memmem;
use oci_spec::image::{ImageIndex, ImageManifest, MediaType};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::hosttools;
use crate::image::oci;
use crate::layout::Layout;

/// What the comparison found.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per artifact that is the same in both builds.
    pub same: Vec<String>,
    /// One line per binary, digest or file that differs.
    pub differences: Vec<String>,
    /// One line per artifact that holds a host path.
    pub host_paths: Vec<String>,
}

impl Report {
    pub fn is_reproducible(&self) -> bool {
        self.differences.is_empty() && self.host_paths.is_empty()
    }

    pub fn problems(&self) -> usize {
        self.differences.len() + self.host_paths.len()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "identical in both builds ({}):\n",
            self.same.len()
        ));
        for line in &self.same {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str(&format!("different ({}):\n", self.differences.len()));
        for line in &self.differences {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str(&format!(
            "host paths in artifacts ({}):\n",
            self.host_paths.len()
        ));
        for line in &self.host_paths {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }
}

/// Compares build `a` with build `b`. The host paths looked for are both build caches, the
/// shared tool cache and the workspace.
pub fn compare(
    a: &Layout,
    b: &Layout,
    version: KubeVersion,
    arches: &[Arch],
    workspace: &Utf8Path,
) -> Result<Report> {
    let needles: Vec<String> = [a.cache(), b.cache(), a.tools(), workspace]
        .iter()
        .map(|p| p.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let scanner = HostPaths::new(&needles);
    let mut report = Report::default();
    for &arch in arches {
        compare_trees(
            &a.binaries(version, arch),
            &b.binaries(version, arch),
            &format!("{version}/{}", arch.name()),
            &scanner,
            &mut report,
        )?;
    }
    compare_trees(
        &hosttools::installed_root(a),
        &hosttools::installed_root(b),
        "host-tools",
        &scanner,
        &mut report,
    )?;
    compare_layouts(&a.oci_layout(), &b.oci_layout(), &scanner, &mut report)?;
    Ok(report)
}

/// Finds host paths in bytes.
pub struct HostPaths {
    finders: Vec<(String, memmem::Finder<'static>)>,
}

impl HostPaths {
    pub fn new(paths: &[String]) -> HostPaths {
        let finders = paths
            .iter()
            .filter(|p| p.len() > 1)
            .map(|p| (p.clone(), memmem::Finder::new(p.as_bytes()).into_owned()))
            .collect();
        HostPaths { finders }
    }

    pub fn found_in(&self, bytes: &[u8]) -> Vec<&str> {
        self.finders
            .iter()
            .filter(|(_, finder)| finder.find(bytes).is_some())
            .map(|(path, _)| path.as_str())
            .collect()
    }
}

/// Which build holds something the other lacks.
fn only_in(in_first: bool) -> &'static str {
    if in_first {
        "only in the first build"
    } else {
        "only in the second build"
    }
}

/// Regular files below `root` that are artifacts: dot-files are cache bookkeeping (stamps,
/// records), not something we ship.
fn artifact_files(root: &Utf8Path) -> Result<BTreeMap<String, Utf8PathBuf>> {
    let mut files = BTreeMap::new();
    if !root.exists() {
        return Ok(files);
    }
    for path in fsutil::walk(root)? {
        let relative = path.strip_prefix(root).expect("walk stays below its root");
        if relative.components().any(|c| c.as_str().starts_with('.')) || !path.is_file() {
            continue;
        }
        files.insert(relative.to_string(), path);
    }
    Ok(files)
}

/// Compares two directories of built files, file by file.
pub fn compare_trees(
    a: &Utf8Path,
    b: &Utf8Path,
    label: &str,
    scanner: &HostPaths,
    report: &mut Report,
) -> Result<()> {
    let files_a = artifact_files(a)?;
    let files_b = artifact_files(b)?;
    for name in files_a
        .keys()
        .chain(files_b.keys())
        .collect::<BTreeSet<_>>()
    {
        let (Some(path_a), Some(path_b)) = (files_a.get(name), files_b.get(name)) else {
            let which = only_in(files_a.contains_key(name));
            report.differences.push(format!("{label}/{name}: {which}"));
            continue;
        };
        let bytes_a = std::fs::read(path_a).with_context(|| format!("cannot read {path_a}"))?;
        let bytes_b = std::fs::read(path_b).with_context(|| format!("cannot read {path_b}"))?;
        let (sha_a, sha_b) = (sha256(&bytes_a), sha256(&bytes_b));
        if sha_a == sha_b {
            report.same.push(format!("{label}/{name} sha256:{sha_a}"));
        } else {
            report.differences.push(format!(
                "{label}/{name}: sha256:{sha_a} in the first build, sha256:{sha_b} in the second"
            ));
        }
        for (build, bytes) in [("first", &bytes_a), ("second", &bytes_b)] {
            for needle in scanner.found_in(bytes) {
                report
                    .host_paths
                    .push(format!("{label}/{name} ({build} build) holds {needle}"));
            }
        }
    }
    Ok(())
}

/// Compares every image of two OCI layouts.
fn compare_layouts(
    a: &Utf8Path,
    b: &Utf8Path,
    scanner: &HostPaths,
    report: &mut Report,
) -> Result<()> {
    let named_a = oci::named_digests(a)?;
    let named_b = oci::named_digests(b)?;
    let mut layers = Layers::new();
    for name in named_a
        .keys()
        .chain(named_b.keys())
        .collect::<BTreeSet<_>>()
    {
        let (Some(digest_a), Some(digest_b)) = (named_a.get(name), named_b.get(name)) else {
            let which = only_in(named_a.contains_key(name));
            report.differences.push(format!("image {name}: {which}"));
            continue;
        };
        if digest_a == digest_b {
            report.same.push(format!("image {name} {digest_a}"));
        } else {
            report.differences.push(format!(
                "image {name}: index {digest_a} in the first build, {digest_b} in the second"
            ));
        }
        let index_a = oci::read_index(a, digest_a)?;
        let index_b = oci::read_index(b, digest_b)?;
        let platforms_a = platform_manifests(&index_a)?;
        let platforms_b = platform_manifests(&index_b)?;
        if platforms_a.keys().ne(platforms_b.keys()) {
            report.differences.push(format!(
                "image {name}: platforms {:?} in the first build, {:?} in the second",
                platforms_a.keys().collect::<Vec<_>>(),
                platforms_b.keys().collect::<Vec<_>>()
            ));
        }
        for (platform, manifest_a) in &platforms_a {
            let label = format!("image {name} {platform}");
            let manifest_a = oci::read_manifest(a, manifest_a)?;
            scan_layers(
                a,
                &manifest_a,
                &label,
                "first",
                scanner,
                &mut layers,
                report,
            )?;
            let Some(manifest_b) = platforms_b.get(platform) else {
                continue;
            };
            let manifest_b = oci::read_manifest(b, manifest_b)?;
            scan_layers(
                b,
                &manifest_b,
                &label,
                "second",
                scanner,
                &mut layers,
                report,
            )?;
            compare_manifests((a, &manifest_a), (b, &manifest_b), &label, &layers, report)?;
        }
    }
    Ok(())
}

/// Platform (`linux/arm/v7`) to manifest digest.
fn platform_manifests(index: &ImageIndex) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for entry in index.manifests() {
        let arch = oci::platform_arch(entry)?;
        out.insert(arch.platform().to_owned(), entry.digest().to_string());
    }
    Ok(out)
}

fn compare_manifests(
    (a, manifest_a): (&Utf8Path, &ImageManifest),
    (b, manifest_b): (&Utf8Path, &ImageManifest),
    label: &str,
    layers: &Layers,
    report: &mut Report,
) -> Result<()> {
    let config_a = &manifest_a.config().digest().to_string();
    let config_b = &manifest_b.config().digest().to_string();
    if config_a != config_b {
        let keys = differing_keys(
            &oci::read_blob_json(a, config_a)?,
            &oci::read_blob_json(b, config_b)?,
        );
        report.differences.push(format!(
            "{label}: config {config_a} in the first build, {config_b} in the second; differing fields: {}",
            keys.join(", ")
        ));
    }
    let list_a = layer_list(manifest_a);
    let list_b = layer_list(manifest_b);
    if list_a.len() != list_b.len() {
        report.differences.push(format!(
            "{label}: {} layers in the first build, {} in the second",
            list_a.len(),
            list_b.len()
        ));
    }
    for (position, ((digest_a, _), (digest_b, _))) in list_a.iter().zip(&list_b).enumerate() {
        if digest_a == digest_b {
            continue;
        }
        // Both manifests' layers were read by `scan_layers` before the comparison.
        let files = differing_entries(&layers[digest_a], &layers[digest_b]);
        let what = if files.is_empty() {
            "the same files, archived or compressed differently".to_owned()
        } else {
            files.join("; ")
        };
        report.differences.push(format!(
            "{label} layer {}: {digest_a} in the first build, {digest_b} in the second: {what}",
            position + 1
        ));
    }
    Ok(())
}

fn layer_list(manifest: &ImageManifest) -> Vec<(String, MediaType)> {
    manifest
        .layers()
        .iter()
        .map(|l| (l.digest().to_string(), l.media_type().clone()))
        .collect()
}

/// Top-level fields of two configs that differ, with `config.X` and `history[N]` one level down.
pub fn differing_keys(a: &Value, b: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    let empty = serde_json::Map::new();
    let object_a = a.as_object().unwrap_or(&empty);
    let object_b = b.as_object().unwrap_or(&empty);
    let all: BTreeSet<&String> = object_a.keys().chain(object_b.keys()).collect();
    for key in all {
        let (value_a, value_b) = (&a[key.as_str()], &b[key.as_str()]);
        if value_a == value_b {
            continue;
        }
        match (value_a, value_b) {
            (Value::Object(_), Value::Object(_)) => {
                for inner in differing_keys(value_a, value_b) {
                    keys.push(format!("{key}.{inner}"));
                }
            }
            (Value::Array(items_a), Value::Array(items_b)) if items_a.len() == items_b.len() => {
                for (index, (item_a, item_b)) in items_a.iter().zip(items_b).enumerate() {
                    if item_a != item_b {
                        keys.push(format!("{key}[{index}]"));
                    }
                }
            }
            _ => keys.push(key.clone()),
        }
    }
    keys
}

/// One file in a layer, as far as reproducibility goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    pub kind: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<String>,
    pub sha256: String,
}

/// Files that differ between two layers, each with the attributes that differ.
pub fn differing_entries(
    a: &BTreeMap<String, LayerEntry>,
    b: &BTreeMap<String, LayerEntry>,
) -> Vec<String> {
    let mut out = Vec::new();
    for path in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        match (a.get(path), b.get(path)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                let mut what = Vec::new();
                if x.sha256 != y.sha256 {
                    what.push("content");
                }
                if x.kind != y.kind {
                    what.push("type");
                }
                if x.mode != y.mode {
                    what.push("mode");
                }
                if (x.uid, x.gid) != (y.uid, y.gid) {
                    what.push("owner");
                }
                if x.mtime != y.mtime {
                    what.push("mtime");
                }
                if x.link != y.link {
                    what.push("link target");
                }
                out.push(format!("/{path} ({})", what.join(", ")));
            }
            (first, _) => out.push(format!("/{path} ({})", only_in(first.is_some()))),
        }
    }
    out
}

/// Each layer's entries by digest, so a layer shared by several images is read once.
type Layers = HashMap<String, BTreeMap<String, LayerEntry>>;

/// Scans each layer of a manifest for host paths, once per layer digest.
fn scan_layers(
    layout: &Utf8Path,
    manifest: &ImageManifest,
    label: &str,
    build: &str,
    scanner: &HostPaths,
    layers: &mut Layers,
    report: &mut Report,
) -> Result<()> {
    for (digest, media_type) in layer_list(manifest) {
        if layers.contains_key(&digest) {
            continue;
        }
        let (entries, hits) = read_layer(layout, &digest, &media_type, scanner)?;
        for hit in &hits {
            report
                .host_paths
                .push(format!("{label} ({build} build) layer {digest}: {hit}"));
        }
        layers.insert(digest, entries);
    }
    Ok(())
}

/// A layer's entries, and `/file holds /host/path` for each host path found in it.
fn read_layer(
    layout: &Utf8Path,
    digest: &str,
    media_type: &MediaType,
    scanner: &HostPaths,
) -> Result<(BTreeMap<String, LayerEntry>, Vec<String>)> {
    let path = oci::blob_path(layout, digest);
    let mut archive = tar::Archive::new(oci::layer_reader(&path, media_type)?);
    let mut entries = BTreeMap::new();
    let mut hits = Vec::new();
    for entry in archive
        .entries()
        .with_context(|| format!("cannot read the layer {path}"))?
    {
        let mut entry = entry.with_context(|| format!("cannot read the layer {path}"))?;
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        let header = entry.header().clone();
        let link = entry.link_name()?.map(|l| l.to_string_lossy().into_owned());
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {name} in {path}"))?;
        for needle in scanner.found_in(&bytes) {
            hits.push(format!("/{name} holds {needle}"));
        }
        entries.insert(
            name,
            LayerEntry {
                kind: format!("{:?}", header.entry_type()),
                mode: header.mode().unwrap_or_default(),
                uid: header.uid().unwrap_or_default(),
                gid: header.gid().unwrap_or_default(),
                mtime: header.mtime().unwrap_or_default(),
                link,
                sha256: sha256(&bytes),
            },
        );
    }
    Ok((entries, hits))
}

fn sha256(bytes: &[u8]) -> String {
    fsutil::hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha: &str, mtime: u64) -> LayerEntry {
        LayerEntry {
            kind: "Regular".into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime,
            link: None,
            sha256: sha.into(),
        }
    }

    #[test]
    fn names_every_differing_built_file_and_every_host_path() {
        let temp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(temp.path()).unwrap();
        let (a, b) = (root.join("first"), root.join("second"));
        for (dir, kubelet, extra) in [(&a, "same", "crictl"), (&b, "same", "kubeadm")] {
            std::fs::create_dir_all(dir.join("bin")).unwrap();
            std::fs::write(dir.join("bin/kubelet"), kubelet).unwrap();
            std::fs::write(dir.join("bin").join(extra), "x").unwrap();
            std::fs::write(dir.join(".kubelet.stamp"), dir.as_str()).unwrap();
        }
        std::fs::write(a.join("bin/kube-proxy"), "built at /home/ci/work").unwrap();
        std::fs::write(b.join("bin/kube-proxy"), "built at /home/ci/other").unwrap();
        let scanner = HostPaths::new(&["/home/ci/work".to_owned()]);
        let mut report = Report::default();
        compare_trees(&a, &b, "v1.26.0/arm64", &scanner, &mut report).unwrap();
        assert_eq!(report.same.len(), 1, "{report:?}");
        assert!(report.same[0].starts_with("v1.26.0/arm64/bin/kubelet sha256:"));
        let differences = report.differences.join("\n");
        assert!(
            differences.contains("bin/crictl: only in the first build"),
            "{differences}"
        );
        assert!(
            differences.contains("bin/kubeadm: only in the second build"),
            "{differences}"
        );
        assert!(
            differences.contains("bin/kube-proxy: sha256:"),
            "{differences}"
        );
        assert!(
            !differences.contains("stamp"),
            "bookkeeping is not compared"
        );
        assert_eq!(
            report.host_paths,
            ["v1.26.0/arm64/bin/kube-proxy (first build) holds /home/ci/work"]
        );
        assert!(!report.is_reproducible());
        assert_eq!(report.problems(), 4);
        assert!(report.render().contains("different (3):"));
    }

    #[test]
    fn identical_trees_are_reproducible() {
        let temp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(temp.path()).unwrap();
        for dir in ["first", "second"] {
            std::fs::create_dir_all(root.join(dir).join("bin")).unwrap();
            std::fs::write(root.join(dir).join("bin/kubelet"), "same").unwrap();
        }
        let mut report = Report::default();
        let scanner = HostPaths::new(&[root.to_string()]);
        compare_trees(
            &root.join("first"),
            &root.join("second"),
            "x",
            &scanner,
            &mut report,
        )
        .unwrap();
        assert!(report.is_reproducible(), "{report:?}");
    }

    #[test]
    fn config_fields_that_differ_are_named_one_level_down() {
        let a = serde_json::json!({
            "created": "2022-12-08T19:51:43Z",
            "config": {"Entrypoint": ["kubelet"], "Labels": {"a": "1"}},
            "history": [{"created": "x"}, {"created": "y"}],
            "os": "linux"
        });
        let b = serde_json::json!({
            "created": "2026-11-21T10:00:00Z",
            "config": {"Entrypoint": ["kubelet"], "Labels": {"a": "2"}},
            "history": [{"created": "x"}, {"created": "z"}],
            "os": "linux"
        });
        assert_eq!(
            differing_keys(&a, &b),
            ["config.Labels.a", "created", "history[1]"]
        );
    }

    #[test]
    fn layer_entries_that_differ_say_what_differs() {
        let a = BTreeMap::from([
            ("usr/local/bin/kubelet".to_owned(), entry("aa", 1)),
            ("usr/local/bin/kubeadm".to_owned(), entry("bb", 1)),
            ("etc/only-a".to_owned(), entry("cc", 1)),
        ]);
        let b = BTreeMap::from([
            ("usr/local/bin/kubelet".to_owned(), entry("aa", 2)),
            ("usr/local/bin/kubeadm".to_owned(), entry("bx", 1)),
        ]);
        assert_eq!(
            differing_entries(&a, &b),
            [
                "/etc/only-a (only in the first build)",
                "/usr/local/bin/kubeadm (content)",
                "/usr/local/bin/kubelet (mtime)",
            ]
        );
    }
}
