//! `cargo xtask build`: cross-compile and pack the binaries of a release.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::compile;
use crate::context::Context;
use crate::fetch::fetcher;
use crate::flags;

impl flags::Build {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Context::load()?;
        let releases = cx.releases(&self.versions)?;
        let compilers = compile::c_compilers(&cx.layout, &self.compiler.cc)?;
        let fetcher = fetcher(sh, &cx, &self.source);
        if !self.dry_run {
            bail!("cross-compiling is not implemented yet (issue #3); `--dry-run` prints the compiler invocations");
        }
        for release in releases {
            for pin in release.pins() {
                let tree = fetcher.planned(release, pin);
                for binary in kubelet_upstream::rules::binaries(release)
                    .iter()
                    .filter(|b| b.component == pin.component)
                {
                    for arch in self.arches.selected() {
                        let step = compile::compile_step(
                            &cx.layout,
                            release,
                            &tree,
                            binary,
                            arch,
                            &compilers[&arch],
                        );
                        println!("{} {}: {}", binary.name, arch.platform(), step.display());
                    }
                }
            }
        }
        Ok(())
    }
}
