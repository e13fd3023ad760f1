//! `cargo xtask verify-reproducible`: builds one release twice, each time in a fresh build
//! cache at a different path, and names every binary, image digest and layer file that differs,
//! and every artifact that holds a host path.
//!
//! The two builds share only the tool cache (toolchains, verified module downloads and zig's
//! libc builds): none of it depends on what is built. Go's build cache, the sources, the
//! binaries, the host tools, the buildah store and the OCI layout are new for each build.

pub mod diff;

use anyhow::{bail, Result};
use camino::Utf8PathBuf;
use xshell::Shell;

use crate::build::{build_release, plan_build, BuildOptions};
use crate::compile;
use crate::context::Context;
use crate::fetch::fetch_release;
use crate::flags;
use crate::fsutil;
use crate::image::{build_images, plan_images, ImageOptions, ImageSelection};
use crate::layout::Layout;
use crate::lock::CacheLock;

/// The two builds; different names give them different paths, which exposes leaked host paths.
const BUILD_NAMES: [&str; 2] = ["first", "second"];
const REPORT_FILE: &str = "report.txt";

impl flags::VerifyReproducible {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Context::load()?;
        let version = cx.releases(std::slice::from_ref(&self.version))?[0].version;
        let compilers = compile::c_compilers(&cx.layout, &self.compiler.cc)?;
        let arches = self.arches.selected();
        let mut image_args = self.image.clone();
        if let Some(registry) = image_args.registry.take() {
            eprintln!("note: verify-reproducible writes OCI layouts and pushes nothing; ignoring registry {registry}");
        }
        let selection = ImageSelection::new(&image_args, arches.clone())?;
        let image_options = ImageOptions::new(sh, selection)?;
        let build_options = BuildOptions::new(arches.clone(), compilers, &self.compiler);
        let _lock = CacheLock::acquire(&cx.layout)?;
        let root = cx.layout.reproducible(version);
        let builds: Vec<Layout> = BUILD_NAMES
            .iter()
            .map(|name| {
                cx.layout
                    .with_cache(root.join(name))
                    .with_private_host_tools()
            })
            .collect();
        if !self.compare_only {
            let release = cx.releases(std::slice::from_ref(&self.version))?[0];
            image_options.preflight_host_tools(&builds[0], release)?;
        }
        if self.compare_only {
            if let Some(missing) = builds.iter().find(|b| !b.cache().exists()) {
                bail!(
                    "there is no build to compare in {}; run `cargo xtask verify-reproducible {version}` without --compare-only",
                    missing.cache()
                );
            }
        } else {
            for (number, layout) in builds.iter().enumerate() {
                eprintln!(
                    "==> reproducibility: build {} of {} of {version} in {}",
                    number + 1,
                    builds.len(),
                    layout.cache()
                );
                self.build_once(sh, layout, &build_options, &image_options)?;
            }
        }
        let report = diff::compare(&builds[0], &builds[1], version, &arches, cx.layout.root())?;
        let text = report.render();
        let report_path: Utf8PathBuf = root.join(REPORT_FILE);
        fsutil::write_atomic(&report_path, text.as_bytes())?;
        print!("{text}");
        if !report.is_reproducible() {
            bail!(
                "{version} is not reproducible: {} difference(s), listed above and in {report_path}",
                report.problems()
            );
        }
        Ok(())
    }

    /// One whole build in a fresh cache: fetch, compile, pack, images into an OCI layout.
    fn build_once(
        &self,
        sh: &Shell,
        layout: &Layout,
        build_options: &BuildOptions,
        image_options: &ImageOptions,
    ) -> Result<()> {
        fsutil::remove_dir_all_writable(layout.cache())?;
        let cx = Context::with_layout(layout.clone())?;
        let release = cx.releases(std::slice::from_ref(&self.version))?[0];
        let sources = fetch_release(sh, &cx, release, &self.source)?;
        let binaries = kubelet_upstream::rules::binaries(release);
        let build = plan_build(
            sh,
            layout,
            release,
            &sources.trees,
            &binaries,
            build_options,
        )?;
        build_release(sh, layout, release, &build, build_options)?;
        let images = plan_images(layout, release, &image_options.selection);
        build_images(sh, layout, release, &images, image_options)?;
        Ok(())
    }
}
