//! `cargo xtask upstream`: list the pins, check them against the newest upstream patches, and
//! bump the manifest. Upstream tags are read with git2 (ls-remote), so a mirror or a local
//! repository works as well as GitHub; the module sums of new pins come from the go command
//! through GOPROXY, as the goproxy source later checks them.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use git2::{Direction, Oid, Repository};
use kubelet_upstream::modules::{newest_in_minor, tracked_releases};
use kubelet_upstream::{Component, GoproxySubstitute, KubeVersion, Manifest, Pin, Release};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};
use xshell::Shell;

use crate::context::Context as Cx;
use crate::flags::{self, UpstreamAction};
use crate::fsutil;
use crate::go::{self, Network, Toolchain};
use crate::layout::Layout;
use crate::source::goproxy;

/// Files that name the Go release upstream built a tag with, newest convention first.
const GO_VERSION_FILES: [&str; 2] = [".go-version", "build/build-image/cross/VERSION"];

impl flags::Upstream {
    pub fn run(self, sh: &Shell) -> Result<()> {
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
                let changes = bump(sh, &cx.layout, &cx.manifest, &remotes)?;
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

fn missing_releases(manifest: &Manifest, kubernetes_url: &str) -> Result<Vec<(KubeVersion, Oid)>> {
    let tags = release_tags(kubernetes_url)?;
    Ok(tracked_releases(&tags)
        .into_iter()
        .filter(|(version, _)| manifest.release(*version).is_none())
        .collect())
}

/// Writes a pin for every missing newest patch, with the module sums of what it pins; returns
/// one line per change.
pub fn bump(
    sh: &Shell,
    layout: &Layout,
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
    let cni = cni_tags
        .iter()
        .next_back()
        .map(|(v, o)| (*v, *o))
        .context("the CNI plugins remote has no release tag")?;
    let mut releases = Vec::new();
    for (version, commit) in missing {
        let source = inspect_commit(&remotes[&Component::Kubernetes], version, commit)?;
        let cri = newest_in_minor(&cri_tags, version).with_context(|| {
            format!(
                "cri-tools has no v{}.{}.x tag yet; bump again when it does",
                version.major, version.minor
            )
        })?;
        releases.push(new_release(version, commit, source, template, cri, cni));
    }
    let sums = module_sums(sh, layout, &releases)?;
    write_releases(&layout.manifest(), &releases, &sums)?;
    Ok(releases
        .iter()
        .map(|r| {
            format!(
                "pinned {} = {} (go{}, cri-tools {}, CNI plugins {})",
                r.version, r.kubernetes.commit, r.go, r.cri_tools.version, r.cni_plugins.version
            )
        })
        .collect())
}

/// Appends the releases to the manifest, keeping its comments and layout.
fn write_releases(
    path: &Utf8Path,
    releases: &[NewRelease],
    sums: &BTreeMap<String, String>,
) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let mut document: DocumentMut = text
        .parse()
        .with_context(|| format!("{path} is not valid TOML"))?;
    for release in releases {
        releases_array(&mut document)?.push(release_table(release, sums)?);
    }
    let updated = document.to_string();
    // Validate before writing: a bump never leaves a manifest the next run cannot read.
    Manifest::parse(&updated, path.as_str())
        .map_err(|err| anyhow::anyhow!("the bumped manifest is invalid: {err}"))?;
    fsutil::write_atomic(path, updated.as_bytes())
}

fn releases_array(document: &mut DocumentMut) -> Result<&mut ArrayOfTables> {
    document
        .entry("release")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .context("`release` is not an array of tables")
}

/// A release about to be pinned. Its pins carry the sums the template had, no new ones.
struct NewRelease {
    version: KubeVersion,
    commit_date: String,
    go: String,
    kubernetes: Pin,
    cri_tools: Pin,
    cni_plugins: Pin,
    flannel_plugin: Pin,
    alpine: String,
    alpine_digest: String,
}

impl NewRelease {
    fn pins(&self) -> [&Pin; 4] {
        [
            &self.kubernetes,
            &self.cri_tools,
            &self.cni_plugins,
            &self.flannel_plugin,
        ]
    }
}

fn new_release(
    version: KubeVersion,
    commit: Oid,
    source: SourceFacts,
    template: &Release,
    cri: (KubeVersion, Oid),
    cni: (KubeVersion, Oid),
) -> NewRelease {
    let pin = |component: Component, module: &str, tag: KubeVersion, commit: Oid| Pin {
        component,
        module: module.to_owned(),
        version: tag.to_string(),
        commit: commit.to_string(),
        module_sum: None,
        goproxy: None,
    };
    let kubernetes = Component::Kubernetes;
    let cni_plugins = Component::CniPlugins;
    NewRelease {
        version,
        commit_date: source.commit_date,
        go: source.go,
        kubernetes: pin(kubernetes, kubernetes.module_path(), version, commit),
        cri_tools: pin(
            Component::CriTools,
            &template.cri_tools.module,
            cri.0,
            cri.1,
        ),
        cni_plugins: pin(cni_plugins, cni_plugins.module_path(), cni.0, cni.1),
        // flannel is not tracked: the template's pin carries over with its stand-in and sums.
        flannel_plugin: template.flannel_plugin.clone(),
        alpine: template.alpine.clone(),
        alpine_digest: template.alpine_digest.clone(),
    }
}

/// `module@version` of what the goproxy source downloads for a pin.
fn target(pin: &Pin) -> String {
    let (module, version, _) = pin.goproxy_module();
    format!("{module}@{version}")
}

/// The `h1:` sums of the modules the new pins make the goproxy source download and that carry
/// no sum yet, by target, from one `go mod download` through GOPROXY.
fn module_sums(
    sh: &Shell,
    layout: &Layout,
    releases: &[NewRelease],
) -> Result<BTreeMap<String, String>> {
    let unsummed: BTreeMap<String, &Pin> = releases
        .iter()
        .flat_map(NewRelease::pins)
        .filter(|pin| pin.goproxy_module_sum().is_none())
        .map(|pin| (target(pin), pin))
        .collect();
    if unsummed.is_empty() {
        return Ok(BTreeMap::new());
    }
    let targets: Vec<String> = unsummed.keys().cloned().collect();
    eprintln!("recording the module sums of {}", targets.join(" "));
    // The host's own go: a bump downloads modules, not the toolchains they are built with.
    let host = Toolchain {
        version: go::host_go(sh)?,
        why: "upstream bump only downloads modules".to_owned(),
    };
    let env = go::go_env(layout, &host, Network::Allowed);
    let mut sums = BTreeMap::new();
    let mut unserved = Vec::new();
    for report in goproxy::download_modules(sh, env, &targets)? {
        let target = format!("{}@{}", report.path, report.version);
        let pin = unsummed.get(&target).with_context(|| {
            format!("go mod download reported {target}, which was not asked for")
        })?;
        if let Some(error) = &report.error {
            let reason = error.trim_start_matches(&format!("{target}: "));
            unserved.push(format!("{target} ({})", goproxy::first_line(reason)));
            continue;
        }
        goproxy::check_origin(&target, &pin.commit, report.origin_hash())?;
        let sum = report
            .sum
            .with_context(|| format!("go mod download {target} reported no Sum"))?;
        sums.insert(target, sum);
    }
    if !unserved.is_empty() {
        bail!(
            "cannot record the module sums of {}; a bump pins every module with the sum the go command computes, so GOPROXY must serve them: set GOPROXY to a proxy that does (such as https://proxy.golang.org), or pin this release by hand with a goproxy stand-in",
            unserved.join(", ")
        );
    }
    Ok(sums)
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

/// A `[[release]]` table in the committed manifest's layout: each module-sum right after the
/// commit it sums.
fn release_table(release: &NewRelease, sums: &BTreeMap<String, String>) -> Result<Table> {
    let mut table = Table::new();
    table["version"] = value(release.version.to_string());
    table["commit"] = value(release.kubernetes.commit.clone());
    table["commit-date"] = value(release.commit_date.clone());
    table["module-sum"] = value(sum_of(&release.kubernetes, sums)?);
    table["go"] = value(release.go.clone());
    table["alpine"] = value(release.alpine.clone());
    table["alpine-digest"] = value(release.alpine_digest.clone());
    table["cri-tools"] = Item::Table(pin_table(&release.cri_tools, true, sums)?);
    table["cni-plugins"] = Item::Table(pin_table(&release.cni_plugins, false, sums)?);
    table["flannel-plugin"] = Item::Table(pin_table(&release.flannel_plugin, false, sums)?);
    Ok(table)
}

/// A component's table: the module where asked for, the tag, the commit, and the sum of what
/// the goproxy source downloads, on the pin or on its stand-in.
fn pin_table(pin: &Pin, with_module: bool, sums: &BTreeMap<String, String>) -> Result<Table> {
    let mut table = Table::new();
    if with_module {
        table["module"] = value(pin.module.clone());
    }
    table["version"] = value(pin.version.clone());
    table["commit"] = value(pin.commit.clone());
    match &pin.goproxy {
        Some(sub) => {
            if let Some(sum) = &pin.module_sum {
                table["module-sum"] = value(sum.clone());
            }
            table["goproxy"] = Item::Table(substitute_table(sub, sum_of(pin, sums)?));
        }
        None => table["module-sum"] = value(sum_of(pin, sums)?),
    }
    Ok(table)
}

fn substitute_table(sub: &GoproxySubstitute, sum: String) -> Table {
    let mut table = Table::new();
    table["module"] = value(sub.module.clone());
    table["version"] = value(sub.version.clone());
    if let Some(subdir) = &sub.subdir {
        table["subdir"] = value(subdir.clone());
    }
    table["module-sum"] = value(sum);
    table["reason"] = value(sub.reason.clone());
    table
}

/// The sum of what the goproxy source downloads for `pin`: the one it carries, or the one the
/// bump just recorded.
fn sum_of(pin: &Pin, sums: &BTreeMap<String, String>) -> Result<String> {
    pin.goproxy_module_sum()
        .map(str::to_owned)
        .or_else(|| sums.get(&target(pin)).cloned())
        .with_context(|| format!("no module sum was recorded for {}", target(pin)))
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
}
