//! The release plan: every step `release` takes, in order, as text a maintainer can review.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Result;
use kubelet_upstream::rules::{self, Image};
use kubelet_upstream::{Arch, Release};

use crate::compile::{self, CCompiler};
use crate::flags::{ImageArgs, SourceKind};
use crate::go::Toolchain;
use crate::layout::Layout;
use crate::pack;
use crate::source::Fetcher;

pub struct PlanInput<'a> {
    /// The toolchain's go binary, as `go::go_command` names it.
    pub go: &'a camino::Utf8Path,
    pub layout: &'a Layout,
    pub release: &'a Release,
    pub source: SourceKind,
    pub fetcher: &'a dyn Fetcher,
    pub arches: &'a [Arch],
    pub compilers: &'a BTreeMap<Arch, CCompiler>,
    pub pack_daemons: bool,
    pub image: &'a ImageArgs,
}

pub fn render(input: &PlanInput<'_>) -> Result<String> {
    let mut out = String::new();
    let release = input.release;
    let toolchain = Toolchain::for_release(release);
    writeln!(
        out,
        "release {} (dry run: nothing is fetched, built or pushed)",
        release.version
    )?;
    writeln!(
        out,
        "  go: {} ({})",
        toolchain.version.toolchain_name(),
        toolchain.why
    )?;
    writeln!(
        out,
        "  SOURCE_DATE_EPOCH: {} ({})",
        release.source_date_epoch,
        compile::build_date(release)
    )?;
    render_fetch(&mut out, input)?;
    render_compile(&mut out, input)?;
    render_pack(&mut out, input)?;
    render_images(&mut out, input)?;
    Ok(out)
}

fn render_fetch(out: &mut String, input: &PlanInput<'_>) -> Result<()> {
    writeln!(out, "\n[1/4] fetch sources ({})", input.source.name())?;
    for pin in input.release.pins() {
        writeln!(
            out,
            "  {}: {}",
            pin.component,
            input.fetcher.describe(input.release, pin)
        )?;
    }
    Ok(())
}

fn render_compile(out: &mut String, input: &PlanInput<'_>) -> Result<()> {
    writeln!(
        out,
        "\n[2/4] compile {} binaries x {} architectures, each once, shared by every image",
        rules::binaries(input.release).len(),
        input.arches.len()
    )?;
    for line in compile_lines(
        input.go,
        input.layout,
        input.release,
        input.fetcher,
        input.arches,
        input.compilers,
    ) {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// One line per compiler invocation: binary, platform, and the command with its environment.
pub fn compile_lines(
    go: &camino::Utf8Path,
    layout: &Layout,
    release: &Release,
    fetcher: &dyn Fetcher,
    arches: &[Arch],
    compilers: &BTreeMap<Arch, CCompiler>,
) -> Vec<String> {
    let binaries = rules::binaries(release);
    let mut lines = Vec::new();
    for pin in release.pins() {
        let tree = fetcher.planned(release, pin);
        for binary in binaries.iter().filter(|b| b.component == pin.component) {
            for &arch in arches {
                let step = compile::compile_step(
                    go,
                    layout,
                    release,
                    &tree,
                    binary,
                    arch,
                    &compilers[&arch],
                );
                lines.push(format!(
                    "{} {}: {}",
                    binary.name,
                    arch.platform(),
                    step.display()
                ));
            }
        }
    }
    lines
}

fn render_pack(out: &mut String, input: &PlanInput<'_>) -> Result<()> {
    writeln!(
        out,
        "\n[3/4] pack with upx, then run each packed binary (unpacked kept if it fails)"
    )?;
    for binary in rules::binaries(input.release) {
        if !pack::wants_packing(&binary, input.pack_daemons) {
            writeln!(out, "  {}: not packed (a daemon)", binary.name)?;
            continue;
        }
        for &arch in input.arches {
            let step = pack::pack_step(input.layout, input.release, arch, &binary);
            writeln!(
                out,
                "  {} {}: {}",
                binary.name,
                arch.platform(),
                step.display()
            )?;
        }
    }
    Ok(())
}

fn render_images(out: &mut String, input: &PlanInput<'_>) -> Result<()> {
    let platforms: Vec<&str> = input.arches.iter().map(|a| a.platform()).collect();
    let destination = match &input.image.registry {
        Some(registry) => {
            format!("push to {registry}: per-platform manifests first, then the index")
        }
        None => format!("write to the OCI layout {}", input.layout.oci_layout()),
    };
    writeln!(
        out,
        "\n[4/4] images for {} ({destination})",
        platforms.join(", ")
    )?;
    for image in Image::ALL {
        let names: Vec<String> = image
            .binaries(input.release)
            .into_iter()
            .map(|b| b.name)
            .collect();
        let (entrypoint, cmd) = image.entrypoint(input.release.version);
        let prefix = input.image.registry.as_deref().unwrap_or("oci");
        writeln!(
            out,
            "  {prefix}/{}:{} from dockerfiles/{}",
            image.repository(),
            image.tag(input.release),
            image.dockerfile()
        )?;
        writeln!(out, "      binaries: {}", names.join(" "))?;
        writeln!(
            out,
            "      alpine packages: {}",
            rules::alpine_packages(image, input.release.version).join(" ")
        )?;
        writeln!(out, "      entrypoint: {entrypoint:?} cmd: {cmd:?}")?;
    }
    Ok(())
}
