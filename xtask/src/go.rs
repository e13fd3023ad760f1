//! The Go toolchain: which release builds a Kubernetes version, and the environment every go
//! command runs in, so caches stay under `target/` and builds never reach the network.

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;
use kubelet_upstream::{GoVersion, Release};
use xshell::{cmd, Shell};

use crate::layout::Layout;

/// Toolchain download and `GOTOOLCHAIN` need this go command or newer on PATH.
pub const MIN_HOST_GO: GoVersion = GoVersion::FIRST_WITH_TOOLCHAIN_SWITCH;

/// The Go a release is compiled with, and why that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pub version: GoVersion,
    pub why: String,
}

impl Toolchain {
    pub fn for_release(release: &Release) -> Toolchain {
        let version = release.toolchain();
        let why = match &release.build_go {
            Some((_, reason)) => format!(
                "upstream built {} with go{}, but {reason}",
                release.version, release.go
            ),
            None if version < GoVersion::FIRST_WITH_TOOLCHAIN_SWITCH => format!(
                "upstream built {} with it; it predates GOTOOLCHAIN, so the host go (go{MIN_HOST_GO} or newer) downloads it from the module proxy as golang.org/toolchain, and builds run its own go binary",
                release.version
            ),
            None => format!("upstream built {} with it", release.version),
        };
        Toolchain { version, why }
    }
}

/// Whether a go command may download (fetch) or must work from the cache alone (build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Allowed,
    Offline,
}

/// The environment of every go command the xtask runs. Host settings such as a user's
/// go.env, GOFLAGS or a workspace file would make builds differ between machines.
///
/// Fetching runs the host go, which switches to the release's toolchain (and downloads it);
/// building runs that toolchain's own go directly (see [`go_command`]), so an offline build
/// never asks the checksum database about the toolchain.
pub fn go_env(layout: &Layout, toolchain: &Toolchain, network: Network) -> Vec<(String, String)> {
    let switch = match network {
        Network::Allowed => toolchain.version.toolchain_name(),
        Network::Offline => "local".to_owned(),
    };
    let mut env = vec![
        ("GOTOOLCHAIN".to_owned(), switch),
        ("GOMODCACHE".to_owned(), layout.gomodcache().to_string()),
        ("GOCACHE".to_owned(), layout.gocache().to_string()),
        ("GOFLAGS".to_owned(), "-modcacherw".to_owned()),
        ("GOWORK".to_owned(), "off".to_owned()),
        ("GOENV".to_owned(), "off".to_owned()),
        ("GOTELEMETRY".to_owned(), "off".to_owned()),
    ];
    if network == Network::Offline {
        env.push(("GOPROXY".to_owned(), "off".to_owned()));
    } else if let Ok(proxy) = std::env::var("GOPROXY") {
        env.push(("GOPROXY".to_owned(), proxy));
    }
    env
}

/// The `go` on PATH, checked to be new enough to switch toolchains.
pub fn host_go(sh: &Shell) -> Result<GoVersion> {
    let path = which::which("go").map_err(|_| {
        anyhow::anyhow!(
            "no `go` on PATH: install Go {MIN_HOST_GO} or newer (https://go.dev/dl, or your distribution's golang package)"
        )
    })?;
    let output = cmd!(sh, "{path} env GOVERSION")
        .env("GOTOOLCHAIN", "local")
        .read()
        .context("cannot run `go env GOVERSION`")?;
    let version: GoVersion = output
        .trim()
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .find(|part| !part.is_empty())
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            output
                .trim()
                .strip_prefix("go")
                .and_then(|v| format!("{v}.0").parse().ok())
        })
        .with_context(|| format!("cannot read the go version from `{output}`"))?;
    if version < MIN_HOST_GO {
        bail!("the go on PATH is go{version}; install Go {MIN_HOST_GO} or newer, which downloads the pinned toolchains itself");
    }
    Ok(version)
}

/// The go binary of the release's toolchain: the host's when it is that release, else the
/// golang.org/toolchain module the host go downloaded into the cache.
pub fn go_command(layout: &Layout, toolchain: &Toolchain, host: GoVersion) -> Utf8PathBuf {
    if host == toolchain.version {
        return Utf8PathBuf::from("go");
    }
    let host_arch = kubelet_upstream::Arch::host().map_or("amd64", |arch| arch.goarch());
    layout
        .gomodcache()
        .join(format!(
            "golang.org/toolchain@v0.0.1-{}.linux-{host_arch}",
            toolchain.version.toolchain_name()
        ))
        .join("bin/go")
}

/// The go binary that builds `release` on this host.
pub fn release_go(sh: &Shell, layout: &Layout, release: &Release) -> Result<Utf8PathBuf> {
    Ok(go_command(
        layout,
        &Toolchain::for_release(release),
        host_go(sh)?,
    ))
}

/// Downloads the toolchain into the module cache unless it is there already.
pub fn provision(
    sh: &Shell,
    layout: &Layout,
    toolchain: &Toolchain,
    host: GoVersion,
) -> Result<()> {
    let go = go_command(layout, toolchain, host);
    let cached = || {
        cmd!(sh, "{go} version")
            .env("GOTOOLCHAIN", "local")
            .quiet()
            .ignore_stderr()
            .read()
            .is_ok()
    };
    if cached() {
        return Ok(());
    }
    let _lock = crate::lock::CacheLock::tools(layout)?;
    if cached() {
        return Ok(());
    }
    let name = toolchain.version.toolchain_name();
    eprintln!("    downloading Go toolchain {name}");
    // The host go's own toolchain switch downloads, verifies and unpacks it executable.
    cmd!(sh, "go version")
        .envs(go_env(layout, toolchain, Network::Allowed))
        .quiet()
        .read()
        .with_context(|| {
            format!("cannot download Go toolchain {name} through the module proxy (GOPROXY); check that the proxy serves golang.org/toolchain, or pin build-go in the manifest")
        })?;
    cmd!(sh, "{go} version")
        .env("GOTOOLCHAIN", "local")
        .quiet()
        .read()
        .with_context(|| format!("Go toolchain {name} was downloaded but {go} does not run"))?;
    Ok(())
}
