//! The command line. Each subcommand's flags are a struct whose `run` lives in its own module.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kubelet_upstream::{Arch, Component};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build containerized-kubelet images: fetch pinned upstream sources, cross-compile, pack, build and push",
    version
)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole pipeline: fetch, build, pack, image, push.
    Release(Release),
    /// Fetch the pinned upstream sources into the cache under target/.
    Fetch(Fetch),
    /// Cross-compile and pack the binaries of a release.
    Build(Build),
    /// Build the images of a release from already built binaries.
    Image(Image),
    /// Report compressed and extracted image sizes, and refresh the README table.
    Sizes(Sizes),
    /// Show, check or bump the pinned upstream matrix.
    Upstream(Upstream),
    /// Show which tools are present, at which version, and how to get what is missing.
    Doctor(Doctor),
    /// Build an Alpine base image from Alpine's minimal root filesystems (offline hosts, tests).
    Base(Base),
    /// Build a release twice from clean build caches and name every file or digest that differs.
    VerifyReproducible(VerifyReproducible),
    /// Benchmark: compile one component for arm64 cross and under qemu; print both times.
    Bench(Bench),
    /// Cross-compile the host tools the images carry (iptables, ...) from pinned sources.
    Tools(Tools),
    /// The per-target C compiler wrapper that cgo runs (internal).
    #[command(hide = true)]
    ZigCc(ZigCc),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// Clone the pinned tags with git (needs the upstream Git hosts or a mirror).
    Git,
    /// Download the pinned modules through the Go module proxy (GOPROXY).
    Goproxy,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Git => "git",
            SourceKind::Goproxy => "goproxy",
        }
    }
}

/// A remote URL override: `--remote kubernetes=/srv/mirrors/kubernetes.git`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOverride {
    pub component: Component,
    pub url: String,
}

impl std::str::FromStr for RemoteOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, url) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=URL, got `{s}`"))?;
        let component = Component::from_key(key).ok_or_else(|| {
            let known = Component::ALL.map(Component::key).join(", ");
            format!("unknown component `{key}`; expected one of {known}")
        })?;
        if url.is_empty() {
            return Err(format!("empty URL for {key}"));
        }
        Ok(RemoteOverride {
            component,
            url: url.to_owned(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Where sources come from.
    #[arg(long, value_enum, default_value = "git", env = "XTASK_SOURCE")]
    pub source: SourceKind,
    /// Replace a component's Git remote, e.g. a mirror or a local path (repeatable).
    #[arg(long = "remote", value_name = "NAME=URL")]
    pub remotes: Vec<RemoteOverride>,
}

#[derive(Debug, Clone, Args)]
pub struct ArchArgs {
    /// Limit the build to these architectures (default: amd64, arm64 and armv7).
    #[arg(long = "arch", value_name = "ARCH", value_delimiter = ',')]
    pub arches: Vec<Arch>,
}

impl ArchArgs {
    pub fn selected(&self) -> Vec<Arch> {
        if self.arches.is_empty() {
            return Arch::ALL.to_vec();
        }
        Arch::ALL
            .into_iter()
            .filter(|arch| self.arches.contains(arch))
            .collect()
    }
}

#[derive(Debug, Clone, Args)]
pub struct CompilerArgs {
    /// Use this C compiler for an architecture instead of zig, e.g.
    /// `arm64=aarch64-linux-musl-gcc` (repeatable).
    #[arg(long = "cc", value_name = "ARCH=COMPILER")]
    pub cc: Vec<String>,
    /// Fail when a packed binary no longer runs, instead of keeping it unpacked.
    #[arg(long)]
    pub strict: bool,
    /// Also pack kubelet and kube-proxy with upx.
    #[arg(long)]
    pub pack_daemons: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuilderKind {
    /// docker buildx, all platforms in one build (the default where a builder answers).
    Buildx,
    /// buildah, for hosts without a Docker engine.
    Buildah,
}

#[derive(Debug, Clone, Args)]
pub struct ImageArgs {
    /// Push to this registry and repository prefix, e.g. `ghcr.io/you` or `127.0.0.1:5000/ck`.
    /// Without it, images go to an OCI layout under target/.
    #[arg(long, value_name = "PREFIX", env = "XTASK_REGISTRY")]
    pub registry: Option<String>,
    /// The image builder: buildx where docker buildx has a builder that answers, else buildah.
    #[arg(long, value_enum, env = "XTASK_BUILDER")]
    pub builder: Option<BuilderKind>,
    /// The buildx builder instance to use (default: the current one).
    #[arg(long, value_name = "NAME", env = "XTASK_BUILDX_BUILDER")]
    pub buildx_builder: Option<String>,
    /// Only these images (kubelet, kubelet-flannel, kubelet-cni, kubelet-kubeadm,
    /// kubelet-kubeadm-cni, kube-proxy).
    #[arg(long = "image", value_name = "NAME", value_delimiter = ',')]
    pub images: Vec<String>,
    /// The base image reference; defaults to alpine:<pinned version>@<pinned digest>.
    #[arg(long, value_name = "REF", env = "XTASK_BASE_IMAGE")]
    pub base_image: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct Release {
    /// Kubernetes releases to build, e.g. v1.26.0.
    #[arg(required = true, value_name = "VERSION")]
    pub versions: Vec<String>,
    /// Print every step with its commands and environment, and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub arches: ArchArgs,
    #[command(flatten)]
    pub compiler: CompilerArgs,
    #[command(flatten)]
    pub image: ImageArgs,
}

#[derive(Debug, Clone, Args)]
pub struct Fetch {
    #[arg(required = true, value_name = "VERSION")]
    pub versions: Vec<String>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Clone, Args)]
pub struct Build {
    #[arg(required = true, value_name = "VERSION")]
    pub versions: Vec<String>,
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub arches: ArchArgs,
    #[command(flatten)]
    pub compiler: CompilerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct Image {
    #[arg(required = true, value_name = "VERSION")]
    pub versions: Vec<String>,
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub arches: ArchArgs,
    #[command(flatten)]
    pub image: ImageArgs,
}

#[derive(Debug, Clone, Args)]
pub struct Sizes {
    #[arg(required = true, value_name = "VERSION")]
    pub versions: Vec<String>,
    /// Read sizes from this registry prefix instead of the local OCI layout.
    #[arg(long, value_name = "PREFIX")]
    pub registry: Option<String>,
    /// Fail if the README's size section is stale instead of rewriting it.
    #[arg(long)]
    pub check: bool,
    /// The README to update.
    #[arg(long, default_value = "README.md")]
    pub readme: Utf8PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct Upstream {
    #[command(subcommand)]
    pub action: Option<UpstreamAction>,
    /// Replace a component's Git remote, e.g. a mirror or a local path (repeatable).
    #[arg(long = "remote", value_name = "NAME=URL", global = true)]
    pub remotes: Vec<RemoteOverride>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UpstreamAction {
    /// List the pinned releases and their components (the default).
    List,
    /// Compare the pins with the newest patches upstream offers.
    Check,
    /// Write the newest patches into the manifest.
    Bump,
}

#[derive(Debug, Clone, Args)]
pub struct Doctor {}

#[derive(Debug, Clone, Args)]
pub struct Base {
    /// The directory with alpine-minirootfs-<version>-<arch>.tar.gz and SHA512SUMS.
    #[arg(long, value_name = "DIR")]
    pub minirootfs: Utf8PathBuf,
    /// The Alpine release of the tarballs.
    #[arg(long, default_value = "3.20.3")]
    pub alpine: String,
    /// Push to this registry prefix instead of the local OCI layout.
    #[arg(long, value_name = "PREFIX")]
    pub registry: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyReproducible {
    /// The Kubernetes release to build twice, e.g. v1.26.0.
    #[arg(value_name = "VERSION")]
    pub version: String,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub arches: ArchArgs,
    #[command(flatten)]
    pub compiler: CompilerArgs,
    /// Image options; both builds go to OCI layouts under target/, so --registry is ignored.
    #[command(flatten)]
    pub image: ImageArgs,
    /// Compare the two builds a previous run left, without building again.
    #[arg(long)]
    pub compare_only: bool,
}

#[derive(Debug, Clone, Args)]
pub struct Bench {
    /// The Kubernetes release whose sources are compiled.
    #[arg(value_name = "VERSION")]
    pub version: String,
    /// The binary to compile (kube-proxy or kubelet are the real-world cases).
    #[arg(long, default_value = "kube-proxy")]
    pub binary: String,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Clone, Args)]
pub struct Tools {
    /// Only these tools (default: every pinned one).
    #[arg(long = "tool", value_name = "NAME", value_delimiter = ',')]
    pub tools: Vec<String>,
    #[command(flatten)]
    pub arches: ArchArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ZigCc {
    /// The zig binary.
    #[arg(long)]
    pub zig: camino::Utf8PathBuf,
    /// The musl target, e.g. aarch64-linux-musl.
    #[arg(long)]
    pub target: String,
    /// What the caller passed to its C compiler.
    #[arg(last = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Xtask::command().debug_assert();
    }

    #[test]
    fn parses_remote_overrides() {
        let remote: RemoteOverride = "cri-tools=/srv/cri-tools.git".parse().unwrap();
        assert_eq!(remote.component, Component::CriTools);
        assert!("nope=/x".parse::<RemoteOverride>().is_err());
        assert!("kubernetes".parse::<RemoteOverride>().is_err());
    }

    #[test]
    fn arch_selection_keeps_index_order() {
        let args = Xtask::parse_from(["cargo xtask", "build", "v1.26.0", "--arch", "armv7,amd64"]);
        let Command::Build(build) = args.command else {
            panic!("expected build")
        };
        assert_eq!(build.arches.selected(), [Arch::Amd64, Arch::Armv7]);
    }
}
