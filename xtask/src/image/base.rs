//! `cargo xtask base`: an Alpine base image built from Alpine's minimal root filesystems, for
//! hosts that cannot pull alpine from a registry. The tarballs are checked against SHA512SUMS.

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use kubelet_upstream::Arch;
use sha2::{Digest, Sha512};
use xshell::Shell;

use super::buildah::Buildah;
use super::skopeo::SkopeoPublisher;
use super::{built_layout, Builder, ImageJob, Publisher, Target};
use crate::context::Context as Cx;
use crate::flags;
use crate::fsutil;
use crate::lock::CacheLock;

const DOCKERFILE: &str = "alpine-minirootfs.Dockerfile";
const SUMS_FILE: &str = "SHA512SUMS";
/// The base's own files keep their dates; only the image config needs a fixed one.
const BASE_EPOCH: i64 = 0;

impl flags::Base {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Cx::load()?;
        let _lock = CacheLock::acquire(&cx.layout)?;
        let context = cx
            .layout
            .cache()
            .join("images")
            .join(format!("alpine-minirootfs-{}", self.alpine));
        let staging = fsutil::staging_dir(&context)?;
        let staged = Utf8Path::from_path(staging.path())
            .context("non-UTF-8 cache path")?
            .to_owned();
        for arch in Arch::ALL {
            let name = format!(
                "alpine-minirootfs-{}-{}.tar.gz",
                self.alpine,
                arch.alpine_arch()
            );
            let tarball = self.minirootfs.join(&name);
            verify_sha512(&self.minirootfs.join(SUMS_FILE), &tarball, &name)?;
            std::fs::copy(
                &tarball,
                staged.join(format!("alpine-minirootfs-{}.tar.gz", arch.name())),
            )
            .with_context(|| format!("cannot copy {tarball}"))?;
        }
        std::fs::copy(
            cx.layout.dockerfiles().join(DOCKERFILE),
            staged.join("Dockerfile"),
        )?;
        fsutil::commit_dir(staging, &context)?;

        let job = ImageJob {
            built: built_layout(&cx.layout, "alpine", &self.alpine),
            repository: "alpine".into(),
            tag: self.alpine.clone(),
            arches: Arch::ALL.to_vec(),
            context,
            build_args: Vec::new(),
            labels: vec![(
                "org.opencontainers.image.version".into(),
                self.alpine.clone(),
            )],
            source_date_epoch: BASE_EPOCH,
        };
        Buildah::new(&cx.layout).build(sh, &job)?;
        let target = Target::new(self.registry.as_deref(), &cx.layout);
        let published = SkopeoPublisher { target }.publish(sh, &job)?;
        println!("{} {}", published.reference, published.digest);
        Ok(())
    }
}

/// Checks `file` against its line in a SHA512SUMS file.
pub fn verify_sha512(sums: &Utf8Path, file: &Utf8Path, name: &str) -> Result<()> {
    let listing = std::fs::read_to_string(sums).with_context(|| format!("cannot read {sums}"))?;
    let expected = listing
        .lines()
        .find_map(|line| {
            let (hash, listed) = line.split_once(char::is_whitespace)?;
            (listed.trim().trim_start_matches('*') == name).then(|| hash.to_owned())
        })
        .with_context(|| format!("{sums} does not list {name}"))?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    let actual = fsutil::hex(&Sha512::digest(&bytes));
    if actual != expected {
        bail!("checksum mismatch for {file}: SHA-512 is {actual}, {sums} says {expected}; download it again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha512_mismatch_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(root.join("a.tar.gz"), b"abc").unwrap();
        let good = fsutil::hex(&Sha512::digest(b"abc"));
        std::fs::write(root.join(SUMS_FILE), format!("{good}  a.tar.gz\n")).unwrap();
        verify_sha512(&root.join(SUMS_FILE), &root.join("a.tar.gz"), "a.tar.gz").unwrap();
        std::fs::write(root.join("a.tar.gz"), b"abd").unwrap();
        let error =
            verify_sha512(&root.join(SUMS_FILE), &root.join("a.tar.gz"), "a.tar.gz").unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
        assert!(verify_sha512(&root.join(SUMS_FILE), &root.join("a.tar.gz"), "b.tar.gz").is_err());
    }
}
