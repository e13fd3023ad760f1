//! `cargo xtask build`: cross-compile every binary of a release once per architecture, verify
//! it, pack the tools with upx, and record the result in an artifact manifest.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use indicatif::{ProgressBar, ProgressStyle};
use kubelet_upstream::rules::{self, Binary};
use kubelet_upstream::{Arch, Component, Release};
use xshell::{cmd, Shell};

use crate::artifact::{file_size, ArtifactManifest, BinaryRecord};
use crate::compile::{self, CCompiler, CompileStep};
use crate::context::Context as Cx;
use crate::fetch::{fetch_release, fetcher};
use crate::flags;
use crate::fsutil;
use crate::go::{self, Toolchain};
use crate::layout::Layout;
use crate::lock::CacheLock;
use crate::pack::PackStep;
use crate::plan::{self, BuildInput, BuildPlan};
use crate::runner;
use crate::source::{Fetcher, SourceTree};
use crate::upx::{self, Upx};
use crate::{elf, zig};

/// Bump when the way a binary is produced changes without its command line changing.
const STAMP_FORMAT: &str = "build-1";
/// How many lines of a failed go build's log the error shows.
const LOG_TAIL_LINES: usize = 15;

impl flags::Build {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Cx::load()?;
        let releases = cx.releases(&self.versions)?;
        let compilers = compile::c_compilers(&cx.layout, &self.compiler.cc)?;
        let options = BuildOptions::new(self.arches.selected(), compilers, &self.compiler);
        if self.dry_run {
            let fetcher = fetcher(sh, &cx, &self.source);
            for release in releases {
                let trees = planned_trees(fetcher.as_ref(), release);
                let binaries = rules::binaries(release);
                let plan = plan_build(sh, &cx.layout, release, &trees, &binaries, &options)?;
                print!("{}", plan::render_build(&plan)?);
            }
            return Ok(());
        }
        let _lock = CacheLock::acquire(&cx.layout)?;
        for release in releases {
            let sources = fetch_release(sh, &cx, release, &self.source)?;
            let binaries = rules::binaries(release);
            let plan = plan_build(sh, &cx.layout, release, &sources.trees, &binaries, &options)?;
            for manifest in build_release(sh, &cx.layout, release, &plan, &options)? {
                print_summary(&manifest);
            }
        }
        Ok(())
    }
}

pub struct BuildOptions {
    pub arches: Vec<Arch>,
    pub compilers: BTreeMap<Arch, CCompiler>,
    pub strict: bool,
    pub pack_daemons: bool,
}

impl BuildOptions {
    pub fn new(
        arches: Vec<Arch>,
        compilers: BTreeMap<Arch, CCompiler>,
        flags: &flags::CompilerArgs,
    ) -> BuildOptions {
        BuildOptions {
            arches,
            compilers,
            strict: flags.strict,
            pack_daemons: flags.pack_daemons,
        }
    }
}

/// The trees a fetch would give, for plans that fetch nothing.
pub fn planned_trees(fetcher: &dyn Fetcher, release: &Release) -> Vec<SourceTree> {
    release
        .pins()
        .into_iter()
        .map(|pin| fetcher.planned(release, pin))
        .collect()
}

/// The build plan of `binaries` (normally `rules::binaries(release)`) from `trees`, fetched or
/// planned.
pub fn plan_build(
    sh: &Shell,
    layout: &Layout,
    release: &Release,
    trees: &[SourceTree],
    binaries: &[Binary],
    options: &BuildOptions,
) -> Result<BuildPlan> {
    let go = go::release_go(sh, layout, release)?;
    let input = BuildInput {
        go: &go,
        layout,
        release,
        arches: &options.arches,
        compilers: &options.compilers,
        pack_daemons: options.pack_daemons,
    };
    BuildPlan::new(&input, binaries, |component| {
        tree_of(trees, release, component)
    })
}

fn tree_of<'t>(
    trees: &'t [SourceTree],
    release: &Release,
    component: Component,
) -> Result<&'t SourceTree> {
    trees
        .iter()
        .find(|t| t.component == component.key())
        .with_context(|| {
            format!(
                "the sources of {} lack {component}; run `cargo xtask fetch {}` again",
                release.version, release.version
            )
        })
}

/// Runs a build plan: compiles, checks and ships every planned binary, architecture by
/// architecture, and records each architecture's result in an artifact manifest.
pub fn build_release(
    sh: &Shell,
    layout: &Layout,
    release: &Release,
    plan: &BuildPlan,
    options: &BuildOptions,
) -> Result<Vec<ArtifactManifest>> {
    eprintln!(
        "==> build {} for {}",
        release.version,
        arch_names(&plan.arches)
    );
    prepare_compilers(sh, layout, options)?;
    let upx = upx::provision(sh, layout)?;
    eprintln!("    upx: {} ({})", upx.version, upx.path);
    for &arch in &plan.arches {
        runner::emulator(arch)?;
    }
    let toolchain = Toolchain::for_release(release);
    let progress = ProgressBar::new(plan.binaries.len() as u64).with_style(
        ProgressStyle::with_template("    [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let mut manifests = Vec::new();
    for &arch in &plan.arches {
        let mut records = Vec::new();
        for planned in plan.for_arch(arch) {
            let step = &planned.compile;
            progress.set_message(format!("{} {}", step.binary.name, arch.platform()));
            progress
                .suspend(|| compile_cached(sh, layout, release, step, &planned.source_commit))?;
            verify(&step.output, arch, &planned.pack)?;
            let record = progress.suspend(|| ship(sh, &planned.pack, &upx, options.strict))?;
            records.push(record);
            progress.inc(1);
        }
        let manifest = ArtifactManifest {
            version: release.version.to_string(),
            arch: arch.name().to_owned(),
            platform: arch.platform().to_owned(),
            go: toolchain.version.toolchain_name(),
            upx: upx.version.clone(),
            binaries: records,
        };
        manifest.save(layout, release, arch)?;
        manifests.push(manifest);
    }
    progress.finish_and_clear();
    Ok(manifests)
}

fn arch_names(arches: &[Arch]) -> String {
    arches
        .iter()
        .map(|a| a.platform())
        .collect::<Vec<_>>()
        .join(", ")
}

fn prepare_compilers(sh: &Shell, layout: &Layout, options: &BuildOptions) -> Result<()> {
    let zig_arches: Vec<Arch> = options
        .arches
        .iter()
        .copied()
        .filter(|arch| matches!(options.compilers[arch], CCompiler::Zig { .. }))
        .collect();
    if !zig_arches.is_empty() {
        let zig = zig::provision(sh, layout)?;
        zig::write_wrappers(layout, &zig, &zig_arches)?;
    }
    for (arch, compiler) in &options.compilers {
        if let CCompiler::Configured(cc) = compiler {
            if options.arches.contains(arch) && which::which(cc).is_err() {
                bail!("the C compiler `{cc}` configured for {arch} is not on PATH; install it, or drop --cc/XTASK_CC_{} to use zig", arch.name().to_uppercase());
            }
        }
    }
    Ok(())
}

/// Compiles unless the output exists from the very same command, source commit and format.
fn compile_cached(
    sh: &Shell,
    layout: &Layout,
    release: &Release,
    step: &CompileStep,
    commit: &str,
) -> Result<()> {
    let stamp_path = stamp_path(&step.output);
    let stamp = stamp_of(&[STAMP_FORMAT, commit, &step.display()]);
    if step.output.exists()
        && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
    {
        return Ok(());
    }
    let dir = step.output.parent().context("output has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    fsutil::sweep_leftovers(&step.output)?;
    let partial = fsutil::partial_path(&step.output, "go");
    let log = layout
        .cache()
        .join("logs")
        .join(release.version.to_string())
        .join(step.arch.name())
        .join(format!("{}.log", step.binary.name));
    std::fs::create_dir_all(log.parent().expect("log has a directory"))?;
    eprintln!(
        "    compiling {} for {}",
        step.binary.name,
        step.arch.platform()
    );
    let args = step.args_with_output(&partial);
    let _cwd = sh.push_dir(&step.dir);
    let go = &step.go;
    let output = cmd!(sh, "{go} {args...}")
        .envs(step.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run go; is Go installed? (`cargo xtask doctor`)")?;
    let mut text = output.stdout.clone();
    text.extend_from_slice(&output.stderr);
    fsutil::write_atomic(&log, &text)?;
    if !output.status.success() {
        std::fs::remove_file(&partial).ok();
        bail!(
            "go build of {} for {} failed; last lines:\n{}\nfull log: {log}\ncommand: {}",
            step.binary.name,
            step.arch.platform(),
            tail(&String::from_utf8_lossy(&text), LOG_TAIL_LINES),
            step.display()
        );
    }
    crate::pause::point("compile");
    std::fs::rename(&partial, &step.output)
        .with_context(|| format!("cannot move {} into place", step.output))?;
    fsutil::write_atomic(&stamp_path, stamp.as_bytes())
}

/// ELF machine, static linking, and a run that prints the expected version.
fn verify(path: &Utf8Path, arch: Arch, step: &PackStep) -> Result<()> {
    elf::check(path, arch)?;
    let test = &step.smoke_test;
    let output = runner::run(path, arch, &test.args, &test.env)?;
    let expected = &step.expected_output;
    if !output.success || !output.text.contains(expected.as_str()) {
        bail!(
            "{path} built but does not run correctly for {arch} ({}): expected `{expected}` in its output, got: {}",
            output.status,
            tail(&output.text, 5)
        );
    }
    Ok(())
}

/// Puts the shipped binary in `bin/`: packed where planned and where the packed binary still
/// runs. A cached result is reused only when its record matches the file on disk.
fn ship(sh: &Shell, step: &PackStep, upx: &Upx, strict: bool) -> Result<BinaryRecord> {
    let (name, arch) = (&step.binary.name, step.arch);
    let shipped = &step.output;
    std::fs::create_dir_all(shipped.parent().expect("bin has a directory"))?;
    fsutil::sweep_leftovers(shipped)?;
    let unpacked_sha = fsutil::sha256_file(&step.input)?;
    let stamp = stamp_of(&[STAMP_FORMAT, &unpacked_sha, &upx.version, &step.display()]);
    let stamp_path = stamp_path(shipped);
    let record_path = shipped.with_file_name(format!(".{name}.record.json"));
    if let Some(record) = reusable_record(shipped, &stamp_path, &stamp, &record_path) {
        return Ok(record);
    }
    let mut note = None;
    let mut packed_size = None;
    if step.packed {
        match try_pack(sh, upx, step) {
            Ok(size) => packed_size = Some(size),
            Err(reason) if strict => {
                return Err(reason.context(format!(
                    "--strict: the packed {name} for {arch} does not run"
                )))
            }
            Err(reason) => {
                let why = format!("shipped unpacked: {reason:#}");
                eprintln!("    note: {name} for {arch} {why}");
                note = Some(why);
            }
        }
    }
    if packed_size.is_none() {
        copy_atomic(&step.input, shipped)?;
    }
    let record = BinaryRecord {
        name: name.clone(),
        component: step.binary.component.key().to_owned(),
        path: format!("bin/{name}"),
        unpacked_size: file_size(&step.input)?,
        packed_size,
        sha256: fsutil::sha256_file(shipped)?,
        note,
    };
    fsutil::write_atomic(&record_path, serde_json::to_string(&record)?.as_bytes())?;
    fsutil::write_atomic(&stamp_path, stamp.as_bytes())?;
    Ok(record)
}

/// The recorded result of an earlier run, if its stamp matches and its digest is the shipped
/// file's: a damaged or stale record means shipping again, never trusting it.
fn reusable_record(
    shipped: &Utf8Path,
    stamp_path: &Utf8Path,
    stamp: &str,
    record_path: &Utf8Path,
) -> Option<BinaryRecord> {
    if std::fs::read_to_string(stamp_path).ok()? != stamp {
        return None;
    }
    let record: BinaryRecord =
        serde_json::from_str(&std::fs::read_to_string(record_path).ok()?).ok()?;
    let on_disk = fsutil::sha256_file(shipped).ok()?;
    (record.sha256 == on_disk).then_some(record)
}

fn try_pack(sh: &Shell, upx: &Upx, step: &PackStep) -> Result<u64> {
    let candidate = fsutil::partial_path(&step.output, "packed");
    upx.pack(sh, step, &candidate)?;
    let test = &step.smoke_test;
    let ran = runner::run(&candidate, step.arch, &test.args, &test.env);
    let expected = step.expected_output.as_str();
    let works = matches!(&ran, Ok(output) if output.success && output.text.contains(expected));
    if !works {
        std::fs::remove_file(&candidate).ok();
        let detail = match ran {
            Ok(output) => format!("{}; {}", output.status, tail(&output.text, 2).trim()),
            Err(error) => format!("{error:#}"),
        };
        bail!(
            "{} {} packed by {} does not run ({})",
            step.binary.name,
            step.arch,
            upx.version,
            detail.trim()
        );
    }
    let size = file_size(&candidate)?;
    crate::pause::point("pack");
    std::fs::rename(&candidate, &step.output)
        .with_context(|| format!("cannot move {} into place", step.output))?;
    Ok(size)
}

fn copy_atomic(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    let partial = fsutil::partial_path(to, "copy");
    std::fs::copy(from, &partial).with_context(|| format!("cannot copy {from}"))?;
    std::fs::rename(&partial, to).with_context(|| format!("cannot move {to} into place"))?;
    Ok(())
}

fn stamp_path(path: &Utf8Path) -> Utf8PathBuf {
    path.with_file_name(format!(".{}.stamp", path.file_name().unwrap_or("binary")))
}

fn stamp_of(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    fsutil::hex(&hasher.finalize())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn print_summary(manifest: &ArtifactManifest) {
    println!(
        "{} {} ({}, {})",
        manifest.version, manifest.platform, manifest.go, manifest.upx
    );
    for b in &manifest.binaries {
        let packed = match b.packed_size {
            Some(size) => format!("{:>9.2} MiB packed", mib(size)),
            None => "     unpacked    ".to_owned(),
        };
        println!(
            "  {:<12} {:>9.2} MiB  {packed}  {}",
            b.name,
            mib(b.unpacked_size),
            short_digest(&b.sha256)
        );
    }
}

/// The first 16 characters of a digest, or all of a shorter one: records come from disk.
fn short_digest(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_or_damaged_digest_is_shown_whole() {
        assert_eq!(short_digest("0123456789abcdef0123"), "0123456789abcdef");
        assert_eq!(short_digest("abc"), "abc");
        assert_eq!(short_digest(""), "");
        // Not a char boundary at 16: shown whole instead of panicking.
        assert_eq!(short_digest("0123456789abcdeé"), "0123456789abcdeé");
    }

    #[test]
    fn a_record_whose_digest_is_not_the_files_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let shipped = dir.join("crictl");
        std::fs::write(&shipped, b"binary").unwrap();
        let stamp = dir.join(".crictl.stamp");
        std::fs::write(&stamp, "s").unwrap();
        let record_path = dir.join(".crictl.record.json");
        let record = |sha256: &str| {
            serde_json::json!({
                "name": "crictl", "component": "cri-tools", "path": "bin/crictl",
                "unpacked_size": 6, "packed_size": null, "sha256": sha256, "note": null
            })
            .to_string()
        };
        std::fs::write(&record_path, record("0a")).unwrap();
        assert!(reusable_record(&shipped, &stamp, "s", &record_path).is_none());
        std::fs::write(&record_path, "{ damaged").unwrap();
        assert!(reusable_record(&shipped, &stamp, "s", &record_path).is_none());
        let digest = fsutil::sha256_file(&shipped).unwrap();
        std::fs::write(&record_path, record(&digest)).unwrap();
        assert!(reusable_record(&shipped, &stamp, "s", &record_path).is_some());
        assert!(reusable_record(&shipped, &stamp, "other", &record_path).is_none());
    }
}
