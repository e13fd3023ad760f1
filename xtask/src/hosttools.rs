//! `cargo xtask tools`: the host tools the images carry, cross-compiled statically from pinned
//! source tarballs with the same per-target zig compilers as the Go binaries, checked (ELF
//! machine, static, `--version` on the platform) and installed into one tree per architecture
//! that the image build copies from. Nothing here runs a program of another architecture except
//! through qemu-user for the checks, and nothing reaches a package mirror.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::hosttools::{HostTool, SourcePin, ToolProgram, HOST_TOOLS};
use kubelet_upstream::Arch;
use xshell::{cmd, Shell};

use crate::context::Context as Cx;
use crate::flags;
use crate::fsutil;
use crate::layout::Layout;
use crate::lock::CacheLock;
use crate::{elf, runner, zig};

/// Bump when the way a tool is built changes without its pin or arguments changing.
const STAMP_FORMAT: &str = "host-tool-1";
/// No debug info (it would carry host paths), small code: these tools run rarely.
const CFLAGS: &str = "-Os -g0 -D_GNU_SOURCE";
/// Static, stripped: the images have no C library the tools could rely on.
const LDFLAGS: &str = "-static -s";
/// The build machine, as autoconf spells it: the builds run here, natively.
const BUILD_TRIPLE: &str = "x86_64-linux-gnu";
/// How many lines of a failed step's log the error shows.
const LOG_TAIL_LINES: usize = 20;

impl flags::Tools {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Cx::load()?;
        let tools = selected(&self.tools)?;
        let _lock = CacheLock::acquire(&cx.layout)?;
        for arch in self.arches.selected() {
            for tool in &tools {
                let tree = build_tool(sh, &cx.layout, tool, arch)?;
                for program in tool.programs {
                    println!(
                        "{} {} {}",
                        tool.name(),
                        arch.platform(),
                        tree.join(program.installed)
                    );
                }
            }
        }
        Ok(())
    }
}

fn selected(names: &[String]) -> Result<Vec<&'static HostTool>> {
    if names.is_empty() {
        return Ok(HOST_TOOLS.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            kubelet_upstream::hosttools::host_tool(name).with_context(|| {
                let known: Vec<&str> = HOST_TOOLS.iter().map(|t| t.name()).collect();
                format!(
                    "unknown host tool `{name}`; expected one of {}",
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// The installed tree of one tool for one architecture: built once, then reused while the pin,
/// the recipe and the compiler stay the same.
pub fn build_tool(sh: &Shell, layout: &Layout, tool: &HostTool, arch: Arch) -> Result<Utf8PathBuf> {
    let tree = installed_tree(layout, tool, arch);
    let stamp = stamp(tool, arch);
    let stamp_path = tree.join(".xtask-stamp");
    if std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(tree);
    }
    eprintln!(
        "    building {} {} for {}",
        tool.name(),
        tool.version(),
        arch.platform()
    );
    let tarball = fetch_source(sh, layout, &tool.source)?;
    let zig = zig::provision(sh, layout)?;
    zig::write_wrappers(layout, &zig, &[arch])?;
    let tools = zig::write_archiver_wrappers(layout, &zig)?;
    let build = layout
        .cache()
        .join("tools/build")
        .join(format!("{}-{}", tool.name(), tool.version()))
        .join(arch.name());
    unpack_source(sh, &tarball, &build)?;
    configure_and_make(sh, layout, tool, arch, &build, &tools)?;
    let staging = fsutil::staging_dir(&tree)?;
    let staged = Utf8Path::from_path(staging.path())
        .context("non-UTF-8 cache path")?
        .to_owned();
    for program in tool.programs {
        install_program(&build, &staged, program)?;
        check_program(&staged, tool, program, arch)?;
    }
    fsutil::write_atomic(&staged.join(".xtask-stamp"), stamp.as_bytes())?;
    fsutil::commit_dir(staging, &tree)?;
    Ok(tree)
}

/// Where a tool's programs are installed for an architecture, laid out as in the image.
pub fn installed_tree(layout: &Layout, tool: &HostTool, arch: Arch) -> Utf8PathBuf {
    layout
        .cache()
        .join("tools/out")
        .join(format!("{}-{}", tool.name(), tool.version()))
        .join(arch.name())
}

fn stamp(tool: &HostTool, arch: Arch) -> String {
    format!(
        "{STAMP_FORMAT} {} {} {} {} {} {} | {}",
        tool.source.sha256,
        arch.musl_target(),
        zig::ZIG_VERSION,
        CFLAGS,
        LDFLAGS,
        tool.configure.join(" "),
        tool.make
            .iter()
            .map(|step| step.join(" "))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// `-jN` for make and cmake: every core of the build host.
pub fn make_jobs() -> String {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    format!("-j{cores}")
}

/// A fresh copy of a source tree in `dir`, whatever an earlier build left there.
pub fn unpack_source(sh: &Shell, tarball: &Utf8Path, dir: &Utf8Path) -> Result<()> {
    if dir.exists() {
        fsutil::remove_dir_all_writable(dir)?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    cmd!(sh, "tar -xf {tarball} -C {dir} --strip-components=1")
        .quiet()
        .run()
        .with_context(|| format!("cannot unpack {tarball}; is tar with xz support installed?"))
}

/// The pinned tarball, from the first URL that serves it with the pinned sha256.
pub fn fetch_source(sh: &Shell, layout: &Layout, source: &SourcePin) -> Result<Utf8PathBuf> {
    let path = layout.tools().join("host-tool-sources").join(source.file);
    if path.exists() && fsutil::sha256_file(&path)? == source.sha256 {
        return Ok(path);
    }
    std::fs::create_dir_all(path.parent().expect("has a directory"))?;
    fsutil::sweep_leftovers(&path)?;
    let partial = fsutil::partial_path(&path, "download");
    let mut failures = Vec::new();
    for url in source.urls {
        let fetched = cmd!(sh, "curl --fail --silent --show-error --location --retry 2 --connect-timeout 10 --output {partial} {url}")
            .quiet()
            .ignore_stderr()
            .run();
        if let Err(error) = fetched {
            failures.push(format!("{url}: {error}"));
            continue;
        }
        let digest = fsutil::sha256_file(&partial)?;
        if digest != source.sha256 {
            std::fs::remove_file(&partial).ok();
            bail!(
                "checksum mismatch for {} from {url}: got sha256 {digest}, pinned {}; the file changed upstream or on the mirror, do not use it",
                source.file,
                source.sha256
            );
        }
        std::fs::rename(&partial, &path)
            .with_context(|| format!("cannot move {path} into place"))?;
        return Ok(path);
    }
    std::fs::remove_file(&partial).ok();
    bail!(
        "cannot download {} from any of its URLs ({}); put the file with sha256 {} at {path} by hand",
        source.file,
        failures.join("; "),
        source.sha256
    )
}

fn configure_and_make(
    sh: &Shell,
    layout: &Layout,
    tool: &HostTool,
    arch: Arch,
    build: &Utf8Path,
    archivers: &zig::Archivers,
) -> Result<()> {
    let _cwd = sh.push_dir(build);
    let cc = layout.zig_cc_wrapper(arch);
    let host = format!("--host={}", arch.musl_target());
    let build_triple = format!("--build={BUILD_TRIPLE}");
    // Paths of the build tree must not reach the binaries (assertion messages, say).
    let cflags = format!("{CFLAGS} -ffile-prefix-map={build}=.");
    let args = tool.configure;
    let configure = cmd!(sh, "./configure {host} {build_triple} {args...}")
        .env("CC", cc.as_str())
        .env("AR", archivers.ar.as_str())
        .env("RANLIB", archivers.ranlib.as_str())
        .env("CFLAGS", &cflags)
        .env("LDFLAGS", LDFLAGS)
        .env("PKG_CONFIG", "false");
    run_logged(configure, build, "configure", tool, arch)?;
    let jobs = make_jobs();
    for &targets in tool.make {
        run_logged(
            cmd!(sh, "make {jobs} {targets...}"),
            build,
            "make",
            tool,
            arch,
        )?;
    }
    Ok(())
}

/// Runs a build step with its output in a log beside the build; a failure shows the log's end.
fn run_logged(
    command: xshell::Cmd<'_>,
    build: &Utf8Path,
    step: &str,
    tool: &HostTool,
    arch: Arch,
) -> Result<()> {
    let output = command
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run {step} for {}", tool.name()))?;
    let mut text = output.stdout;
    text.extend_from_slice(&output.stderr);
    let log = build.join(format!("xtask-{step}.log"));
    fsutil::write_atomic(&log, &text)?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "{step} of {} {} for {} failed; last lines:\n{}\nfull log: {log}",
            tool.name(),
            tool.version(),
            arch.platform(),
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        );
    }
    Ok(())
}

fn install_program(build: &Utf8Path, tree: &Utf8Path, program: &ToolProgram) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let from = build.join(program.built);
    let to = tree.join(program.installed);
    let dir = to.parent().context("an installed path has a directory")?;
    std::fs::create_dir_all(dir)?;
    std::fs::copy(&from, &to).with_context(|| format!("the build did not produce {from}"))?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
    let target = to.file_name().context("an installed path names a file")?;
    for link in program.links {
        std::os::unix::fs::symlink(target, dir.join(link))
            .with_context(|| format!("cannot link {link} to {target}"))?;
    }
    Ok(())
}

/// The program is a static executable of the architecture and prints its version there.
fn check_program(
    tree: &Utf8Path,
    tool: &HostTool,
    program: &ToolProgram,
    arch: Arch,
) -> Result<()> {
    let path = tree.join(program.installed);
    elf::check(&path, arch)?;
    let output = runner::run(&path, arch, program.version_args, &[])?;
    if output.code != Some(program.version_exit) || !output.text.contains(program.version_output) {
        bail!(
            "{} of {} {} for {} does not print `{}`: {}",
            program.installed,
            tool.name(),
            tool.version(),
            arch.platform(),
            program.version_output,
            output.text.trim()
        );
    }
    Ok(())
}
