//! `cargo xtask upstream`: list the pins, check them against the newest upstream patches, and
//! bump the manifest. Upstream tags are read with git2 (ls-remote), so a mirror or a local
//! repository works as well as GitHub.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use git2::{Direction, Oid, Repository};
use kubelet_upstream::{Component, KubeVersion, Manifest, Release};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};
use xshell::Shell;

use crate::context::Context as Cx;
use crate::flags::{self, UpstreamAction};
use crate::fsutil;

/// How many of the newest Kubernetes minors are kept pinned at their newest patch.
pub const TRACKED_MINORS: usize = 3;
/// Files that name the Go release upstream built a tag with, newest convention first.
const GO_VERSION_FILES: [&str; 2] = [".go-version", "build/build-image/cross/VERSION"];

impl flags::Upstream {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let cx = Cx::load()?;
        let remotes = cx.remotes(&self.remotes);
        match self.action.unwrap_or(UpstreamAction::List) {
            UpstreamAction::List => {
                print!("{}", list(&cx.manifest));
                Ok(())
            }
            UpstreamAction::Check => {
                let missing = missing_releases(&cx.manifest, &remotes[&Component::Kubernetes])?;
                if missing.is_empty() {
                    println!("up to date");
                    return Ok(());
                }
                for (version, commit) in &missing {
                    println!("new upstream release {version} ({commit}) is not pinned");
                }
                bail!(
                    "{} upstream release(s) are not pinned; run `cargo xtask upstream bump`",
                    missing.len()
                )
            }
            UpstreamAction::Bump => {
                let changes = bump(&cx.layout.manifest(), &cx.manifest, &remotes)?;
                if changes.is_empty() {
                    println!("up to date");
                }
                for change in changes {
                    println!("{change}");
                }
                Ok(())
            }
        }
    }
}

/// A remote's tags that look like releases (`vX.Y.Z`), with the commits they peel to.
pub fn release_tags(url: &str) -> Result<BTreeMap<KubeVersion, Oid>> {
    let mut remote =
        git2::Remote::create_detached(url).with_context(|| format!("invalid remote {url}"))?;
    remote
        .connect(Direction::Fetch)
        .map_err(|err| anyhow::anyhow!("cannot list the tags of {url}: {}", err.message()))?;
    let mut tags = BTreeMap::new();
    let mut peeled = BTreeMap::new();
    for head in remote.list()? {
        let Some(name) = head.name().strip_prefix("refs/tags/") else {
            continue;
        };
        match name.strip_suffix("^{}") {
            Some(tag) => {
                if let Ok(version) = tag.parse::<KubeVersion>() {
                    peeled.insert(version, head.oid());
                }
            }
            None => {
                if let Ok(version) = name.parse::<KubeVersion>() {
                    tags.insert(version, head.oid());
                }
            }
        }
    }
    // Annotated tags list the tag object and, with ^{}, the commit it points to.
    for (version, commit) in peeled {
        tags.insert(version, commit);
    }
    Ok(tags)
}

/// The newest patch of each of the `TRACKED_MINORS` newest minors.
pub fn newest_patches(tags: &BTreeMap<KubeVersion, Oid>) -> Vec<(KubeVersion, Oid)> {
    let mut by_minor: BTreeMap<(u32, u32), (KubeVersion, Oid)> = BTreeMap::new();
    for (&version, &oid) in tags {
        by_minor.insert(version.minor_line(), (version, oid));
    }
    let mut newest: Vec<(KubeVersion, Oid)> =
        by_minor.into_values().rev().take(TRACKED_MINORS).collect();
    newest.reverse();
    newest
}

fn missing_releases(manifest: &Manifest, kubernetes_url: &str) -> Result<Vec<(KubeVersion, Oid)>> {
    let tags = release_tags(kubernetes_url)?;
    Ok(newest_patches(&tags)
        .into_iter()
        .filter(|(version, _)| manifest.release(*version).is_none())
        .collect())
}

/// Writes a pin for every missing newest patch; returns one line per change.
pub fn bump(
    path: &Utf8Path,
    manifest: &Manifest,
    remotes: &BTreeMap<Component, String>,
) -> Result<Vec<String>> {
    let missing = missing_releases(manifest, &remotes[&Component::Kubernetes])?;
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let template = manifest
        .releases()
        .last()
        .context("the manifest pins no release to copy the base from")?;
    let cri_tags = release_tags(&remotes[&Component::CriTools])?;
    let cni_tags = release_tags(&remotes[&Component::CniPlugins])?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let mut document: DocumentMut = text
        .parse()
        .with_context(|| format!("{path} is not valid TOML"))?;
    let mut changes = Vec::new();
    for (version, commit) in missing {
        let source = inspect_commit(&remotes[&Component::Kubernetes], version, commit)?;
        let cri = newest_in_minor(&cri_tags, version).with_context(|| {
            format!(
                "cri-tools has no v{}.{}.x tag yet; bump again when it does",
                version.major, version.minor
            )
        })?;
        let cni = cni_tags
            .iter()
            .next_back()
            .context("the CNI plugins remote has no release tag")?;
        let table = release_table(version, commit, &source, template, cri, (*cni.0, *cni.1));
        releases_array(&mut document)?.push(table);
        changes.push(format!(
            "pinned {version} = {commit} (go{}, cri-tools {}, CNI plugins {})",
            source.go, cri.0, cni.0
        ));
    }
    let updated = document.to_string();
    // Validate before writing: a bump never leaves a manifest the next run cannot read.
    Manifest::parse(&updated, path.as_str())
        .map_err(|err| anyhow::anyhow!("the bumped manifest is invalid: {err}"))?;
    fsutil::write_atomic(path, updated.as_bytes())?;
    Ok(changes)
}

fn releases_array(document: &mut DocumentMut) -> Result<&mut ArrayOfTables> {
    document
        .entry("release")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .context("`release` is not an array of tables")
}

fn newest_in_minor(
    tags: &BTreeMap<KubeVersion, Oid>,
    version: KubeVersion,
) -> Option<(KubeVersion, Oid)> {
    tags.iter()
        .rev()
        .find(|(v, _)| v.minor_line() == version.minor_line())
        .map(|(v, o)| (*v, *o))
}

/// What a tag's tree says about its build: the commit date and upstream's Go.
struct SourceFacts {
    commit_date: String,
    go: String,
}

fn inspect_commit(url: &str, version: KubeVersion, commit: Oid) -> Result<SourceFacts> {
    let temp = tempfile::tempdir()?;
    let repo = Repository::init_bare(temp.path())?;
    let refspec = format!("+refs/tags/{version}:refs/tags/{version}");
    let mut remote = repo.remote_anonymous(url)?;
    let fetch = |remote: &mut git2::Remote<'_>, depth: Option<i32>| {
        let mut options = git2::FetchOptions::new();
        options.download_tags(git2::AutotagOption::None);
        if let Some(depth) = depth {
            options.depth(depth);
        }
        remote.fetch(&[&refspec], Some(&mut options), None)
    };
    // Local remotes cannot serve shallow fetches; then fetch what the tag reaches.
    if fetch(&mut remote, Some(1)).is_err() {
        fetch(&mut remote, None).map_err(|err| {
            anyhow::anyhow!("cannot fetch {version} from {url}: {}", err.message())
        })?;
    }
    let found = repo
        .find_commit(commit)
        .with_context(|| format!("{url} tag {version} did not bring commit {commit}"))?;
    let when = OffsetDateTime::from_unix_timestamp(found.committer().when().seconds())?;
    let tree = found.tree()?;
    let go = GO_VERSION_FILES
        .iter()
        .find_map(|file| {
            let entry = tree.get_path(std::path::Path::new(file)).ok()?;
            let blob = repo.find_blob(entry.id()).ok()?;
            go_version_from(file, std::str::from_utf8(blob.content()).ok()?)
        })
        .with_context(|| {
            format!(
                "{version} names no Go version in {}",
                GO_VERSION_FILES.join(" or ")
            )
        })?;
    Ok(SourceFacts {
        commit_date: when.format(&Rfc3339)?,
        go,
    })
}

/// `1.26.5` from `.go-version`, or from a cross image tag such as `v1.26.0-go1.19.4-bullseye.0`.
pub fn go_version_from(file: &str, text: &str) -> Option<String> {
    let text = text.trim();
    if file.ends_with(".go-version") {
        return Some(text.to_owned());
    }
    let start = text.find("-go")? + 3;
    let rest = &text[start..];
    let end = rest.find('-').unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

fn release_table(
    version: KubeVersion,
    commit: Oid,
    source: &SourceFacts,
    template: &Release,
    cri: (KubeVersion, Oid),
    cni: (KubeVersion, Oid),
) -> Table {
    let mut table = Table::new();
    table["version"] = value(version.to_string());
    table["commit"] = value(commit.to_string());
    table["commit-date"] = value(source.commit_date.clone());
    table["go"] = value(source.go.clone());
    table["alpine"] = value(template.alpine.clone());
    table["alpine-digest"] = value(template.alpine_digest.clone());
    let mut cri_table = Table::new();
    cri_table["module"] = value(template.cri_tools.module.clone());
    cri_table["version"] = value(cri.0.to_string());
    cri_table["commit"] = value(cri.1.to_string());
    table["cri-tools"] = Item::Table(cri_table);
    let mut cni_table = Table::new();
    cni_table["version"] = value(cni.0.to_string());
    cni_table["commit"] = value(cni.1.to_string());
    table["cni-plugins"] = Item::Table(cni_table);
    let mut flannel = Table::new();
    flannel["version"] = value(template.flannel_plugin.version.clone());
    flannel["commit"] = value(template.flannel_plugin.commit.clone());
    table["flannel-plugin"] = Item::Table(flannel);
    table
}

/// The README's table of pinned releases, generated from the manifest (a tidy test keeps the
/// committed README in step).
pub fn pins_markdown(manifest: &Manifest) -> String {
    let mut out = String::from(
        "| Kubernetes | commit | Go | cri-tools | CNI plugins | flannel plugin | Alpine |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for release in manifest.releases() {
        let go = match &release.build_go {
            Some((build, _)) => format!("go{build} (upstream: go{})", release.go),
            None => format!("go{}", release.go),
        };
        out.push_str(&format!(
            "| {} | `{}` | {go} | {} | {} | {} | {} |\n",
            release.version,
            &release.kubernetes.commit[..12],
            pin_cell(&release.cri_tools),
            pin_cell(&release.cni_plugins),
            pin_cell(&release.flannel_plugin),
            release.alpine
        ));
    }
    out
}

fn pin_cell(pin: &kubelet_upstream::Pin) -> String {
    match &pin.goproxy {
        Some(sub) => format!(
            "{} (goproxy stand-in: {}@{})",
            pin.version, sub.module, sub.version
        ),
        None => pin.version.clone(),
    }
}

fn list(manifest: &Manifest) -> String {
    let mut out = String::new();
    for release in manifest.releases() {
        out.push_str(&format!(
            "{}  {}  go{}  alpine {}\n",
            release.version,
            release.kubernetes.commit,
            release.toolchain(),
            release.alpine
        ));
        for pin in &release.pins()[1..] {
            out.push_str(&format!(
                "    {:<15} {:<18} {}",
                pin.component.key(),
                pin.version,
                pin.commit
            ));
            if let Some(sub) = &pin.goproxy {
                out.push_str(&format!("  (goproxy: {}@{})", sub.module, sub.version));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_versions_both_ways() {
        assert_eq!(
            go_version_from(".go-version", "1.26.5\n").as_deref(),
            Some("1.26.5")
        );
        assert_eq!(
            go_version_from(
                "build/build-image/cross/VERSION",
                "v1.26.0-go1.19.4-bullseye.1\n"
            )
            .as_deref(),
            Some("1.19.4")
        );
        assert_eq!(
            go_version_from("build/build-image/cross/VERSION", "v1.26.0"),
            None
        );
    }

    #[test]
    fn keeps_the_newest_patch_of_the_three_newest_minors() {
        let oid = Oid::zero();
        let tags: BTreeMap<KubeVersion, Oid> = [
            "v1.34.9", "v1.35.0", "v1.35.8", "v1.36.4", "v1.37.0", "v1.37.1",
        ]
        .iter()
        .map(|v| (v.parse().unwrap(), oid))
        .collect();
        let newest: Vec<String> = newest_patches(&tags)
            .iter()
            .map(|(v, _)| v.to_string())
            .collect();
        assert_eq!(newest, ["v1.35.8", "v1.36.4", "v1.37.1"]);
    }
}
