//! A Go module proxy in a directory, for `GOPROXY=file:///...`: each module version as
//! `MODULE/@v/list`, `VERSION.info`, `VERSION.mod` and `VERSION.zip`, with module paths
//! case-encoded, as proxy.golang.org lays them out. Modules are published from the tags of
//! git repositories, so the goproxy source runs on the same fixtures as the git source, with
//! no network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use git2::Repository;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::fixtures::{self, Repos};

/// The staging module the Kubernetes fixture carries, published as `v0.MINOR.PATCH`.
pub const STAGING_MODULE: &str = "k8s.io/component-base";
pub const STAGING_VERSION: &str = "v0.26.0";
/// flannel's stand-in, as the committed manifest names it: containernetworking/plugins v0.9.1,
/// the last release that carried the flannel plugin, in this directory.
pub const FLANNEL_STAND_IN: &str = "github.com/containernetworking/plugins";
pub const FLANNEL_STAND_IN_VERSION: &str = "v0.9.1";
pub const FLANNEL_STAND_IN_SUBDIR: &str = "plugins/meta/flannel";

/// A module's files by their path inside the module, as its zip holds them.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Where a version came from, for the `Origin` of its `.info` (the goproxy source checks the
/// commit against the pin).
pub struct Origin {
    pub url: String,
    pub tag: String,
    pub commit: String,
}

pub struct GoProxy {
    pub root: PathBuf,
}

impl GoProxy {
    pub fn new(root: &Path) -> GoProxy {
        std::fs::create_dir_all(root).unwrap();
        GoProxy {
            root: root.to_path_buf(),
        }
    }

    /// The environment a go command needs to use only this proxy: no checksum database (it
    /// knows none of these modules), no toolchain download, no VCS fallback.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GOPROXY", format!("file://{}", self.root.display())),
            ("GOSUMDB", "off".to_owned()),
            ("GONOSUMDB", "*".to_owned()),
            ("GOFLAGS", "-mod=mod".to_owned()),
            ("GOTOOLCHAIN", "local".to_owned()),
        ]
    }

    fn version_dir(&self, module: &str) -> PathBuf {
        self.root.join(case_encode(module)).join("@v")
    }

    pub fn zip_path(&self, module: &str, version: &str) -> PathBuf {
        self.version_dir(module)
            .join(format!("{}.zip", case_encode(version)))
    }

    /// Publishes `module@version` with `files`; returns its `h1:` sum, as go.sum spells it.
    pub fn publish(
        &self,
        module: &str,
        version: &str,
        files: &Files,
        time: i64,
        origin: Option<&Origin>,
    ) -> String {
        let dir = self.version_dir(module);
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list");
        let mut versions: Vec<String> = std::fs::read_to_string(&list)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if !versions.iter().any(|v| v == version) {
            versions.push(version.to_owned());
        }
        std::fs::write(&list, versions.join("\n") + "\n").unwrap();
        let encoded = case_encode(version);
        std::fs::write(
            dir.join(format!("{encoded}.info")),
            info_json(version, time, origin),
        )
        .unwrap();
        // A module without a go.mod gets the one the go command would synthesise.
        let go_mod = files
            .get("go.mod")
            .cloned()
            .unwrap_or_else(|| format!("module {module}\n").into_bytes());
        std::fs::write(dir.join(format!("{encoded}.mod")), go_mod).unwrap();
        let entries = zip_entries(module, version, files);
        std::fs::write(dir.join(format!("{encoded}.zip")), stored_zip(&entries)).unwrap();
        module_sum(&entries)
    }

    /// Publishes the module rooted at `subdir` ("" for the root) of `repo` at `tag`, as
    /// `module@version`, with the tag's commit as its origin; returns its sum.
    pub fn publish_tag(
        &self,
        repo: &Path,
        tag: &str,
        subdir: &str,
        module: &str,
        version: &str,
    ) -> String {
        let (files, commit, time) = files_at_tag(repo, tag, subdir);
        let origin = Origin {
            url: repo.display().to_string(),
            tag: tag.to_owned(),
            commit,
        };
        self.publish(module, version, &files, time, Some(&origin))
    }
}

/// `module@version`'s sum, as the manifest's `module-sum` pins it.
pub type Sums = BTreeMap<String, String>;

/// Serves everything a fetch of the fixture release through the goproxy source downloads:
/// Kubernetes and its staging module, cri-tools, the CNI plugins, and flannel's stand-in (the
/// fixture's flannel plugin in the CNI plugins' tree, as v0.9.1 carried it). Returns the sums.
pub fn publish_fixtures(proxy: &GoProxy, repos: &Repos) -> Sums {
    let mut sums = Sums::new();
    let mut publish = |repo: &str, tag: &str, subdir: &str, module: &str, version: &str| {
        let sum = proxy.publish_tag(Path::new(repo), tag, subdir, module, version);
        sums.insert(format!("{module}@{version}"), sum);
    };
    publish(
        &repos.kubernetes.0,
        fixtures::KUBERNETES_TAG,
        "",
        "k8s.io/kubernetes",
        fixtures::KUBERNETES_TAG,
    );
    publish(
        &repos.kubernetes.0,
        fixtures::KUBERNETES_TAG,
        &format!("staging/src/{STAGING_MODULE}"),
        STAGING_MODULE,
        STAGING_VERSION,
    );
    publish(
        &repos.cri_tools.0,
        fixtures::CRI_TOOLS_TAG,
        "",
        "github.com/kubernetes-sigs/cri-tools",
        fixtures::CRI_TOOLS_TAG,
    );
    publish(
        &repos.cni_plugins.0,
        fixtures::CNI_TAG,
        "",
        "github.com/containernetworking/plugins",
        fixtures::CNI_TAG,
    );
    let (mut files, _, time) = files_at_tag(Path::new(&repos.cni_plugins.0), fixtures::CNI_TAG, "");
    let (flannel, _, _) = files_at_tag(Path::new(&repos.flannel.0), fixtures::FLANNEL_TAG, "");
    for (path, contents) in flannel.into_iter().filter(|(p, _)| p != "go.mod") {
        files.insert(format!("{FLANNEL_STAND_IN_SUBDIR}/{path}"), contents);
    }
    let sum = proxy.publish(
        FLANNEL_STAND_IN,
        FLANNEL_STAND_IN_VERSION,
        &files,
        time,
        None,
    );
    sums.insert(
        format!("{FLANNEL_STAND_IN}@{FLANNEL_STAND_IN_VERSION}"),
        sum,
    );
    sums
}

/// The fixtures' manifest with the module sums of what the proxy serves, and flannel's
/// stand-in as the committed manifest pins it.
pub fn fixture_manifest(repos: &Repos, host_go: &str, sums: &Sums) -> String {
    let mut text = fixtures::manifest(repos, host_go);
    let sum_of = |module: &str, version: &str| sums[&format!("{module}@{version}")].clone();
    for ((_, commit), sum) in [
        (
            &repos.kubernetes,
            sum_of("k8s.io/kubernetes", fixtures::KUBERNETES_TAG),
        ),
        (
            &repos.cri_tools,
            sum_of(
                "github.com/kubernetes-sigs/cri-tools",
                fixtures::CRI_TOOLS_TAG,
            ),
        ),
        (
            &repos.cni_plugins,
            sum_of("github.com/containernetworking/plugins", fixtures::CNI_TAG),
        ),
    ] {
        let line = format!("commit = \"{commit}\"\n");
        assert!(text.contains(&line), "the fixture manifest pins {commit}");
        text = text.replace(&line, &format!("{line}module-sum = \"{sum}\"\n"));
    }
    text.push_str(&format!(
        "\n[release.flannel-plugin.goproxy]\nmodule = \"{FLANNEL_STAND_IN}\"\nversion = \"{FLANNEL_STAND_IN_VERSION}\"\nsubdir = \"{FLANNEL_STAND_IN_SUBDIR}\"\nmodule-sum = \"{}\"\nreason = \"the fixture proxy serves flannel as containernetworking/plugins carried it\"\n",
        sum_of(FLANNEL_STAND_IN, FLANNEL_STAND_IN_VERSION)
    ));
    text
}

/// The files of the module rooted at `subdir` of the tree `tag` points to, as the go command
/// zips a module: without nested modules (directories with a go.mod of their own) and
/// without vendor/. Also returns the tag's commit and its time.
pub fn files_at_tag(repo: &Path, tag: &str, subdir: &str) -> (Files, String, i64) {
    let repo = Repository::open(repo).unwrap();
    let commit = repo
        .revparse_single(&format!("refs/tags/{tag}"))
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut all = Files::new();
    commit
        .tree()
        .unwrap()
        .walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob) {
                let blob = repo.find_blob(entry.id()).unwrap();
                let name = format!("{dir}{}", entry.name().unwrap());
                all.insert(name, blob.content().to_vec());
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
    let prefix = if subdir.is_empty() {
        String::new()
    } else {
        format!("{subdir}/")
    };
    let in_module: Files = all
        .into_iter()
        .filter_map(|(path, data)| Some((path.strip_prefix(&prefix)?.to_owned(), data)))
        .collect();
    let nested: Vec<String> = in_module
        .keys()
        .filter_map(|p| p.strip_suffix("/go.mod").map(|dir| format!("{dir}/")))
        .collect();
    let files = in_module
        .into_iter()
        .filter(|(path, _)| !path.starts_with("vendor/") && !path.contains("/vendor/"))
        .filter(|(path, _)| !nested.iter().any(|dir| path.starts_with(dir)))
        .collect();
    (files, commit.id().to_string(), commit.time().seconds())
}

/// The go command's case encoding of module paths and versions in a proxy: every capital
/// letter as `!` and its lower case, so paths stay distinct on case-insensitive file systems.
pub fn case_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn info_json(version: &str, time: i64, origin: Option<&Origin>) -> String {
    let time = OffsetDateTime::from_unix_timestamp(time)
        .unwrap()
        .format(&Rfc3339)
        .unwrap();
    let mut info = serde_json::json!({ "Version": version, "Time": time });
    if let Some(origin) = origin {
        info["Origin"] = serde_json::json!({
            "VCS": "git",
            "URL": origin.url,
            "Ref": format!("refs/tags/{}", origin.tag),
            "Hash": origin.commit,
        });
    }
    info.to_string()
}

/// The zip's entries: every file under the `module@version/` prefix the go command requires.
fn zip_entries(module: &str, version: &str, files: &Files) -> Files {
    files
        .iter()
        .map(|(path, data)| (format!("{module}@{version}/{path}"), data.clone()))
        .collect()
}

/// The go command's `h1:` hash of a module zip (golang.org/x/mod/sumdb/dirhash.Hash1): SHA-256
/// over one `HEX  NAME` line per file in name order, in base64.
pub fn module_sum(entries: &Files) -> String {
    let mut summary = String::new();
    for (name, data) in entries {
        summary.push_str(&format!("{:x}  {name}\n", Sha256::digest(data)));
    }
    let digest = Sha256::digest(summary.as_bytes());
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// A zip archive of stored (uncompressed) entries: the go command reads them like any other,
/// and the format fits on a page, so the tests need no zip crate.
fn stored_zip(entries: &Files) -> Vec<u8> {
    const LOCAL_HEADER: u32 = 0x0403_4b50;
    const CENTRAL_HEADER: u32 = 0x0201_4b50;
    const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
    /// Version 2.0: the oldest that every reader understands.
    const VERSION: u16 = 20;
    /// 1980-01-01, the earliest DOS date: entries carry no meaningful time.
    const DOS_DATE: u16 = (1 << 5) | 1;

    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = u32::try_from(out.len()).unwrap();
        let size = u32::try_from(data.len()).unwrap();
        let name_len = u16::try_from(name.len()).unwrap();
        // Local header: signature, version, flags, method (stored), time, date, CRC, sizes,
        // name length, extra length.
        put32(&mut out, LOCAL_HEADER);
        for field in [VERSION, 0, 0, 0, DOS_DATE] {
            put16(&mut out, field);
        }
        for field in [crc.sum(), size, size] {
            put32(&mut out, field);
        }
        for field in [name_len, 0] {
            put16(&mut out, field);
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory entry: the same, plus where the local header is.
        put32(&mut central, CENTRAL_HEADER);
        for field in [VERSION, VERSION, 0, 0, 0, DOS_DATE] {
            put16(&mut central, field);
        }
        for field in [crc.sum(), size, size] {
            put32(&mut central, field);
        }
        // Name, extra and comment lengths, disk, internal attributes.
        for field in [name_len, 0, 0, 0, 0] {
            put16(&mut central, field);
        }
        // External attributes, local header offset.
        for field in [0, offset] {
            put32(&mut central, field);
        }
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = u32::try_from(out.len()).unwrap();
    let central_size = u32::try_from(central.len()).unwrap();
    let count = u16::try_from(entries.len()).unwrap();
    out.extend_from_slice(&central);
    put32(&mut out, END_OF_CENTRAL_DIRECTORY);
    for field in [0, 0, count, count] {
        put16(&mut out, field);
    }
    for field in [central_size, central_offset] {
        put32(&mut out, field);
    }
    put16(&mut out, 0);
    out
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}
