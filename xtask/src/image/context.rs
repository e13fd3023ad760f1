//! The build context of one image: the rendered Dockerfile and, per platform, a root filesystem
//! overlay with the prebuilt binaries, all with fixed timestamps.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::hostcommands::{
    self, IPTABLES_WRAPPED, IPTABLES_WRAPPED_DIR, IPTABLES_WRAPPER_PATH,
};
use kubelet_upstream::rules::{BinaryKind, Image, IMAGE_CNI_DIR};
use kubelet_upstream::{Arch, Release};
use xshell::Shell;

use crate::artifact::ArtifactManifest;
use crate::fsutil;
use crate::hosttools;
use crate::layout::Layout;

/// Where the programs go inside the image.
const BIN_DIR: &str = "usr/local/bin";
const INSTALL_CNI: &str = "install-cni";
/// The wrapper's file in `dockerfiles/`.
const IPTABLES_WRAPPER: &str = "iptables-wrapper";

/// Renders a Dockerfile template from `dockerfiles/`: ENTRYPOINT and CMD depend on the release,
/// and exec-form ENTRYPOINT/CMD cannot take build arguments.
pub fn render_dockerfile(template: &str, release: &Release, image: Image) -> String {
    let (entrypoint, cmd) = image.entrypoint(release.version);
    template
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

/// Writes the context: Dockerfile, and one rootfs overlay per platform from the built binaries
/// and the host tools the image needs (built here first if they are not yet).
pub fn prepare(
    sh: &Shell,
    layout: &Layout,
    release: &Release,
    image: Image,
    arches: &[Arch],
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
        render_dockerfile(&template, release, image).as_bytes(),
    )?;
    for &arch in arches {
        let rootfs = root.join(format!("rootfs-{}", arch.name()));
        stage_platform(layout, release, image, arch, &rootfs)?;
        stage_host_tools(sh, layout, release, image, arch, &rootfs)?;
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
    Ok(())
}

/// The host tool programs the image's commands need, with their links, and the iptables
/// wrapper linked as the commands it stands for.
fn stage_host_tools(
    sh: &Shell,
    layout: &Layout,
    release: &Release,
    image: Image,
    arch: Arch,
    rootfs: &Utf8Path,
) -> Result<()> {
    for (tool, program) in hostcommands::tool_programs(image, release.version) {
        let tree = hosttools::build_tool(sh, layout, tool, arch)?;
        let to = rootfs.join(program.installed);
        copy_executable(&tree.join(program.installed), &to)?;
        let dir = to.parent().expect("has a directory");
        for link in program.links {
            symlink(program.file_name(), &dir.join(link))?;
        }
    }
    if hostcommands::needs_iptables_wrapper(image, release.version) {
        copy_executable(
            &layout.dockerfiles().join(IPTABLES_WRAPPER),
            &rootfs.join(IPTABLES_WRAPPER_PATH),
        )?;
        let dir = rootfs.join(IPTABLES_WRAPPED_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
        for command in IPTABLES_WRAPPED {
            symlink(&format!("/{IPTABLES_WRAPPER_PATH}"), &dir.join(command))?;
        }
    }
    Ok(())
}

fn symlink(target: &str, link: &Utf8Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link {link} to {target}"))
}

fn copy_executable(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to.parent().expect("has a directory"))?;
    std::fs::copy(from, to).with_context(|| format!("cannot copy {from}"))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Sets the time of the entry itself: a symlink's own, never its target's, which may lie
/// outside the context (the wrapper links are absolute).
fn set_mtime(path: &Utf8Path, epoch: i64) -> Result<()> {
    let time = filetime::FileTime::from_unix_time(epoch.max(0), 0);
    filetime::set_symlink_file_times(path, time, time)
        .with_context(|| format!("cannot set the time of {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_upstream::{Manifest, MANIFEST_FILE, MANIFEST_TEXT};

    #[test]
    fn renders_entrypoint_and_cmd_and_runs_nothing() {
        let manifest = Manifest::parse(MANIFEST_TEXT, MANIFEST_FILE).unwrap();
        let release = manifest.release("v1.26.0".parse().unwrap()).unwrap();
        for (template, image) in [
            (
                include_str!("../../../dockerfiles/kubelet.Dockerfile"),
                Image::KubeletCni,
            ),
            (
                include_str!("../../../dockerfiles/kube-proxy.Dockerfile"),
                Image::KubeProxy,
            ),
        ] {
            let text = render_dockerfile(template, release, image);
            assert!(!text.contains('@'), "every placeholder is filled: {text}");
            let steps: Vec<&str> = text
                .lines()
                .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
                .filter_map(|line| line.split_whitespace().next())
                .collect();
            assert_eq!(
                steps,
                ["ARG", "FROM", "ARG", "ARG", "COPY", "ENTRYPOINT", "CMD"],
                "no step runs a program of the image's architecture"
            );
        }
        let text = render_dockerfile(
            include_str!("../../../dockerfiles/kubelet.Dockerfile"),
            release,
            Image::KubeletCni,
        );
        assert!(text.contains("ENTRYPOINT [\"kubelet\"]"));
        assert!(text.contains("\"--container-runtime=remote\""));
        assert!(!text.contains("--network-plugin"));
    }
}
