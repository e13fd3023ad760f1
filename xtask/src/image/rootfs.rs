//! Checks inside an image's root filesystem that every command an image needs resolves for its
//! architecture: found on PATH, symlinks followed inside the root, and for a dynamically linked
//! program its loader and every shared library present too.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::Arch;

use crate::{elf, runner};

/// The PATH of the images (Alpine's default), in lookup order.
pub const IMAGE_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
/// Where musl's loader looks for shared libraries.
const LIBRARY_DIRS: [&str; 3] = ["/lib", "/usr/lib", "/usr/local/lib"];
const MAX_SYMLINK_HOPS: usize = 40;
/// Alpine's multi-call shell and utilities, where the base's own commands point.
const BUSYBOX: &str = "/bin/busybox";

/// A command that does not resolve, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub command: String,
    pub why: String,
}

/// Every command in `commands` that does not resolve inside `root` for `arch`.
pub fn unresolved_commands(root: &Utf8Path, arch: Arch, commands: &[&str]) -> Vec<Unresolved> {
    commands
        .iter()
        .filter_map(|&command| {
            let result =
                find_command(root, command).and_then(|path| check_program(root, &path, arch));
            result.err().map(|err| Unresolved {
                command: command.to_owned(),
                why: format!("{err:#}"),
            })
        })
        .collect()
}

fn find_command(root: &Utf8Path, command: &str) -> Result<Utf8PathBuf> {
    for dir in IMAGE_PATH {
        let candidate = format!("{dir}/{command}");
        if let Ok(path) = resolve(root, &candidate) {
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    bail!("not found on {}", IMAGE_PATH.join(":"))
}

/// Follows symlinks the way the image's kernel would, with `root` as `/`.
pub fn resolve(root: &Utf8Path, path: &str) -> Result<Utf8PathBuf> {
    let mut current = path.to_owned();
    for _ in 0..MAX_SYMLINK_HOPS {
        let host = root.join(current.trim_start_matches('/'));
        let Ok(metadata) = std::fs::symlink_metadata(&host) else {
            bail!("{current} does not exist");
        };
        if !metadata.file_type().is_symlink() {
            return Ok(host);
        }
        let target = std::fs::read_link(&host)?;
        let target = target.to_str().context("non-UTF-8 link")?;
        current = if target.starts_with('/') {
            target.to_owned()
        } else {
            let parent = Utf8Path::new(&current)
                .parent()
                .map_or("/".to_owned(), |p| p.to_string());
            normalize(&format!("{parent}/{target}"))
        };
    }
    bail!("{path}: too many levels of symbolic links")
}

/// Removes `.` and `..` without touching the file system, never climbing above `/`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

fn check_program(root: &Utf8Path, path: &Utf8Path, arch: Arch) -> Result<()> {
    let head = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    if head.starts_with(b"#!") {
        let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(&line[2..]).into_owned();
        let interpreter = line.split_whitespace().next().context("empty #! line")?;
        let resolved =
            resolve(root, interpreter).with_context(|| format!("its interpreter {interpreter}"))?;
        return check_program(root, &resolved, arch);
    }
    let info = elf::parse(&head)
        .with_context(|| format!("{path} is neither a script nor an ELF program"))?;
    if info.machine != arch.elf_machine() {
        bail!("{path} is for ELF machine {}, not {arch}", info.machine);
    }
    if let Some(loader) = &info.interpreter {
        resolve(root, loader).with_context(|| format!("its loader {loader} is missing"))?;
    }
    for library in &info.needed {
        let found = LIBRARY_DIRS
            .iter()
            .any(|dir| resolve(root, &format!("{dir}/{library}")).is_ok());
        if !found {
            bail!(
                "its shared library {library} is missing from {}",
                LIBRARY_DIRS.join(", ")
            );
        }
    }
    Ok(())
}

/// The base's busybox has the applet and runs it on the platform. Busybox decides the applet
/// from its first argument as from its name, and `--help` is the one call every applet answers
/// without touching the system.
pub fn check_busybox_applet(root: &Utf8Path, arch: Arch, applet: &str) -> Result<()> {
    let busybox = resolve(root, BUSYBOX).context("the base has no busybox")?;
    let head = std::fs::read(&busybox).with_context(|| format!("cannot read {busybox}"))?;
    let info = elf::parse(&head).with_context(|| format!("{busybox} is not an ELF program"))?;
    // Alpine's busybox is linked against musl: the image's own loader runs it, since the build
    // host has none at that path.
    let output = match &info.interpreter {
        Some(loader) => {
            let loader = resolve(root, loader)
                .with_context(|| format!("busybox's loader {loader} is missing"))?;
            runner::run(&loader, arch, &[busybox.as_str(), applet, "--help"], &[])?
        }
        None => runner::run(&busybox, arch, &[applet, "--help"], &[])?,
    };
    if !output.text.contains(&format!("Usage: {applet}")) {
        bail!(
            "busybox for {arch} has no `{applet}` applet: {}",
            output.text.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_symlinks_inside_the_root() {
        let temp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(temp.path()).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        std::fs::write(root.join("bin/busybox"), b"x").unwrap();
        symlink("/bin/busybox", root.join("bin/mount")).unwrap();
        symlink("../bin/mount", root.join("sbin/losetup")).unwrap();
        assert_eq!(
            resolve(root, "/bin/mount").unwrap(),
            root.join("bin/busybox")
        );
        assert_eq!(
            resolve(root, "/sbin/losetup").unwrap(),
            root.join("bin/busybox")
        );
        assert!(resolve(root, "/bin/missing").is_err());
        symlink("/bin/loop", root.join("bin/loop")).unwrap();
        assert!(resolve(root, "/bin/loop")
            .unwrap_err()
            .to_string()
            .contains("too many levels"));
    }

    #[test]
    fn normalizes_without_escaping_the_root() {
        assert_eq!(normalize("/usr/bin/../../../etc/x"), "/etc/x");
        assert_eq!(normalize("/a/./b//c"), "/a/b/c");
    }

    /// Alpine's real busybox, from the fixture minirootfs beside the clone, run through the
    /// image's own musl loader.
    #[test]
    fn busybox_applets_run_through_the_images_loader() {
        let tarball = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../shared/fixtures/alpine-minirootfs-3.20.3/alpine-minirootfs-3.20.3-x86_64.tar.gz",
        );
        let temp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(temp.path()).unwrap();
        let file = std::fs::File::open(&tarball)
            .unwrap_or_else(|e| panic!("{tarball} (../shared beside the clone): {e}"));
        tar::Archive::new(flate2::read::GzDecoder::new(file))
            .unpack(root)
            .unwrap();
        for applet in ["nsenter", "ip", "modprobe"] {
            check_busybox_applet(root, Arch::Amd64, applet).unwrap();
        }
        let missing = check_busybox_applet(root, Arch::Amd64, "conntrack").unwrap_err();
        assert!(
            format!("{missing:#}").contains("no `conntrack` applet"),
            "{missing:#}"
        );
    }

    #[test]
    fn reports_missing_commands() {
        let temp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(temp.path()).unwrap();
        let missing = unresolved_commands(root, Arch::Arm64, &["findmnt"]);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].why.contains("not found"), "{missing:?}");
    }
}
