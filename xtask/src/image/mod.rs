//! `cargo xtask image`: stage the built binaries of each platform, build every image with a
//! builder backend, check what is inside, and publish each as a multi-arch index.
//!
//! As in ko, building and publishing are two small interfaces with one backend per file.

pub mod base;
pub mod buildah;
pub mod buildx;
pub mod context;
pub mod oci;
pub mod rootfs;
pub mod skopeo;

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;
use kubelet_upstream::rules::{self, Image};
use kubelet_upstream::{Arch, Release};
use xshell::Shell;

use crate::compile;
use crate::context::Context as Cx;
use crate::flags::{self, BuilderKind, ImageArgs};
use crate::layout::Layout;
use crate::lock::CacheLock;
use crate::runner;
use buildah::{Buildah, BuildahPublisher};
use buildx::Buildx;
use context::Packages;
use skopeo::SkopeoPublisher;

/// One image of one release, for every platform, as the backends see it.
pub struct ImageJob {
    pub repository: String,
    pub tag: String,
    pub arches: Vec<Arch>,
    pub context: Utf8PathBuf,
    pub build_args: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub source_date_epoch: i64,
}

impl ImageJob {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// A root filesystem opened for checks; the cleanup commands run when it is dropped.
pub struct MountedRoot {
    pub path: Utf8PathBuf,
    pub cleanup: Vec<Vec<String>>,
    /// Where the layers were unpacked, for builders whose images are files, not mounts.
    pub unpacked: Option<tempfile::TempDir>,
}

impl Drop for MountedRoot {
    fn drop(&mut self) {
        for command in &self.cleanup {
            if let Some((program, args)) = command.split_first() {
                let _ = duct::cmd(program, args)
                    .stdout_null()
                    .stderr_null()
                    .unchecked()
                    .run();
            }
        }
    }
}

pub trait Builder {
    fn name(&self) -> &'static str;
    /// Builds every platform of the job, in its order, into one local index.
    fn build(&self, sh: &Shell, job: &ImageJob) -> Result<()>;
    /// Opens one platform's root filesystem.
    fn mount(&self, sh: &Shell, job: &ImageJob, arch: Arch) -> Result<MountedRoot>;
    /// Clears what an interrupted run left in the builder's store.
    fn sweep(&self, sh: &Shell) -> Result<()>;
}

/// Where published images go: a registry, or the OCI layout under target/.
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

    /// Where a job's index goes, as buildah and skopeo spell it.
    pub fn destination(&self, job: &ImageJob) -> String {
        match self {
            Target::Registry { prefix } => {
                format!("docker://{prefix}/{}:{}", job.repository, job.tag)
            }
            Target::OciLayout { dir } => format!("oci:{dir}:{}", buildah::oci_ref_name(job)),
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
}

/// The file a push tool writes the pushed index's digest to (`--digestfile`).
pub struct DigestFile {
    file: tempfile::NamedTempFile,
    pub path: String,
}

impl DigestFile {
    pub fn new() -> Result<DigestFile> {
        let file = tempfile::NamedTempFile::new().context("cannot create a digest file")?;
        let path = file
            .path()
            .to_str()
            .context("non-UTF-8 temp path")?
            .to_owned();
        Ok(DigestFile { file, path })
    }

    /// The digest written, or an empty string when the tool wrote none.
    pub fn digest(&self) -> String {
        std::fs::read_to_string(self.file.path())
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

/// Where a built index goes, and what it was pushed as.
pub struct Published {
    pub reference: String,
    pub digest: String,
}

pub trait Publisher {
    fn destination(&self, job: &ImageJob) -> String;
    fn publish(&self, sh: &Shell, job: &ImageJob) -> Result<Published>;
}

/// Registries on this machine speak plain HTTP: TLS verification is off for them alone.
pub fn is_loopback(reference: &str) -> bool {
    let host = reference.split('/').next().unwrap_or_default();
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
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
pub fn base_image(release: &Release, args: &ImageArgs) -> String {
    match &args.base_image {
        Some(base) => base.clone(),
        None => format!(
            "docker.io/library/alpine:{}@{}",
            release.alpine, release.alpine_digest
        ),
    }
}

pub struct ImageOptions {
    pub arches: Vec<Arch>,
    pub images: Vec<Image>,
    pub packages: Packages,
    /// The builder, chosen and checked once, before a release spends its time compiling.
    pub builder: BuilderKind,
    pub args: ImageArgs,
}

impl flags::Image {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Cx::load()?;
        let releases = cx.releases(&self.versions)?;
        let options = ImageOptions::new(sh, &self.image, self.arches.selected())?;
        let _lock = CacheLock::acquire(&cx.layout)?;
        for release in releases {
            for published in build_images(sh, &cx.layout, release, &options)? {
                println!("{} {}", published.reference, published.digest);
            }
        }
        Ok(())
    }
}

impl ImageOptions {
    /// The options the flags ask for, with the image builder chosen and checked to be usable.
    pub fn new(sh: &Shell, args: &ImageArgs, arches: Vec<Arch>) -> Result<ImageOptions> {
        let images = if args.images.is_empty() {
            Image::ALL.to_vec()
        } else {
            args.images
                .iter()
                .map(|name| {
                    Image::from_name(name).with_context(|| {
                        let known: Vec<&str> = Image::ALL.iter().map(|i| i.name()).collect();
                        format!(
                            "unknown image `{name}`; expected one of {}",
                            known.join(", ")
                        )
                    })
                })
                .collect::<Result<_>>()?
        };
        let packages = if args.skip_packages {
            Packages::Skip
        } else {
            Packages::Install
        };
        let builder = choose_builder(sh, args.builder, args.buildx_builder.as_deref())?;
        check_emulation(&arches, packages)?;
        Ok(ImageOptions {
            arches,
            images,
            packages,
            builder,
            args: args.clone(),
        })
    }
}

/// Builds, checks and publishes the images of one release from its built binaries.
pub fn build_images(
    sh: &Shell,
    layout: &Layout,
    release: &Release,
    options: &ImageOptions,
) -> Result<Vec<Published>> {
    let (builder, publisher) = backends(layout, options);
    let base = base_image(release, &options.args);
    eprintln!("==> images of {} from {base}", release.version);
    builder.sweep(sh)?;
    let mut published = Vec::new();
    for &image in &options.images {
        let context = context::prepare(layout, release, image, &options.arches, options.packages)?;
        let job = ImageJob {
            repository: image.repository().to_owned(),
            tag: image.tag(release),
            arches: options.arches.clone(),
            context,
            build_args: vec![("BASE_IMAGE".into(), base.clone())],
            labels: labels(release),
            source_date_epoch: release.source_date_epoch,
        };
        builder.build(sh, &job)?;
        for &arch in &job.arches {
            check_platform(
                sh,
                builder.as_ref(),
                &job,
                image,
                release,
                arch,
                options.packages,
            )?;
        }
        let result = publisher.publish(sh, &job)?;
        eprintln!("    published {} {}", result.reference, result.digest);
        published.push(result);
        if published.len() == 1 {
            crate::pause::point("push");
        }
    }
    Ok(published)
}

/// The builder and publisher of the options' builder kind.
fn backends(layout: &Layout, options: &ImageOptions) -> (Box<dyn Builder>, Box<dyn Publisher>) {
    let target = Target::new(options.args.registry.as_deref(), layout);
    match options.builder {
        BuilderKind::Buildah => {
            let store = Buildah::new(layout);
            (
                Box::new(store.clone()),
                Box::new(BuildahPublisher { store, target }),
            )
        }
        BuilderKind::Buildx => {
            let buildx = Buildx::new(layout, options.args.buildx_builder.clone());
            (
                Box::new(buildx.clone()),
                Box::new(SkopeoPublisher {
                    source: buildx,
                    target,
                }),
            )
        }
    }
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
            skopeo_present()?;
            Ok(BuilderKind::Buildx)
        }
        None if buildx::check_available(sh, buildx_builder).is_ok() => {
            skopeo_present()?;
            Ok(BuilderKind::Buildx)
        }
        None => buildah(),
    }
}

fn skopeo_present() -> Result<()> {
    which::which("skopeo").map_err(|_| {
        anyhow::anyhow!(
            "the buildx builder publishes with skopeo, which is missing: `apt-get install skopeo`"
        )
    })?;
    Ok(())
}

/// Foreign-architecture `RUN` steps (the package step) need qemu registered with binfmt_misc.
fn check_emulation(arches: &[Arch], packages: Packages) -> Result<()> {
    if packages == Packages::Skip {
        return Ok(());
    }
    let binfmt = std::path::Path::new("/proc/sys/fs/binfmt_misc");
    for &arch in arches {
        if Arch::host() == Some(arch) {
            continue;
        }
        let name = arch.qemu_user().trim_end_matches("-static");
        if !binfmt.join(name).exists() {
            bail!(
                "installing Alpine packages into the {arch} image runs {arch} programs, which needs {name} registered with binfmt_misc: run `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc` and register /usr/lib/binfmt.d/{name}.conf (or `docker run --privileged --rm tonistiigi/binfmt --install all`), or pass --skip-packages"
            );
        }
    }
    Ok(())
}

/// Every host command resolves inside the image, and the main program runs from it.
fn check_platform(
    sh: &Shell,
    builder: &dyn Builder,
    job: &ImageJob,
    image: Image,
    release: &Release,
    arch: Arch,
    packages: Packages,
) -> Result<()> {
    let root = builder.mount(sh, job, arch)?;
    let commands: Vec<&str> = rules::host_commands(image, release.version)
        .iter()
        .map(|c| c.command)
        .collect();
    let unresolved = rootfs::unresolved_commands(&root.path, arch, &commands);
    if !unresolved.is_empty() {
        let list: Vec<String> = unresolved
            .iter()
            .map(|u| format!("{} ({})", u.command, u.why))
            .collect();
        match packages {
            Packages::Install => bail!(
                "{} for {arch}: host commands do not resolve: {}",
                job.reference(),
                list.join("; ")
            ),
            Packages::Skip => eprintln!(
                "    note: {} {arch} without packages lacks: {}",
                job.reference(),
                list.join(", ")
            ),
        }
    }
    let program = if image == Image::KubeProxy {
        "kube-proxy"
    } else {
        "kubelet"
    };
    let binary = root.path.join("usr/local/bin").join(program);
    let output = runner::run(&binary, arch, &["--version"], &[])?;
    let expected = format!("Kubernetes {}", release.version);
    if !output.success || !output.text.contains(&expected) {
        bail!(
            "{program} in {} for {arch} does not print `{expected}`: {}",
            job.reference(),
            output.text.trim()
        );
    }
    Ok(())
}
