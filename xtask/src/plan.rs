//! The release plan: every step a release takes, as data. `--dry-run` prints it, and the build
//! and image steps run exactly its entries, so what is printed is what runs.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Result;
use camino::Utf8Path;
use kubelet_upstream::hostcommands;
use kubelet_upstream::rules::{self, Binary};
use kubelet_upstream::{Arch, Component, Release};

use crate::compile::{self, CCompiler, CompileStep};
use crate::flags::SourceKind;
use crate::go::Toolchain;
use crate::image::{base_image, ImageSelection, PlannedImage, Target};
use crate::layout::Layout;
use crate::pack::{self, PackStep};
use crate::source::{Fetcher, SourceTree};

/// One binary for one architecture: how it is compiled, how its build is checked, and how it
/// is shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBinary {
    pub compile: CompileStep,
    /// The commit the source tree is at: part of the binary's cache stamp.
    pub source_commit: String,
    /// What the binary's smoke test must print.
    pub expected_output: String,
    pub pack: PackStep,
}

/// Every binary of a release for the selected architectures, architecture by architecture, in
/// the order they are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    pub arches: Vec<Arch>,
    pub binaries: Vec<PlannedBinary>,
}

/// What a build plan needs besides the source trees.
pub struct BuildInput<'a> {
    /// The toolchain's go binary, as `go::release_go` names it.
    pub go: &'a Utf8Path,
    pub layout: &'a Layout,
    pub release: &'a Release,
    pub arches: &'a [Arch],
    pub compilers: &'a BTreeMap<Arch, CCompiler>,
    pub pack_daemons: bool,
}

impl BuildPlan {
    /// The plan for `binaries`, compiled from the trees `tree_of` gives: fetched ones for a
    /// run, the ones a fetch would give for a dry run.
    pub fn new<'t>(
        input: &BuildInput<'_>,
        binaries: &[Binary],
        tree_of: impl Fn(Component) -> Result<&'t SourceTree>,
    ) -> Result<BuildPlan> {
        let mut planned = Vec::new();
        for &arch in input.arches {
            for binary in binaries {
                let tree = tree_of(binary.component)?;
                planned.push(plan_binary(input, binary, arch, tree));
            }
        }
        Ok(BuildPlan {
            arches: input.arches.to_vec(),
            binaries: planned,
        })
    }

    /// The entries of one architecture, in build order.
    pub fn for_arch(&self, arch: Arch) -> impl Iterator<Item = &PlannedBinary> {
        self.binaries.iter().filter(move |b| b.compile.arch == arch)
    }
}

fn plan_binary(
    input: &BuildInput<'_>,
    binary: &Binary,
    arch: Arch,
    tree: &SourceTree,
) -> PlannedBinary {
    let expected_output = rules::version_output(input.release, binary.kind, &tree.built_version);
    PlannedBinary {
        compile: compile::compile_step(
            input.go,
            input.layout,
            input.release,
            tree,
            binary,
            arch,
            &input.compilers[&arch],
        ),
        source_commit: tree.commit.clone(),
        pack: pack::pack_step(
            input.layout,
            input.release,
            arch,
            binary,
            input.pack_daemons,
            &expected_output,
        ),
        expected_output,
    }
}

/// The plan of a whole release, as `release --dry-run` prints it.
pub struct ReleasePlan<'a> {
    pub release: &'a Release,
    pub source: SourceKind,
    pub fetcher: &'a dyn Fetcher,
    pub build: BuildPlan,
    pub selection: &'a ImageSelection,
    pub images: Vec<PlannedImage>,
    pub layout: &'a Layout,
}

pub fn render(plan: &ReleasePlan<'_>) -> Result<String> {
    let mut out = String::new();
    let release = plan.release;
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
    writeln!(out, "\n[1/4] fetch sources ({})", plan.source.name())?;
    for pin in release.pins() {
        writeln!(
            out,
            "  {}: {}",
            pin.component,
            plan.fetcher.describe(release, pin)
        )?;
    }
    out.push_str(&render_build(&plan.build)?);
    writeln!(out)?;
    out.push_str(&render_images(
        release,
        plan.selection,
        &plan.images,
        plan.layout,
    )?);
    Ok(out)
}

/// The compile and pack steps.
pub fn render_build(plan: &BuildPlan) -> Result<String> {
    let mut out = String::new();
    let binary_count = plan.binaries.len() / plan.arches.len().max(1);
    writeln!(
        out,
        "\n[2/4] compile {binary_count} binaries x {} architectures, each once, shared by every image",
        plan.arches.len()
    )?;
    for planned in &plan.binaries {
        let step = &planned.compile;
        step_line(&mut out, &step.binary, step.arch, &step.display())?;
    }
    writeln!(
        out,
        "\n[3/4] pack with upx, then run each packed binary (unpacked kept if it fails)"
    )?;
    for planned in &plan.binaries {
        let step = &planned.pack;
        if step.packed {
            step_line(&mut out, &step.binary, step.arch, &step.display())?;
        } else if step.arch == plan.arches[0] {
            writeln!(out, "  {}: not packed (a daemon)", step.binary.name)?;
        }
    }
    Ok(out)
}

/// One step of one binary for one platform.
fn step_line(out: &mut String, binary: &Binary, arch: Arch, command: &str) -> Result<()> {
    writeln!(out, "  {} {}: {command}", binary.name, arch.platform())?;
    Ok(())
}

/// The image steps: where they go, and per image its binaries, packages, entrypoint and cmd.
pub fn render_images(
    release: &Release,
    selection: &ImageSelection,
    images: &[PlannedImage],
    layout: &Layout,
) -> Result<String> {
    let mut out = String::new();
    let platforms: Vec<&str> = selection.arches.iter().map(|a| a.platform()).collect();
    let target = selection.target(layout);
    let destination = match &selection.registry {
        Some(_) => format!(
            "push to {}: per-platform manifests first, then the index",
            target.name()
        ),
        None => format!("write to the OCI layout {}", target.name()),
    };
    writeln!(
        out,
        "[4/4] images for {} ({destination}), from {}",
        platforms.join(", "),
        base_image(release, selection)
    )?;
    for planned in images {
        let image = planned.image;
        let names: Vec<String> = image
            .binaries(release)
            .into_iter()
            .map(|b| b.name)
            .collect();
        let (entrypoint, cmd) = image.entrypoint(release.version);
        let name = match &target {
            Target::Registry { prefix } => format!("{prefix}/{}", planned.job.reference()),
            Target::OciLayout { .. } => planned.job.reference(),
        };
        writeln!(out, "  {name} from dockerfiles/{}", image.dockerfile())?;
        writeln!(out, "      binaries: {}", names.join(" "))?;
        let tools: Vec<String> = hostcommands::tool_programs(image, release.version)
            .iter()
            .map(|(tool, program)| {
                format!(
                    "{} ({} {})",
                    program.file_name(),
                    tool.name(),
                    tool.version()
                )
            })
            .collect();
        writeln!(out, "      host tools: {}", tools.join(" "))?;
        let missing: Vec<&str> = hostcommands::not_built(image, release.version)
            .iter()
            .map(|c| c.command)
            .collect();
        if !missing.is_empty() {
            writeln!(out, "      not built yet: {}", missing.join(" "))?;
        }
        writeln!(out, "      entrypoint: {entrypoint:?} cmd: {cmd:?}")?;
    }
    Ok(out)
}
