//! `cargo xtask release`: the whole pipeline, or with `--dry-run` its plan. Both come from the
//! same plan: the dry run prints it, the run executes it.

use anyhow::Result;
use xshell::Shell;

use crate::build::{build_release, plan_build, planned_trees, BuildOptions};
use crate::compile;
use crate::context::Context;
use crate::fetch::{fetch_release, fetcher};
use crate::flags;
use crate::image::{build_images, plan_images, ImageOptions, ImageSelection};
use crate::lock::CacheLock;
use crate::plan::{self, ReleasePlan};
use kubelet_upstream::rules::binaries;

impl flags::Release {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Context::load()?;
        let releases = cx.releases(&self.versions)?;
        let compilers = compile::c_compilers(&cx.layout, &self.compiler.cc)?;
        let arches = self.arches.selected();
        let options = BuildOptions::new(arches.clone(), compilers, &self.compiler);
        let selection = ImageSelection::new(&self.image, arches)?;
        if self.dry_run {
            let fetcher = fetcher(sh, &cx, &self.source);
            for release in releases {
                let trees = planned_trees(fetcher.as_ref(), release);
                let plan = ReleasePlan {
                    release,
                    source: self.source.source,
                    fetcher: fetcher.as_ref(),
                    build: plan_build(
                        sh,
                        &cx.layout,
                        release,
                        &trees,
                        &binaries(release),
                        &options,
                    )?,
                    selection: &selection,
                    images: plan_images(&cx.layout, release, &selection),
                    layout: &cx.layout,
                };
                println!("{}", plan::render(&plan)?);
            }
            return Ok(());
        }
        let _lock = CacheLock::acquire(&cx.layout)?;
        let image_options = ImageOptions::new(sh, selection)?;
        for release in &releases {
            image_options.preflight_host_tools(&cx.layout, release)?;
        }
        for release in &releases {
            let sources = fetch_release(sh, &cx, release, &self.source)?;
            let build = plan_build(
                sh,
                &cx.layout,
                release,
                &sources.trees,
                &binaries(release),
                &options,
            )?;
            build_release(sh, &cx.layout, release, &build, &options)?;
            let images = plan_images(&cx.layout, release, &image_options.selection);
            for published in build_images(sh, &cx.layout, release, &images, &image_options)? {
                println!("{} {}", published.reference, published.digest);
            }
        }
        Ok(())
    }
}
