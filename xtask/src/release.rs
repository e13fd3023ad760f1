//! `cargo xtask release`: the whole pipeline, or with `--dry-run` its plan.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::compile;
use crate::context::Context;
use crate::fetch::{fetch_release, fetcher};
use crate::flags;
use crate::lock::CacheLock;
use crate::plan::{self, PlanInput};

impl flags::Release {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Context::load()?;
        let releases = cx.releases(&self.versions)?;
        let compilers = compile::c_compilers(&cx.layout, &self.compiler.cc)?;
        let arches = self.arches.selected();
        if self.dry_run {
            let fetcher = fetcher(sh, &cx, &self.source);
            for release in releases {
                let input = PlanInput {
                    layout: &cx.layout,
                    release,
                    source: self.source.source,
                    fetcher: fetcher.as_ref(),
                    arches: &arches,
                    compilers: &compilers,
                    pack_daemons: self.compiler.pack_daemons,
                    image: &self.image,
                };
                println!("{}", plan::render(&input)?);
            }
            return Ok(());
        }
        let _lock = CacheLock::acquire(&cx.layout)?;
        for release in &releases {
            fetch_release(sh, &cx, release, &self.source)?;
        }
        bail!(
            "sources are fetched; cross-compiling, packing and images are not implemented yet (issues #3 and #4). `--dry-run` shows every step they will take"
        )
    }
}
