//! `cargo xtask fetch`: bring the pinned sources of releases into the cache.

use anyhow::Result;
use kubelet_upstream::Release;
use xshell::Shell;

use crate::context::Context;
use crate::flags::{self, SourceArgs, SourceKind};
use crate::go::{self, Toolchain};
use crate::lock::CacheLock;
use crate::source::git::GitFetcher;
use crate::source::goproxy::GoproxyFetcher;
use crate::source::{Fetcher, SourceSet};

impl flags::Fetch {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Context::load()?;
        let releases = cx.releases(&self.versions)?;
        let _lock = CacheLock::acquire(&cx.layout)?;
        for release in releases {
            fetch_release(sh, &cx, release, &self.source)?;
        }
        Ok(())
    }
}

/// The fetcher for a source kind. Both live as long as the context they read from.
pub fn fetcher<'a>(sh: &'a Shell, cx: &'a Context, source: &SourceArgs) -> Box<dyn Fetcher + 'a> {
    match source.source {
        SourceKind::Git => Box::new(GitFetcher {
            layout: &cx.layout,
            remotes: cx.remotes(&source.remotes),
        }),
        SourceKind::Goproxy => Box::new(GoproxyFetcher {
            layout: &cx.layout,
            sh,
        }),
    }
}

/// Fetches every component and the Go toolchain of one release, and records the result.
pub fn fetch_release(
    sh: &Shell,
    cx: &Context,
    release: &Release,
    source: &SourceArgs,
) -> Result<SourceSet> {
    eprintln!("==> fetch {} ({})", release.version, source.source.name());
    let host = go::host_go(sh)?;
    let toolchain = Toolchain::for_release(release);
    go::provision(sh, &cx.layout, &toolchain, host)?;
    let fetcher = fetcher(sh, cx, source);
    let mut trees = Vec::new();
    for pin in release.pins() {
        eprintln!("  {}: {}", pin.component, fetcher.describe(release, pin));
        let tree = fetcher.fetch(release, pin)?;
        if let Some(note) = &tree.substitute {
            eprintln!("    note: {note}");
        }
        eprintln!("    ready in {}", tree.dir);
        trees.push(tree);
    }
    let set = SourceSet {
        version: release.version.to_string(),
        source: source.source.name().to_owned(),
        trees,
    };
    set.save(&cx.layout, release.version, source.source)?;
    Ok(set)
}
