//! zig as the musl C cross compiler for cgo, as cargo-zigbuild does it: a pinned zig from the
//! `ziglang` wheel, and one wrapper program per target so the compiler always sees its target,
//! whatever Go and cgo pass on the way.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::Arch;
use xshell::{cmd, Shell};

use crate::flags::ZigCc;
use crate::fsutil;
use crate::layout::Layout;

/// The pinned zig, from PyPI's `ziglang` wheels, verified by their SHA-256.
pub const ZIG_VERSION: &str = "0.17.1";
const ZIG_WHEEL_SHA256: [&str; 2] = [
    // manylinux x86_64
    "ea6cc5d87b033cf0aedfbc8f9549a908cae6c50ac31f1698188fa48a74524b54",
    // manylinux aarch64
    "b7c5f02fccd40f89b999ee16a1f5ddced56e6182370f8affe494bcf8a28cf07e",
];
/// Use this zig instead of the provisioned one (it must be ZIG_VERSION).
pub const ZIG_ENV: &str = "XTASK_ZIG";
/// The xtask executable the wrappers run; tests point it at the built `xtask` binary.
pub const SELF_ENV: &str = "XTASK_SELF";

/// What the wrapper reports when Go asks whether its ARM external linker is gold.
pub const GOLD_PROBE_ANSWER: &str = "GNU gold (zig ld.lld, standing in for gold) 1.16";

/// What the wrapper does with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZigCcCall {
    /// Run zig with these arguments.
    Run(Vec<String>),
    /// Print [`GOLD_PROBE_ANSWER`] and succeed, without running zig.
    AnswerGoldProbe,
}

/// Decides what `zig cc` receives for one target. Pure, so every quirk has a unit test.
///
/// - A `-target` from the caller is dropped: the wrapper's target is the only one, so a flag
///   passed through CGO_CFLAGS or a parent build can never retarget a compile.
/// - `-Wl,--compress-debug-sections=…` is dropped: the binaries are stripped, and some zig
///   releases reject the flag as an unsupported linker argument.
/// - `-fuse-ld=…` is dropped: zig always links with its own lld.
/// - Go refuses to link arm and arm64 programs that can load plugins (kubeadm does) unless the
///   external linker is gold, because GNU ld's COPY relocations break them (Go issue 15696).
///   lld has no such bug, so the probe `-fuse-ld=gold -Wl,--version` is answered as gold.
pub fn zig_cc_call(target: &str, args: &[String]) -> ZigCcCall {
    let probes_gold =
        args.iter().any(|a| a == "-fuse-ld=gold") && args.iter().any(|a| a == "-Wl,--version");
    if probes_gold {
        return ZigCcCall::AnswerGoldProbe;
    }
    let mut out = vec!["cc".to_owned(), "-target".to_owned(), target.to_owned()];
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-target" | "--target" => {
                iter.next();
            }
            a if a.starts_with("--target=") || a.starts_with("-target=") => {}
            a if a.starts_with("-Wl,--compress-debug-sections") => {}
            a if a.starts_with("-fuse-ld=") => {}
            _ => out.push(arg.clone()),
        }
    }
    ZigCcCall::Run(out)
}

impl ZigCc {
    /// Runs as the wrapper: replaces this process with zig.
    pub fn run(self, _sh: &Shell) -> Result<()> {
        match zig_cc_call(&self.target, &self.args) {
            ZigCcCall::AnswerGoldProbe => {
                println!("{GOLD_PROBE_ANSWER}");
                Ok(())
            }
            ZigCcCall::Run(args) => {
                let error = std::process::Command::new(&self.zig).args(&args).exec();
                bail!("cannot run {}: {error}", self.zig)
            }
        }
    }
}

/// The zig binary: `XTASK_ZIG`, or the pinned wheel unpacked into the cache.
pub fn provision(sh: &Shell, layout: &Layout) -> Result<Utf8PathBuf> {
    if let Ok(zig) = std::env::var(ZIG_ENV) {
        if !zig.is_empty() {
            return Ok(Utf8PathBuf::from(zig));
        }
    }
    let dir = layout.toolchains().join(format!("zig-{ZIG_VERSION}"));
    let zig = dir.join("ziglang/zig");
    if zig.exists() {
        return Ok(zig);
    }
    let _lock = crate::lock::CacheLock::tools(layout)?;
    if zig.exists() {
        return Ok(zig);
    }
    eprintln!("    provisioning zig {ZIG_VERSION} from the ziglang wheel (PyPI)");
    let staging = fsutil::staging_dir(&dir)?;
    let staging_path = Utf8Path::from_path(staging.path())
        .context("non-UTF-8 cache path")?
        .to_owned();
    let hashes: Vec<String> = ZIG_WHEEL_SHA256
        .iter()
        .map(|h| format!("--hash=sha256:{h}"))
        .collect();
    let requirements = staging_path.join("requirements.txt");
    fsutil::write_atomic(
        &requirements,
        format!("ziglang=={ZIG_VERSION} {}\n", hashes.join(" ")).as_bytes(),
    )?;
    let python = which::which("python3").map_err(|_| anyhow::anyhow!("no python3 on PATH: zig is provisioned with pip; install python3 and pip, or set {ZIG_ENV}=/path/to/zig {ZIG_VERSION}"))?;
    cmd!(sh, "{python} -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --only-binary=:all: --require-hashes -r {requirements} --target {staging_path}")
        .quiet()
        .run()
        .with_context(|| format!("cannot install ziglang {ZIG_VERSION} with pip; check that PyPI is reachable, or set {ZIG_ENV}"))?;
    let staged_zig = staging_path.join("ziglang/zig");
    let mut permissions = std::fs::metadata(&staged_zig)
        .with_context(|| format!("the wheel has no {staged_zig}"))?
        .permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(&staged_zig, permissions)?;
    let version = cmd!(sh, "{staged_zig} version")
        .read()
        .context("the provisioned zig does not run")?;
    if version.trim() != ZIG_VERSION {
        bail!("the ziglang wheel carries zig {version}, not {ZIG_VERSION}");
    }
    fsutil::commit_dir(staging, &dir)?;
    Ok(zig)
}

/// Writes the per-target wrapper scripts, each running a copy of this xtask as `zig-cc`.
pub fn write_wrappers(layout: &Layout, zig: &Utf8Path, arches: &[Arch]) -> Result<()> {
    let driver = layout.toolchains().join("zig-cc/xtask-zig-cc");
    let exe = match std::env::var_os(SELF_ENV) {
        Some(path) => std::path::PathBuf::from(path),
        None => std::env::current_exe().context("cannot locate the running xtask")?,
    };
    let current = std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    if std::fs::read(&driver).ok().as_deref() != Some(current.as_slice()) {
        fsutil::write_atomic(&driver, &current)?;
        std::fs::set_permissions(&driver, std::fs::Permissions::from_mode(0o755))?;
    }
    let cache = layout.zig_cache();
    for &arch in arches {
        let wrapper = layout.zig_cc_wrapper(arch);
        let script = format!(
            "#!/bin/sh\n# zig cc for {target}, written by cargo xtask: the target never depends on what the caller passes.\nZIG_GLOBAL_CACHE_DIR='{cache}' ZIG_LOCAL_CACHE_DIR='{cache}' exec '{driver}' zig-cc --zig '{zig}' --target {target} -- \"$@\"\n",
            target = arch.musl_target(),
        );
        if std::fs::read_to_string(&wrapper).ok().as_deref() != Some(script.as_str()) {
            fsutil::write_atomic(&wrapper, script.as_bytes())?;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// `ar` and `ranlib` for C builds that archive objects (autotools' AR and RANLIB): zig's own,
/// which read every target's objects.
pub struct Archivers {
    pub ar: Utf8PathBuf,
    pub ranlib: Utf8PathBuf,
}

pub fn write_archiver_wrappers(layout: &Layout, zig: &Utf8Path) -> Result<Archivers> {
    let dir = layout.toolchains().join("zig-cc");
    let cache = layout.zig_cache();
    let mut paths = Vec::new();
    for tool in ["ar", "ranlib"] {
        let wrapper = dir.join(format!("zig-{tool}"));
        let script = format!(
            "#!/bin/sh\n# zig {tool}, written by cargo xtask.\nZIG_GLOBAL_CACHE_DIR='{cache}' ZIG_LOCAL_CACHE_DIR='{cache}' exec '{zig}' {tool} \"$@\"\n"
        );
        if std::fs::read_to_string(&wrapper).ok().as_deref() != Some(script.as_str()) {
            fsutil::write_atomic(&wrapper, script.as_bytes())?;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        }
        paths.push(wrapper);
    }
    let ranlib = paths.pop().expect("two wrappers");
    let ar = paths.pop().expect("two wrappers");
    Ok(Archivers { ar, ranlib })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn zig_cc_args(target: &str, list: &[String]) -> Vec<String> {
        match zig_cc_call(target, list) {
            ZigCcCall::Run(args) => args,
            other => panic!("expected a zig run, got {other:?}"),
        }
    }

    #[test]
    fn answers_gos_gold_probe_and_drops_fuse_ld() {
        let probe = args(&["-fPIC", "-fuse-ld=gold", "-Wl,--version"]);
        assert_eq!(
            zig_cc_call("aarch64-linux-musl", &probe),
            ZigCcCall::AnswerGoldProbe
        );
        assert!(
            GOLD_PROBE_ANSWER.contains("GNU gold"),
            "Go looks for this string"
        );
        let link = args(&["-fuse-ld=gold", "-o", "kubeadm", "go.o"]);
        assert_eq!(
            zig_cc_args("aarch64-linux-musl", &link),
            args(&[
                "cc",
                "-target",
                "aarch64-linux-musl",
                "-o",
                "kubeadm",
                "go.o"
            ])
        );
    }

    #[test]
    fn always_leads_with_our_target() {
        let out = zig_cc_args("aarch64-linux-musl", &args(&["-c", "x.c", "-o", "x.o"]));
        assert_eq!(
            out,
            args(&[
                "cc",
                "-target",
                "aarch64-linux-musl",
                "-c",
                "x.c",
                "-o",
                "x.o"
            ])
        );
    }

    #[test]
    fn drops_a_callers_target_in_every_spelling() {
        let out = zig_cc_args(
            "arm-linux-musleabihf",
            &args(&[
                "-target",
                "x86_64-linux-gnu",
                "--target=x86_64-linux-gnu",
                "-target=i386",
                "-marm",
                "-c",
                "y.c",
            ]),
        );
        assert_eq!(
            out,
            args(&[
                "cc",
                "-target",
                "arm-linux-musleabihf",
                "-marm",
                "-c",
                "y.c"
            ])
        );
    }

    #[test]
    fn drops_debug_section_compression() {
        let out = zig_cc_args(
            "x86_64-linux-musl",
            &args(&["-Wl,--compress-debug-sections=zlib", "-Wl,--build-id=0xabc"]),
        );
        assert_eq!(
            out,
            args(&["cc", "-target", "x86_64-linux-musl", "-Wl,--build-id=0xabc"])
        );
    }

    #[test]
    fn keeps_what_go_passes_for_cgo() {
        let go_link = args(&[
            "-fPIC",
            "-marm",
            "-pthread",
            "-Qunused-arguments",
            "-Wl,--no-gc-sections",
            "-static",
            "-s",
            "-o",
            "out",
        ]);
        let out = zig_cc_args("arm-linux-musleabihf", &go_link);
        assert_eq!(&out[3..], go_link.as_slice());
    }
}
