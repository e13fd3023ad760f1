//! The buildah backend, for hosts without a Docker engine: builds each platform on its own (vfs
//! storage under target/, chroot isolation), assembles a manifest list in platform order, and
//! writes the list with all its images to the job's OCI layout, as buildx does.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::Arch;
use xshell::{cmd, Shell};

use super::{is_loopback, Builder, ImageJob};
use crate::fsutil;
use crate::layout::Layout;

#[derive(Debug, Clone)]
pub struct Buildah {
    root: Utf8PathBuf,
    runroot: Utf8PathBuf,
}

impl Buildah {
    pub fn new(layout: &Layout) -> Buildah {
        let base = layout.cache().join("buildah");
        Buildah {
            root: base.join("root"),
            runroot: base.join("run"),
        }
    }

    /// Storage options every buildah call shares: one store under target/, vfs so no
    /// overlay support or privileges beyond root are needed.
    fn global(&self) -> Vec<String> {
        vec![
            format!("--root={}", self.root),
            format!("--runroot={}", self.runroot),
            "--storage-driver=vfs".to_owned(),
        ]
    }

    /// The local name of one platform's image and of the image's manifest list.
    fn platform_name(job: &ImageJob, arch: Arch) -> String {
        format!(
            "localhost/ck/{}:{}-{}",
            job.repository,
            job.tag,
            arch.name()
        )
    }

    fn list_name(job: &ImageJob) -> String {
        format!("localhost/ck/{}:{}", job.repository, job.tag)
    }

    /// `--build-arg`, `--label` and, for a base image on this machine, no TLS.
    fn build_args(job: &ImageJob) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        for (key, value) in &job.build_args {
            args.push(format!("--build-arg={key}={value}"));
            if key == "BASE_IMAGE" && is_loopback(value) {
                args.push("--tls-verify=false".to_owned());
            }
        }
        for (key, value) in &job.labels {
            args.push(format!("--label={key}={value}"));
        }
        args
    }

    fn build_platform(&self, sh: &Shell, job: &ImageJob, arch: Arch) -> Result<()> {
        let global = &self.global();
        let name = Self::platform_name(job, arch);
        let list = Self::list_name(job);
        let platform = arch.platform();
        let timestamp = job.source_date_epoch.to_string();
        let args = Self::build_args(job);
        let dockerfile = job.context.join("Dockerfile");
        let context = &job.context;
        eprintln!("    buildah: {} {platform}", job.reference());
        cmd!(sh, "buildah {global...} build --quiet --isolation=chroot --platform={platform} --timestamp={timestamp} {args...} --file={dockerfile} --tag={name} {context}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("buildah could not build {} for {platform}", job.reference()))?;
        cmd!(
            sh,
            "buildah {global...} manifest add {list} containers-storage:{name}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("cannot add {platform} to the manifest list"))
    }

    /// Writes the list and every image in it to an OCI layout directory.
    fn write_layout(&self, sh: &Shell, job: &ImageJob, dir: &Utf8Path) -> Result<()> {
        let global = &self.global();
        let list = Self::list_name(job);
        cmd!(
            sh,
            "buildah {global...} manifest push --all --quiet {list} oci:{dir}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| {
            format!(
                "buildah could not write {} as an OCI layout",
                job.reference()
            )
        })?;
        if !dir.join("index.json").exists() {
            bail!(
                "buildah wrote no OCI layout for {} into {dir}; run again with a newer buildah",
                job.reference()
            );
        }
        Ok(())
    }
}

impl Builder for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }

    fn build(&self, sh: &Shell, job: &ImageJob) -> Result<()> {
        let global = &self.global();
        let list = Self::list_name(job);
        // A list from an earlier run would keep its old entries: start from an empty one.
        cmd!(sh, "buildah {global...} manifest rm {list}")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .ignore_stdout()
            .run()?;
        cmd!(sh, "buildah {global...} manifest create {list}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("cannot create a manifest list with buildah")?;
        for (position, &arch) in job.arches.iter().enumerate() {
            self.build_platform(sh, job, arch)?;
            if position == 0 {
                crate::pause::point("image-build");
            }
        }
        let staging = fsutil::staging_dir(&job.built)?;
        let staged = Utf8Path::from_path(staging.path())
            .context("non-UTF-8 cache path")?
            .to_owned();
        self.write_layout(sh, job, &staged)?;
        fsutil::commit_dir(staging, &job.built)
    }

    fn sweep(&self, sh: &Shell) -> Result<()> {
        // The store is ours alone and the cache lock is held: any container in it is a
        // working container that a killed run never removed.
        let global = &self.global();
        cmd!(sh, "buildah {global...} rm --all")
            .quiet()
            .ignore_stdout()
            .run()
            .context("cannot remove the containers an interrupted run left in the buildah store")
    }
}
