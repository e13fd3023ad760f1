//! `cargo xtask build`: cross-compile every binary of a release once per architecture, verify
//! it, pack the tools with upx, and record the result in an artifact manifest.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use indicatif::{ProgressBar, ProgressStyle};
use kubelet_upstream::rules::{self, Binary, BinaryKind};
use kubelet_upstream::{Arch, Release};
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
use crate::pack;
use crate::plan;
use crate::runner;
use crate::source::{SourceSet, SourceTree};
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
        let arches = self.arches.selected();
        if self.dry_run {
            let fetcher = fetcher(sh, &cx, &self.source);
            for release in releases {
                let go = go::release_go(sh, &cx.layout, release)?;
                let lines = plan::compile_lines(
                    &go,
                    &cx.layout,
                    release,
                    fetcher.as_ref(),
                    &arches,
                    &compilers,
                );
                for line in lines {
                    println!("{line}");
                }
            }
            return Ok(());
        }
        let _lock = CacheLock::acquire(&cx.layout)?;
        let options = BuildOptions::new(arches, compilers, &self.compiler);
        for release in releases {
            let sources = fetch_release(sh, &cx, release, &self.source)?;
            let manifests = build_release(
                sh,
                &cx.layout,
                release,
                &sources,
                &rules::binaries(release),
                &options,
            )?;
            for manifest in manifests {
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

/// Builds `binaries` of `release` for every selected architecture from fetched `sources`.
pub fn build_release(
    sh: &Shell,
    layout: &Layout,
    release: &Release,
    sources: &SourceSet,
    binaries: &[Binary],
    options: &BuildOptions,
) -> Result<Vec<ArtifactManifest>> {
    eprintln!(
        "==> build {} for {}",
        release.version,
        arch_names(&options.arches)
    );
    prepare_compilers(sh, layout, options)?;
    let upx = upx::provision(sh, layout)?;
    eprintln!("    upx: {} ({})", upx.version, upx.path);
    for &arch in &options.arches {
        runner::emulator(arch)?;
    }
    let toolchain = Toolchain::for_release(release);
    let go = go::release_go(sh, layout, release)?;
    let progress = ProgressBar::new((binaries.len() * options.arches.len()) as u64).with_style(
        ProgressStyle::with_template("    [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let mut manifests = Vec::new();
    for &arch in &options.arches {
        let mut records = Vec::new();
        for binary in binaries {
            progress.set_message(format!("{} {}", binary.name, arch.platform()));
            let tree = sources.tree(binary.component)?;
            let step = compile::compile_step(
                &go,
                layout,
                release,
                tree,
                binary,
                arch,
                &options.compilers[&arch],
            );
            progress.suspend(|| compile_cached(sh, layout, release, &step, &tree.commit))?;
            let expected = expected_output(release, binary, tree);
            verify(&step.output, arch, binary, &expected)?;
            let record = progress
                .suspend(|| ship(sh, layout, release, arch, binary, &upx, &expected, options))?;
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

/// What `--version` (or the CNI VERSION command) must print for the binary to count as working.
pub fn expected_output(release: &Release, binary: &Binary, tree: &SourceTree) -> String {
    match binary.kind {
        BinaryKind::Kubelet | BinaryKind::KubeProxy => format!("Kubernetes {}", release.version),
        BinaryKind::Kubeadm => release.version.to_string(),
        BinaryKind::Crictl => tree.built_version.clone(),
        BinaryKind::CniPlugin => "cniVersion".to_owned(),
    }
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
fn verify(path: &Utf8Path, arch: Arch, binary: &Binary, expected: &str) -> Result<()> {
    elf::check(path, arch)?;
    let (args, env) = pack::smoke_test(binary);
    let output = runner::run(path, arch, &args, &env)?;
    if !output.success || !output.text.contains(expected) {
        bail!(
            "{path} built but does not run correctly for {arch} ({}): expected `{expected}` in its output, got: {}",
            output.status,
            tail(&output.text, 5)
        );
    }
    Ok(())
}

/// Puts the shipped binary in `bin/`: packed where wanted and where the packed binary still runs.
#[allow(clippy::too_many_arguments)]
fn ship(
    sh: &Shell,
    layout: &Layout,
    release: &Release,
    arch: Arch,
    binary: &Binary,
    upx: &Upx,
    expected: &str,
    options: &BuildOptions,
) -> Result<BinaryRecord> {
    let unpacked = compile::unpacked_path(layout, release, arch, binary);
    let shipped = pack::final_path(layout, release, arch, binary);
    std::fs::create_dir_all(shipped.parent().expect("bin has a directory"))?;
    fsutil::sweep_leftovers(&shipped)?;
    let unpacked_sha = fsutil::sha256_file(&unpacked)?;
    let wants_pack = pack::wants_packing(binary, options.pack_daemons);
    let stamp = stamp_of(&[
        STAMP_FORMAT,
        &unpacked_sha,
        &upx.version,
        &wants_pack.to_string(),
    ]);
    let stamp_path = stamp_path(&shipped);
    let record_path = shipped.with_file_name(format!(".{}.record.json", binary.name));
    if shipped.exists()
        && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
    {
        if let Ok(text) = std::fs::read_to_string(&record_path) {
            if let Ok(record) = serde_json::from_str::<BinaryRecord>(&text) {
                return Ok(record);
            }
        }
    }
    let mut note = None;
    let mut packed_size = None;
    if wants_pack {
        match try_pack(sh, upx, &unpacked, &shipped, arch, binary, expected) {
            Ok(size) => packed_size = Some(size),
            Err(reason) if options.strict => {
                return Err(reason.context(format!(
                    "--strict: the packed {} for {arch} does not run",
                    binary.name
                )))
            }
            Err(reason) => {
                let why = format!("shipped unpacked: {reason:#}");
                eprintln!("    note: {} for {arch} {why}", binary.name);
                note = Some(why);
            }
        }
    }
    if packed_size.is_none() {
        copy_atomic(&unpacked, &shipped)?;
    }
    let record = BinaryRecord {
        name: binary.name.clone(),
        component: binary.component.key().to_owned(),
        path: format!("bin/{}", binary.name),
        unpacked_size: file_size(&unpacked)?,
        packed_size,
        sha256: fsutil::sha256_file(&shipped)?,
        note,
    };
    fsutil::write_atomic(&record_path, serde_json::to_string(&record)?.as_bytes())?;
    fsutil::write_atomic(&stamp_path, stamp.as_bytes())?;
    Ok(record)
}

fn try_pack(
    sh: &Shell,
    upx: &Upx,
    unpacked: &Utf8Path,
    shipped: &Utf8Path,
    arch: Arch,
    binary: &Binary,
    expected: &str,
) -> Result<u64> {
    let candidate = fsutil::partial_path(shipped, "packed");
    upx.pack(sh, unpacked, &candidate)?;
    let (args, env) = pack::smoke_test(binary);
    let ran = runner::run(&candidate, arch, &args, &env);
    let works = matches!(&ran, Ok(output) if output.success && output.text.contains(expected));
    if !works {
        std::fs::remove_file(&candidate).ok();
        let detail = match ran {
            Ok(output) => format!("{}; {}", output.status, tail(&output.text, 2).trim()),
            Err(error) => format!("{error:#}"),
        };
        bail!(
            "{} {} packed by {} does not run ({})",
            binary.name,
            arch,
            upx.version,
            detail.trim()
        );
    }
    let size = file_size(&candidate)?;
    crate::pause::point("pack");
    std::fs::rename(&candidate, shipped)
        .with_context(|| format!("cannot move {shipped} into place"))?;
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
            &b.sha256[..16]
        );
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
