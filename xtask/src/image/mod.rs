//! `cargo xtask image`: stage the built binaries of each platform, build every image with a
//! builder backend into an OCI layout, check what is inside that layout, and publish it as a
//! multi-arch index.
//!
//! As in ko, building and publishing are two small interfaces with one backend per file. Both
//! builders (buildah, docker buildx) write an OCI layout; one publisher (skopeo) pushes it, so
//! what is checked is byte for byte what is published, whichever builder ran.

pub mod base;
pub mod buildah;
pub mod buildx;
pub mod context;
pub mod oci;
pub mod rootfs;
pub mod skopeo;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::hostcommands::{self, CommandSource};
use kubelet_upstream::hosttools::HostTool;
use kubelet_upstream::rules::{self, Image};
use kubelet_upstream::{Arch, Release};
use xshell::Shell;

use crate::compile;
use crate::context::Context as Cx;
use crate::flags::{self, BuilderKind, ImageArgs};
use crate::hosttools;
use crate::layout::Layout;
use crate::lock::CacheLock;
use crate::runner;
use buildah::Buildah;
use buildx::Buildx;
use skopeo::SkopeoPublisher;

/// The directory, below the cache, where builders write each image's OCI layout.
const BUILT_LAYOUTS_DIR: &str = "oci-built";

/// One image of one release, for every platform, as the backends see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageJob {
    pub repository: String,
    pub tag: String,
    pub arches: Vec<Arch>,
    pub context: Utf8PathBuf,
    pub build_args: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub source_date_epoch: i64,
    /// The OCI layout the builder writes: what is checked is exactly what is published.
    pub built: Utf8PathBuf,
}

impl ImageJob {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The name an OCI layout gives the image; tags cannot hold a second colon.
    pub fn ref_name(&self) -> String {
        oci_ref_name(&self.repository, &self.tag)
    }
}

/// OCI layouts name an image by one reference, `repository_tag`.
pub fn oci_ref_name(repository: &str, tag: &str) -> String {
    format!("{repository}_{tag}")
}

/// Where the builder writes a job's OCI layout.
pub fn built_layout(layout: &Layout, repository: &str, tag: &str) -> Utf8PathBuf {
    layout
        .cache()
        .join(BUILT_LAYOUTS_DIR)
        .join(oci_ref_name(repository, tag))
}

/// An image builder: it writes every platform of a job, in the job's order, into one OCI
/// layout at `job.built`, whole or not at all.
pub trait Builder {
    fn name(&self) -> &'static str;
    fn build(&self, sh: &Shell, job: &ImageJob) -> Result<()>;
    /// Clears what an interrupted run left in the builder's store.
    fn sweep(&self, sh: &Shell) -> Result<()>;
}

/// Where published images go: a registry, or the OCI layout under target/.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Registry { prefix: String },
    OciLayout { dir: Utf8PathBuf },
}

impl Target {
    pub fn new(registry: Option<&str>, layout: &Layout) -> Target {
        match registry {
            Some(prefix) => Target::Registry {
                prefix: prefix.trim_end_matches('/').to_owned(),
            },
            None => Target::OciLayout {
                dir: layout.oci_layout(),
            },
        }
    }

    /// Where a job's index goes, as skopeo spells it.
    pub fn destination(&self, job: &ImageJob) -> String {
        match self {
            Target::Registry { prefix } => {
                format!("docker://{prefix}/{}:{}", job.repository, job.tag)
            }
            Target::OciLayout { dir } => format!("oci:{dir}:{}", job.ref_name()),
        }
    }

    /// Makes sure an OCI layout target's directory exists before a tool writes into it.
    pub fn prepare(&self) -> Result<()> {
        if let Target::OciLayout { dir } = self {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
        }
        Ok(())
    }

    /// The registry, or the layout's directory, for messages.
    pub fn name(&self) -> String {
        match self {
            Target::Registry { prefix } => prefix.clone(),
            Target::OciLayout { dir } => dir.to_string(),
        }
    }

    /// Whether the destination is a registry reached without TLS (one on this machine).
    pub fn is_loopback_registry(&self) -> bool {
        matches!(self, Target::Registry { prefix } if is_loopback(prefix))
    }
}

/// Where a built index went, and its digest as the destination holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub reference: String,
    pub digest: String,
}

/// Publishing a built OCI layout. One backend (skopeo) serves both builders.
pub trait Publisher {
    fn publish(&self, sh: &Shell, job: &ImageJob) -> Result<Published>;
}

/// Registries on this machine speak plain HTTP: TLS verification is off for them alone.
/// `reference` is a registry, a repository prefix or an image reference; only its host counts,
/// so `localhost.example.com` or `127.example.com` keep TLS.
pub fn is_loopback(reference: &str) -> bool {
    let host_and_port = reference.split('/').next().unwrap_or_default();
    let host = match host_and_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_and_port.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The OCI annotations every image carries; `created` is the commit date, never the clock.
pub fn labels(release: &Release) -> Vec<(String, String)> {
    vec![
        (
            "org.opencontainers.image.created".into(),
            compile::build_date(release),
        ),
        (
            "org.opencontainers.image.revision".into(),
            release.kubernetes.commit.clone(),
        ),
        (
            "org.opencontainers.image.source".into(),
            "https://github.com/kubernetes/kubernetes".into(),
        ),
        (
            "org.opencontainers.image.version".into(),
            release.version.to_string(),
        ),
    ]
}

/// The pinned base: Alpine by digest, unless the user names another (an offline mirror, say).
pub fn base_image(release: &Release, selection: &ImageSelection) -> String {
    match &selection.base_image {
        Some(base) => base.clone(),
        None => format!(
            "docker.io/library/alpine:{}@{}",
            release.alpine, release.alpine_digest
        ),
    }
}

/// What the image flags ask for, checked but without probing any tool: plans need no builder.
#[derive(Debug, Clone)]
pub struct ImageSelection {
    pub arches: Vec<Arch>,
    pub images: Vec<Image>,
    pub registry: Option<String>,
    pub base_image: Option<String>,
    pub builder: Option<BuilderKind>,
    pub buildx_builder: Option<String>,
}

impl ImageSelection {
    pub fn new(args: &ImageArgs, arches: Vec<Arch>) -> Result<ImageSelection> {
        let images = if args.images.is_empty() {
            Image::ALL.to_vec()
        } else {
            let mut chosen = Vec::new();
            for name in &args.images {
                chosen.push(Image::from_name(name).with_context(|| {
                    let known: Vec<&str> = Image::ALL.iter().map(|i| i.name()).collect();
                    format!(
                        "unknown image `{name}`; expected one of {}",
                        known.join(", ")
                    )
                })?);
            }
            // Images are built in their fixed order, whatever order the flags name them in.
            Image::ALL
                .into_iter()
                .filter(|image| chosen.contains(image))
                .collect()
        };
        Ok(ImageSelection {
            arches,
            images,
            registry: args.registry.clone(),
            base_image: args.base_image.clone(),
            builder: args.builder,
            buildx_builder: args.buildx_builder.clone(),
        })
    }

    pub fn target(&self, layout: &Layout) -> Target {
        Target::new(self.registry.as_deref(), layout)
    }
}

/// One image of the plan: which image, and the job the builder and publisher get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedImage {
    pub image: Image,
    pub job: ImageJob,
}

/// The jobs of one release's images, in the fixed image order.
pub fn plan_images(
    layout: &Layout,
    release: &Release,
    selection: &ImageSelection,
) -> Vec<PlannedImage> {
    let base = base_image(release, selection);
    selection
        .images
        .iter()
        .map(|&image| {
            let repository = image.repository().to_owned();
            let tag = image.tag(release);
            let job = ImageJob {
                built: built_layout(layout, &repository, &tag),
                repository,
                tag,
                arches: selection.arches.clone(),
                context: context::context_dir(layout, release, image),
                build_args: vec![("BASE_IMAGE".into(), base.clone())],
                labels: labels(release),
                source_date_epoch: release.source_date_epoch,
            };
            PlannedImage { image, job }
        })
        .collect()
}

/// The selection with its builder chosen and checked to be usable, before a release spends
/// its time compiling.
pub struct ImageOptions {
    pub selection: ImageSelection,
    pub builder: BuilderKind,
}

impl ImageOptions {
    pub fn new(sh: &Shell, selection: ImageSelection) -> Result<ImageOptions> {
        let builder = choose_builder(sh, selection.builder, selection.buildx_builder.as_deref())?;
        skopeo_present()?;
        Ok(ImageOptions { selection, builder })
    }

    /// The host tools the selected images of `release` carry, each once.
    fn host_tools(&self, release: &Release) -> Vec<&'static HostTool> {
        let mut tools: Vec<&'static HostTool> = Vec::new();
        for &image in &self.selection.images {
            for (tool, _) in hostcommands::tool_programs(image, release.version) {
                if !tools.iter().any(|t| t.name() == tool.name()) {
                    tools.push(tool);
                }
            }
        }
        tools
    }

    /// Whether the host tools the images need can be built here, said before a release spends
    /// its time compiling.
    pub fn preflight_host_tools(&self, layout: &Layout, release: &Release) -> Result<()> {
        hosttools::preflight(layout, &self.host_tools(release), &self.selection.arches)
    }

    fn builder(&self, layout: &Layout) -> Box<dyn Builder> {
        match self.builder {
            BuilderKind::Buildah => Box::new(Buildah::new(layout)),
            BuilderKind::Buildx => Box::new(Buildx::new(self.selection.buildx_builder.clone())),
        }
    }
}

impl flags::Image {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Cx::load()?;
        let releases = cx.releases(&self.versions)?;
        let selection = ImageSelection::new(&self.image, self.arches.selected())?;
        if self.dry_run {
            for release in releases {
                let images = plan_images(&cx.layout, release, &selection);
                let text = crate::plan::render_images(release, &selection, &images, &cx.layout)?;
                print!("{text}");
            }
            return Ok(());
        }
        let options = ImageOptions::new(sh, selection)?;
        let _lock = CacheLock::acquire(&cx.layout)?;
        for release in releases {
            let images = plan_images(&cx.layout, release, &options.selection);
            for published in build_images(sh, &cx.layout, release, &images, &options)? {
                println!("{} {}", published.reference, published.digest);
            }
        }
        Ok(())
    }
}

/// Builds, checks and publishes the planned images of one release from its built binaries.
pub fn build_images(
    sh: &Shell,
    layout: &Layout,
    release: &Release,
    images: &[PlannedImage],
    options: &ImageOptions,
) -> Result<Vec<Published>> {
    let builder = options.builder(layout);
    let publisher = SkopeoPublisher {
        target: options.selection.target(layout),
    };
    eprintln!(
        "==> images of {} from {} with {}",
        release.version,
        base_image(release, &options.selection),
        builder.name()
    );
    builder.sweep(sh)?;
    // Every tool before any image, so a tool that does not build cannot leave a release half
    // published.
    options.preflight_host_tools(layout, release)?;
    for tool in options.host_tools(release) {
        for &arch in &options.selection.arches {
            hosttools::build_tool(sh, layout, tool, arch)?;
        }
    }
    let mut published = Vec::new();
    for planned in images {
        let job = &planned.job;
        context::prepare(sh, layout, release, planned.image, &job.arches)?;
        builder.build(sh, job)?;
        for &arch in &job.arches {
            check_platform(job, planned.image, release, arch)?;
        }
        note_not_built(job, planned.image, release);
        let result = publisher.publish(sh, job)?;
        eprintln!("    published {} {}", result.reference, result.digest);
        published.push(result);
        if published.len() == 1 {
            crate::pause::point("push");
        }
    }
    Ok(published)
}

/// buildx where it is asked for, or where it is present with a builder that answers; buildah
/// otherwise. Each says what is missing and how to get it.
fn choose_builder(
    sh: &Shell,
    requested: Option<BuilderKind>,
    buildx_builder: Option<&str>,
) -> Result<BuilderKind> {
    let buildah = || -> Result<BuilderKind> {
        which::which("buildah").map_err(|_| {
            anyhow::anyhow!("no image builder: install buildah (`apt-get install buildah`), or Docker with the buildx plugin")
        })?;
        Ok(BuilderKind::Buildah)
    };
    match requested {
        Some(BuilderKind::Buildah) => buildah(),
        Some(BuilderKind::Buildx) => {
            buildx::check_available(sh, buildx_builder)?;
            Ok(BuilderKind::Buildx)
        }
        None if buildx::check_available(sh, buildx_builder).is_ok() => Ok(BuilderKind::Buildx),
        None => buildah(),
    }
}

/// Both builders' layouts are checked and published through skopeo.
fn skopeo_present() -> Result<()> {
    which::which("skopeo").map_err(|_| {
        anyhow::anyhow!(
            "images are published with skopeo, which is missing: `apt-get install skopeo`"
        )
    })?;
    Ok(())
}

/// The host commands the image needs that no pinned source builds yet: said on every build, so
/// an image is never taken for complete when it is not.
fn note_not_built(job: &ImageJob, image: Image, release: &Release) {
    let missing: Vec<String> = hostcommands::not_built(image, release.version)
        .iter()
        .filter_map(|c| {
            let reason = c.not_built_reason()?;
            Some(format!("{} ({}: {reason})", c.command, c.why))
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("    note: {} lacks {}", job.reference(), missing.join("; "));
    }
}

/// Every host command resolves inside the image, every host tool and busybox applet it
/// resolves to runs on the platform, and so does the main program: checked on the platform's
/// root filesystem unpacked from the very layout that is published.
fn check_platform(job: &ImageJob, image: Image, release: &Release, arch: Arch) -> Result<()> {
    let unpacked = tempfile::tempdir().context("cannot create a directory to unpack into")?;
    let root = Utf8Path::from_path(unpacked.path()).context("non-UTF-8 temp path")?;
    oci::unpack_platform(&job.built, arch, root)
        .with_context(|| format!("cannot unpack {} for {arch}", job.reference()))?;
    let commands = hostcommands::host_commands(image, release.version);
    let carried: Vec<&str> = commands
        .iter()
        .filter(|c| c.not_built_reason().is_none())
        .map(|c| c.command)
        .collect();
    let unresolved = rootfs::unresolved_commands(root, arch, &carried);
    if !unresolved.is_empty() {
        let list: Vec<String> = unresolved
            .iter()
            .map(|u| format!("{} ({})", u.command, u.why))
            .collect();
        bail!(
            "{} for {arch}: host commands do not resolve: {}",
            job.reference(),
            list.join("; ")
        );
    }
    for (tool, program) in hostcommands::tool_programs(image, release.version) {
        hosttools::check_runs(&root.join(program.installed), tool, program, arch)
            .with_context(|| format!("in {} for {arch}", job.reference()))?;
    }
    for command in commands
        .iter()
        .filter(|c| c.source == CommandSource::Busybox)
    {
        rootfs::check_busybox_applet(root, arch, command.command)
            .with_context(|| format!("in {} for {arch}", job.reference()))?;
    }
    let program = image.main_program();
    let binary = root.join("usr/local/bin").join(program.name);
    let test = rules::smoke_test(program.kind);
    let output = runner::run(&binary, arch, &test.args, &test.env)?;
    let expected = rules::version_output(release, program.kind, &release.version.to_string());
    if !output.success || !output.text.contains(&expected) {
        bail!(
            "{} in {} for {arch} does not print `{expected}`: {}",
            program.name,
            job.reference(),
            output.text.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_go_without_tls() {
        for reference in [
            "127.0.0.1:5000/ck",
            "127.1.2.3/ck/kubelet:v1",
            "localhost:5000/ck",
            "localhost/ck",
            "[::1]:5000/ck",
        ] {
            assert!(is_loopback(reference), "{reference}");
        }
        for reference in [
            "localhost.example.com/ck",
            "localhostile.io:5000/ck",
            "127.example.com/ck",
            "1270.0.0.1/ck",
            "ghcr.io/127.0.0.1",
            "[::2]:5000/ck",
        ] {
            assert!(!is_loopback(reference), "{reference}");
        }
    }
}
