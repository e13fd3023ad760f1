//! The build context of one image: the rendered Dockerfile and, per platform, a root filesystem
//! overlay with the prebuilt binaries, all with fixed timestamps.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::rules::{self, BinaryKind, Image, IMAGE_CNI_DIR};
use kubelet_upstream::{Arch, Release};

use crate::artifact::ArtifactManifest;
use crate::fsutil;
use crate::layout::Layout;

/// Where the programs go inside the image.
const BIN_DIR: &str = "usr/local/bin";
const INSTALL_CNI: &str = "install-cni";
const IPTABLES_WRAPPER: &str = "iptables-wrapper";
/// Where the kube-proxy image keeps the wrapper (`/usr/sbin/iptables-wrapper`).
const WRAPPER_DIR: &str = "usr/sbin";

/// Whether the image build installs the Alpine packages the host commands come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packages {
    Install,
    /// Only the base's own commands: for hosts that cannot reach Alpine's mirrors.
    Skip,
}

/// Renders a Dockerfile template from `dockerfiles/`: the package step, ENTRYPOINT and CMD
/// depend on the release, and exec-form ENTRYPOINT/CMD cannot take build arguments.
pub fn render_dockerfile(
    template: &str,
    release: &Release,
    image: Image,
    packages: Packages,
) -> String {
    let apk_add = match packages {
        Packages::Install => {
            let list = rules::alpine_packages(image, release.version).join(" ");
            match image {
                Image::KubeProxy => format!(
                    "RUN apk add --no-cache {list} && /usr/sbin/{IPTABLES_WRAPPER} --install"
                ),
                _ => format!("RUN apk add --no-cache {list}"),
            }
        }
        Packages::Skip => {
            "# Alpine packages skipped (--skip-packages): only the base's own commands.".to_owned()
        }
    };
    let (entrypoint, cmd) = image.entrypoint(release.version);
    template
        .replace("# @APK_ADD@", &apk_add)
        .replace(
            "@ENTRYPOINT@",
            &serde_json::to_string(&entrypoint).expect("strings serialize"),
        )
        .replace(
            "@CMD@",
            &serde_json::to_string(&cmd).expect("strings serialize"),
        )
}

/// The context directory of one image of one release.
pub fn context_dir(layout: &Layout, release: &Release, image: Image) -> Utf8PathBuf {
    layout
        .cache()
        .join("images")
        .join(release.version.to_string())
        .join(image.name())
}

/// Writes the context: Dockerfile, and one rootfs overlay per platform from the built binaries.
pub fn prepare(
    layout: &Layout,
    release: &Release,
    image: Image,
    arches: &[Arch],
    packages: Packages,
) -> Result<Utf8PathBuf> {
    let dir = context_dir(layout, release, image);
    let staging = fsutil::staging_dir(&dir)?;
    let root = Utf8Path::from_path(staging.path())
        .context("non-UTF-8 cache path")?
        .to_owned();
    let template_path = layout.dockerfiles().join(image.dockerfile());
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read {template_path}"))?;
    fsutil::write_atomic(
        &root.join("Dockerfile"),
        render_dockerfile(&template, release, image, packages).as_bytes(),
    )?;
    for &arch in arches {
        stage_platform(
            layout,
            release,
            image,
            arch,
            &root.join(format!("rootfs-{}", arch.name())),
        )?;
    }
    for path in fsutil::walk(&root)? {
        set_mtime(&path, release.source_date_epoch)?;
    }
    fsutil::commit_dir(staging, &dir)?;
    Ok(dir)
}

fn stage_platform(
    layout: &Layout,
    release: &Release,
    image: Image,
    arch: Arch,
    rootfs: &Utf8Path,
) -> Result<()> {
    let manifest = ArtifactManifest::load(layout, release, arch)?;
    let built = layout.binaries(release.version, arch);
    for binary in image.binaries(release) {
        let record = manifest.binary(&binary.name).with_context(|| {
            format!(
                "{} for {arch} is missing from the build; run `cargo xtask build {}`",
                binary.name, release.version
            )
        })?;
        let dir = match binary.kind {
            BinaryKind::CniPlugin => IMAGE_CNI_DIR.trim_start_matches('/'),
            _ => BIN_DIR,
        };
        copy_executable(
            &built.join(&record.path),
            &rootfs.join(dir).join(&binary.name),
        )?;
    }
    if image.carries_cni() {
        copy_executable(
            &layout.dockerfiles().join(INSTALL_CNI),
            &rootfs.join(BIN_DIR).join(INSTALL_CNI),
        )?;
    }
    if image == Image::KubeProxy {
        // The package step links iptables and ip6tables to it; the path is the one the
        // wrapper's own --install names.
        copy_executable(
            &layout.dockerfiles().join(IPTABLES_WRAPPER),
            &rootfs.join(WRAPPER_DIR).join(IPTABLES_WRAPPER),
        )?;
    }
    Ok(())
}

fn copy_executable(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to.parent().expect("has a directory"))?;
    std::fs::copy(from, to).with_context(|| format!("cannot copy {from}"))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn set_mtime(path: &Utf8Path, epoch: i64) -> Result<()> {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch.max(0) as u64);
    let file = std::fs::File::options()
        .read(true)
        .open(path)
        .with_context(|| format!("cannot open {path}"))?;
    file.set_modified(time)
        .with_context(|| format!("cannot set the time of {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_upstream::{Manifest, MANIFEST_FILE, MANIFEST_TEXT};

    #[test]
    fn renders_entrypoint_cmd_and_packages_for_the_release() {
        let manifest = Manifest::parse(MANIFEST_TEXT, MANIFEST_FILE).unwrap();
        let release = manifest.release("v1.26.0".parse().unwrap()).unwrap();
        let template = include_str!("../../../dockerfiles/kubelet.Dockerfile");
        let text = render_dockerfile(template, release, Image::KubeletCni, Packages::Install);
        assert!(text.contains("ENTRYPOINT [\"kubelet\"]"));
        assert!(text.contains("\"--container-runtime=remote\""));
        assert!(!text.contains("--network-plugin"));
        assert!(text.contains("RUN apk add --no-cache "));
        assert!(text.contains(" findmnt "));
        assert!(!text.contains('@'), "every placeholder is filled");
        let skipped = render_dockerfile(template, release, Image::KubeletCni, Packages::Skip);
        assert!(!skipped.contains("RUN "));
        let proxy = include_str!("../../../dockerfiles/kube-proxy.Dockerfile");
        let text = render_dockerfile(proxy, release, Image::KubeProxy, Packages::Install);
        assert!(
            text.contains("iptables-legacy") && text.contains("iptables-wrapper --install"),
            "{text}"
        );
        assert!(
            text.find("COPY").unwrap() < text.find("RUN apk").unwrap(),
            "the wrapper is in place before it is linked"
        );
    }
}
