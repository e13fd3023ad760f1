//! The docker buildx backend: one `docker buildx build` for every platform at once into an OCI
//! layout under target/, with timestamps rewritten to SOURCE_DATE_EPOCH and no provenance
//! attestation (which would change with every build). The layout is then checked and published
//! by the skopeo publisher, so what is pushed is exactly what was checked.

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use xshell::{cmd, Shell};

use super::{Builder, ImageJob};
use crate::fsutil;

#[derive(Debug, Clone)]
pub struct Buildx {
    /// The buildx builder instance; None is the current one.
    builder: Option<String>,
}

impl Buildx {
    pub fn new(builder: Option<String>) -> Buildx {
        Buildx { builder }
    }

    fn builder_args(&self) -> Vec<String> {
        self.builder
            .iter()
            .map(|name| format!("--builder={name}"))
            .collect()
    }
}

/// Whether docker buildx and a running builder are there. The error says what is missing.
pub fn check_available(sh: &Shell, builder: Option<&str>) -> Result<()> {
    if which::which("docker").is_err() {
        bail!("the buildx builder needs the docker CLI with the buildx plugin; install Docker (https://docs.docker.com/engine/install/) or use --builder buildah");
    }
    cmd!(sh, "docker buildx version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .context("docker has no buildx plugin; install docker-buildx (https://github.com/docker/buildx#installing) or use --builder buildah")?;
    let name: Vec<&str> = builder.into_iter().collect();
    let output = cmd!(sh, "docker buildx inspect --bootstrap {name...}")
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run docker buildx inspect")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && builder_is_running(&text) {
        return Ok(());
    }
    let why = text
        .lines()
        .find(|l| l.starts_with("Error:"))
        .map_or("it is not running".to_owned(), |l| l.trim().to_owned());
    bail!(
        "the buildx builder {} does not answer ({why}); start one (`docker buildx create --use`, or a remote BuildKit with `docker buildx create --driver remote ADDRESS`) or use --builder buildah",
        builder.unwrap_or("in use")
    )
}

/// `docker buildx inspect` exits 0 even for a builder whose daemon is gone: it only says so.
/// A builder answers when it reports no error and at least one node is running.
pub fn builder_is_running(inspect: &str) -> bool {
    let field = |line: &str, name: &str| line.strip_prefix(name).map(|rest| rest.trim().to_owned());
    let mut running = false;
    for line in inspect.lines() {
        if field(line, "Error:").is_some() {
            return false;
        }
        if field(line, "Status:").as_deref() == Some("running") {
            running = true;
        }
    }
    running
}

/// The `--build-arg`/`--label` arguments, and the platforms, in the job's order.
pub fn build_args(job: &ImageJob) -> Vec<String> {
    let platforms: Vec<&str> = job.arches.iter().map(|a| a.platform()).collect();
    let mut args = vec![
        format!("--platform={}", platforms.join(",")),
        // Attestations carry the build's time and host: they would make every index new.
        "--provenance=false".to_owned(),
        "--sbom=false".to_owned(),
        format!("--build-arg=SOURCE_DATE_EPOCH={}", job.source_date_epoch),
    ];
    for (key, value) in &job.build_args {
        args.push(format!("--build-arg={key}={value}"));
    }
    for (key, value) in &job.labels {
        args.push(format!("--label={key}={value}"));
    }
    args
}

impl Builder for Buildx {
    fn name(&self) -> &'static str {
        "buildx"
    }

    fn build(&self, sh: &Shell, job: &ImageJob) -> Result<()> {
        let staging = fsutil::staging_dir(&job.built)?;
        let staged = Utf8Path::from_path(staging.path())
            .context("non-UTF-8 cache path")?
            .to_owned();
        let output = format!("--output=type=oci,dest={staged},tar=false,rewrite-timestamp=true");
        let builder = self.builder_args();
        let args = build_args(job);
        let dockerfile = job.context.join("Dockerfile");
        let context = &job.context;
        eprintln!("    buildx: {} {}", job.reference(), platforms(job));
        cmd!(sh, "docker buildx build {builder...} --progress=quiet {args...} --file={dockerfile} {output} {context}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("docker buildx could not build {}", job.reference()))?;
        crate::pause::point("image-build");
        fsutil::commit_dir(staging, &job.built)
    }

    fn sweep(&self, _sh: &Shell) -> Result<()> {
        // BuildKit keeps its own state; our side is the layouts, each written through a
        // staging directory that the next build of the same image sweeps.
        Ok(())
    }
}

fn platforms(job: &ImageJob) -> String {
    job.arches
        .iter()
        .map(|a| a.platform())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_upstream::Arch;

    #[test]
    fn a_builder_answers_only_when_a_node_runs_and_nothing_failed() {
        // What buildx v0.37.2 printed here for the default builder without a Docker engine,
        // and for a BuildKit daemon reached through the remote driver.
        let no_engine = "Name:   default\nDriver: \nError:  failed to connect to the docker API at unix:///var/run/docker.sock\n\nNodes:\n";
        let remote = "Name:          probe\nDriver:        remote\n\nNodes:\nName:             probe0\nEndpoint:         unix:///tmp/bk.sock\nStatus:           running\nBuildKit version: v0.33.1\nPlatforms:        linux/amd64, linux/arm64, linux/arm/v7\n";
        let stopped = remote.replace("Status:           running", "Status:           inactive");
        assert!(!builder_is_running(no_engine));
        assert!(builder_is_running(remote));
        assert!(!builder_is_running(&stopped));
    }

    #[test]
    fn builds_every_platform_in_index_order_without_attestations() {
        let job = ImageJob {
            repository: "kubelet".into(),
            tag: "v1.26.0-alpine3.20".into(),
            arches: Arch::ALL.to_vec(),
            context: "/ctx".into(),
            build_args: vec![("BASE_IMAGE".into(), "alpine:3.20.3@sha256:1".into())],
            labels: vec![("org.opencontainers.image.version".into(), "v1.26.0".into())],
            source_date_epoch: 1_670_529_103,
            built: "/cache/oci-built/kubelet_v1.26.0-alpine3.20".into(),
        };
        assert_eq!(
            build_args(&job),
            [
                "--platform=linux/amd64,linux/arm64,linux/arm/v7",
                "--provenance=false",
                "--sbom=false",
                "--build-arg=SOURCE_DATE_EPOCH=1670529103",
                "--build-arg=BASE_IMAGE=alpine:3.20.3@sha256:1",
                "--label=org.opencontainers.image.version=v1.26.0",
            ]
        );
    }
}
