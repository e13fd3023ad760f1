//! `cargo xtask release`: the whole pipeline, or with `--dry-run` its plan.

use anyhow::Result;
use xshell::Shell;

use crate::build::{build_release, BuildOptions};
use crate::compile;
use crate::context::Context;
use crate::fetch::{fetch_release, fetcher};
use crate::flags;
use crate::go;
use crate::image::{build_images, ImageOptions};
use crate::lock::CacheLock;
use crate::plan::{self, PlanInput};
use kubelet_upstream::rules;

impl flags::Release {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Context::load()?;
        let releases = cx.releases(&self.versions)?;
        let compilers = compile::c_compilers(&cx.layout, &self.compiler.cc)?;
        let arches = self.arches.selected();
        if self.dry_run {
            let fetcher = fetcher(sh, &cx, &self.source);
            for release in releases {
                let go = go::release_go(sh, &cx.layout, release)?;
                let input = PlanInput {
                    go: &go,
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
        let options = BuildOptions::new(arches.clone(), compilers, &self.compiler);
        let image_options = ImageOptions::new(sh, &self.image, arches.clone())?;
        for release in &releases {
            let sources = fetch_release(sh, &cx, release, &self.source)?;
            let binaries = rules::binaries(release);
            build_release(sh, &cx.layout, release, &sources, &binaries, &options)?;
            for published in build_images(sh, &cx.layout, release, &image_options)? {
                println!("{} {}", published.reference, published.digest);
            }
        }
        Ok(())
    }
}
