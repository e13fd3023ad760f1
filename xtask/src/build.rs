//! `cargo xtask build`: cross-compile and pack the binaries of a release.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::compile;
use crate::context::Context;
use crate::fetch::fetcher;
use crate::flags;
use crate::plan;

impl flags::Build {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Context::load()?;
        let releases = cx.releases(&self.versions)?;
        let compilers = compile::c_compilers(&cx.layout, &self.compiler.cc)?;
        let fetcher = fetcher(sh, &cx, &self.source);
        if !self.dry_run {
            bail!("cross-compiling is not implemented yet (issue #3); `--dry-run` prints the compiler invocations");
        }
        let arches = self.arches.selected();
        for release in releases {
            let lines =
                plan::compile_lines(&cx.layout, release, fetcher.as_ref(), &arches, &compilers);
            for line in lines {
                println!("{line}");
            }
        }
        Ok(())
    }
}
