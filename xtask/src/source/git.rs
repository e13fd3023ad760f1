//! Sources from git: fetch only the pinned tag (shallow where the remote allows), check that it
//! resolves to the pinned commit, and check the tree out into the cache.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use git2::{AutotagOption, FetchOptions, Oid, RemoteCallbacks, Repository};
use indicatif::{ProgressBar, ProgressStyle};
use kubelet_upstream::{Component, Pin, Release};

use super::{mod_flag_for, Fetcher, SourceTree, COMPLETE_MARKER};
use crate::fsutil;
use crate::layout::Layout;

/// How many commits a shallow fetch asks for: the tagged commit alone.
const SHALLOW_DEPTH: i32 = 1;

pub struct GitFetcher<'a> {
    pub layout: &'a Layout,
    pub remotes: BTreeMap<Component, String>,
}

impl GitFetcher<'_> {
    fn remote(&self, component: Component) -> &str {
        &self.remotes[&component]
    }
}

impl Fetcher for GitFetcher<'_> {
    fn describe(&self, _release: &Release, pin: &Pin) -> String {
        format!(
            "git {} tag {} = {}",
            self.remote(pin.component),
            pin.version,
            pin.commit
        )
    }

    fn planned(&self, _release: &Release, pin: &Pin) -> SourceTree {
        tree_for(&self.layout.git_checkout(pin.component, &pin.version), pin)
    }

    fn fetch(&self, _release: &Release, pin: &Pin) -> Result<SourceTree> {
        let dest = self.layout.git_checkout(pin.component, &pin.version);
        if let Some(tree) = reuse_checkout(&dest, pin)? {
            return Ok(tree);
        }
        let url = self.remote(pin.component);
        let staging = fsutil::staging_dir(&dest)?;
        let staging_path = Utf8Path::from_path(staging.path()).context("non-UTF-8 cache path")?;
        checkout_pinned(url, pin, staging_path)?;
        fsutil::write_atomic(
            &staging_path.join(".git").join(COMPLETE_MARKER),
            pin.commit.as_bytes(),
        )?;
        crate::pause::point("fetch");
        fsutil::commit_dir(staging, &dest)?;
        Ok(tree_for(&dest, pin))
    }
}

fn tree_for(dir: &Utf8Path, pin: &Pin) -> SourceTree {
    SourceTree {
        component: pin.component.key().to_owned(),
        version: pin.version.clone(),
        commit: pin.commit.clone(),
        module: pin.module.clone(),
        built_version: pin.version.clone(),
        dir: dir.to_owned(),
        package_prefix: "./".to_owned(),
        // Upstream vendors its dependencies in every repository we build from.
        mod_flag: if dir.exists() {
            mod_flag_for(dir)
        } else {
            "-mod=vendor".to_owned()
        },
        substitute: None,
    }
}

/// A complete checkout of the pinned commit is used as it is, without touching the remote.
fn reuse_checkout(dest: &Utf8Path, pin: &Pin) -> Result<Option<SourceTree>> {
    let marker = dest.join(".git").join(COMPLETE_MARKER);
    let Ok(recorded) = std::fs::read_to_string(&marker) else {
        return Ok(None);
    };
    if recorded.trim() != pin.commit {
        return Ok(None);
    }
    let repo = Repository::open(dest)
        .with_context(|| format!("the cached checkout {dest} is damaged; delete it"))?;
    let head = repo.head()?.peel_to_commit()?.id();
    if head.to_string() != pin.commit {
        bail!(
            "the cached checkout {dest} is at {head}, not the pinned {}; delete it and fetch again",
            pin.commit
        );
    }
    Ok(Some(tree_for(dest, pin)))
}

/// Fetches `refs/tags/<tag>` from `url` into a new repository at `dir` and checks it out.
pub fn checkout_pinned(url: &str, pin: &Pin, dir: &Utf8Path) -> Result<()> {
    let repo = Repository::init(dir)
        .with_context(|| format!("cannot create a git repository in {dir}"))?;
    fetch_tag(&repo, url, &pin.version).with_context(|| {
        format!(
            "cannot fetch tag {} of {} from {url}; check the URL or pass --remote {}=URL for a mirror",
            pin.version, pin.component, pin.component
        )
    })?;
    let Ok(reference) = repo.find_reference(&format!("refs/tags/{}", pin.version)) else {
        bail!(
            "{url} has no tag {}; check the pin, or pass --remote {}=URL for a mirror that has it",
            pin.version,
            pin.component
        );
    };
    let commit = reference
        .peel_to_commit()
        .with_context(|| format!("tag {} at {url} does not point to a commit", pin.version))?;
    let expected = Oid::from_str(&pin.commit)?;
    if commit.id() != expected {
        bail!(
            "tag {} of {} at {url} points to commit {}, but the manifest pins {}: the tag was moved or the mirror is wrong. Verify upstream, then re-pin with `cargo xtask upstream bump`",
            pin.version,
            pin.component,
            commit.id(),
            pin.commit
        );
    }
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.force();
    repo.checkout_tree(commit.as_object(), Some(&mut checkout))
        .with_context(|| format!("cannot check out {} in {dir}", pin.commit))?;
    repo.set_head_detached(commit.id())?;
    Ok(())
}

fn fetch_tag(repo: &Repository, url: &str, tag: &str) -> Result<()> {
    let refspec = format!("+refs/tags/{tag}:refs/tags/{tag}");
    match fetch_once(repo, url, &refspec, Some(SHALLOW_DEPTH)) {
        Err(err) if err.message().contains("shallow") => {
            // Local and dumb transports cannot serve shallow fetches; a full fetch still
            // brings only what the tag reaches.
            fetch_once(repo, url, &refspec, None)
                .map_err(|err| anyhow::anyhow!("{}", err.message()))?;
        }
        other => other.map_err(|err| anyhow::anyhow!("{}", err.message()))?,
    }
    Ok(())
}

fn fetch_once(
    repo: &Repository,
    url: &str,
    refspec: &str,
    depth: Option<i32>,
) -> std::result::Result<(), git2::Error> {
    let progress = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("    {msg} {bar:30} {pos}/{len} objects")
            .expect("valid template"),
    );
    progress.set_message(format!("fetching {refspec}"));
    let mut callbacks = RemoteCallbacks::new();
    callbacks.transfer_progress(|stats| {
        progress.set_length(stats.total_objects() as u64);
        progress.set_position(stats.received_objects() as u64);
        true
    });
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .download_tags(AutotagOption::None);
    if let Some(depth) = depth {
        options.depth(depth);
    }
    let mut remote = repo.remote_anonymous(url)?;
    let result = remote.fetch(&[refspec], Some(&mut options), None);
    progress.finish_and_clear();
    result
}
