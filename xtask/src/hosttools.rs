//! `cargo xtask tools`: the host tools the images carry, cross-compiled statically from pinned
//! source tarballs with the same per-target zig compilers as the Go binaries, checked (ELF
//! machine, static, `--version` on the platform), packed with upx like the other tools the
//! images carry (and checked again), and installed into one tree per architecture that the image
//! build copies from. Nothing here runs a program of another architecture except through
//! qemu-user for the checks, and nothing reaches a package mirror.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::hosttools::{
    HostLibrary, HostTool, LibraryBuild, SourceEdit, SourcePin, ToolProgram, HOST_TOOLS, UPX,
};
use kubelet_upstream::Arch;
use xshell::{cmd, Shell};

use crate::context::Context as Cx;
use crate::flags;
use crate::fsutil;
use crate::layout::Layout;
use crate::lock::CacheLock;
use crate::pack::HOST_TOOL_UPX_ARGS;
use crate::upx::{self, Upx};
use crate::{elf, runner, zig};

/// Bump when the way a tool is built changes without its pin or arguments changing.
const STAMP_FORMAT: &str = "host-tool-3";
/// The installed tree's stamp: the recipe and the packer.
const STAMP_FILE: &str = ".xtask-stamp";
/// Written into the build directory once make succeeded: the recipe it compiled.
const BUILT_FILE: &str = ".xtask-built";
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
        preflight(&cx.layout, &tools, &self.arches.selected())?;
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

/// The installed tree of one tool for one architecture: compiled once while the pin, the
/// recipe and the compiler stay the same, then installed and packed again only when the packer
/// changes. Trees may live in a tool cache that several build caches share, so building takes
/// that cache's lock.
pub fn build_tool(sh: &Shell, layout: &Layout, tool: &HostTool, arch: Arch) -> Result<Utf8PathBuf> {
    let tree = installed_tree(layout, tool, arch);
    if is_fresh(layout, tool, arch) {
        return Ok(tree);
    }
    let _lock = CacheLock::host_tools(layout)?;
    if is_fresh(layout, tool, arch) {
        return Ok(tree);
    }
    let recipe = recipe_stamp(tool, arch);
    let stamp = install_stamp(tool, arch);
    let builds =
        layout
            .host_tools()
            .join("build")
            .join(format!("{}-{}", tool.name(), tool.version()));
    let build = builds.join(arch.name());
    let built_path = build.join(BUILT_FILE);
    if std::fs::read_to_string(&built_path).ok().as_deref() != Some(recipe.as_str()) {
        eprintln!(
            "    building {} {} for {}",
            tool.name(),
            tool.version(),
            arch.platform()
        );
        compile(sh, layout, tool, arch, &builds)?;
        fsutil::write_atomic(&built_path, recipe.as_bytes())?;
    }
    let upx = upx::provision(sh, layout)?;
    let staging = fsutil::staging_dir(&tree)?;
    let staged = Utf8Path::from_path(staging.path())
        .context("non-UTF-8 cache path")?
        .to_owned();
    for program in tool.programs {
        install_program(&build, &staged, program)?;
        check_runs(&staged.join(program.installed), tool, program, arch)?;
        pack_program(sh, &upx, &staged, tool, program, arch)?;
    }
    fsutil::write_atomic(&staged.join(STAMP_FILE), stamp.as_bytes())?;
    fsutil::commit_dir(staging, &tree)?;
    Ok(tree)
}

/// Configures and makes the tool in `builds/<arch>`, its libraries first into a sysroot beside.
fn compile(
    sh: &Shell,
    layout: &Layout,
    tool: &HostTool,
    arch: Arch,
    builds: &Utf8Path,
) -> Result<()> {
    let tarball = fetch_source(sh, layout, &tool.source)?;
    let zig = zig::provision(sh, layout)?;
    zig::write_wrappers(layout, &zig, &[arch])?;
    let archivers = zig::write_archiver_wrappers(layout, &zig)?;
    let build = builds.join(arch.name());
    let env = BuildEnv {
        cc: layout.zig_cc_wrapper(arch),
        archivers: &archivers,
        arch,
        sysroot: (!tool.libraries.is_empty())
            .then(|| builds.join(format!("{}-sysroot", arch.name()))),
    };
    if let Some(sysroot) = &env.sysroot {
        if sysroot.exists() {
            fsutil::remove_dir_all_writable(sysroot)?;
        }
        for library in tool.libraries {
            let dir = builds
                .join(format!("{}-libraries", arch.name()))
                .join(library.source.name);
            let tarball = fetch_source(sh, layout, &library.source)?;
            unpack_source(sh, &tarball, &dir)?;
            build_library(sh, &env, library, &dir, sysroot, tool)?;
        }
    }
    unpack_source(sh, &tarball, &build)?;
    for edit in tool.edits {
        apply_edit(&build, edit, tool)?;
    }
    let label = format!("{} {}", tool.name(), tool.version());
    env.configure(sh, &build, tool.configure, &label)?;
    for &targets in tool.make {
        env.make(sh, &build, targets, &label)?;
    }
    Ok(())
}

/// The build host's programs that compiling host tools needs.
const BUILD_PROGRAMS: [(&str, &str); 5] = [
    ("make", "make"),
    ("gcc", "gcc"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
    ("bzip2", "bzip2"),
];

/// Before a run spends its time elsewhere: when any of `tools` must still be built for `arches`,
/// the programs that takes are present (curl only when a tarball is not downloaded yet).
pub fn preflight(layout: &Layout, tools: &[&HostTool], arches: &[Arch]) -> Result<()> {
    let stale: Vec<&HostTool> = tools
        .iter()
        .copied()
        .filter(|tool| arches.iter().any(|&arch| !is_fresh(layout, tool, arch)))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let mut needed: Vec<(&str, &str)> = BUILD_PROGRAMS.to_vec();
    let downloaded = |source: &SourcePin| sources_dir(layout).join(source.file).exists();
    let all_downloaded = stale.iter().all(|tool| {
        downloaded(&tool.source) && tool.libraries.iter().all(|l| downloaded(&l.source))
    });
    if !all_downloaded {
        needed.push(("curl", "curl"));
    }
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(program, _)| which::which(program).is_err())
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = stale.iter().map(|t| t.name()).collect();
        bail!(
            "building the host tools ({}) needs programs this machine lacks: `apt-get install {}`",
            names.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

/// Where every tool's programs are installed, one tree per tool and architecture.
pub fn installed_root(layout: &Layout) -> Utf8PathBuf {
    layout.host_tools().join("out")
}

/// Where a tool's programs are installed for an architecture, laid out as in the image.
pub fn installed_tree(layout: &Layout, tool: &HostTool, arch: Arch) -> Utf8PathBuf {
    installed_root(layout)
        .join(format!("{}-{}", tool.name(), tool.version()))
        .join(arch.name())
}

/// What the installed tree depends on: the compiled programs, which programs are installed and
/// how they are checked, and the packer.
fn install_stamp(tool: &HostTool, arch: Arch) -> String {
    let packer = std::env::var(upx::UPX_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("upx {}", UPX.sha256));
    format!(
        "{} | programs {:?} | {packer} {}",
        recipe_stamp(tool, arch),
        tool.programs,
        HOST_TOOL_UPX_ARGS.join(" ")
    )
}

/// Whether the installed tree of a tool for an architecture is up to date.
fn is_fresh(layout: &Layout, tool: &HostTool, arch: Arch) -> bool {
    let stamp_path = installed_tree(layout, tool, arch).join(STAMP_FILE);
    std::fs::read_to_string(stamp_path).ok() == Some(install_stamp(tool, arch))
}

/// What the compiled programs depend on: the pins, the recipe and the compiler.
fn recipe_stamp(tool: &HostTool, arch: Arch) -> String {
    let mut stamp = format!(
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
    );
    for library in tool.libraries {
        stamp.push_str(&format!(
            " | library {} {:?}",
            library.source.sha256, library.build
        ));
    }
    for edit in tool.edits {
        stamp.push_str(&format!(" | edit {edit:?}"));
    }
    stamp
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
    let unpacker = decompressor(tarball.as_str());
    cmd!(sh, "tar -xf {tarball} -C {dir} --strip-components=1")
        .quiet()
        .run()
        .with_context(|| format!("cannot unpack {tarball}; are tar and {unpacker} installed?"))
}

/// The program tar runs to decompress a tarball of this name.
fn decompressor(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("xz") => "xz",
        Some("bz2") => "bzip2",
        _ => "gzip",
    }
}

/// Where the pinned tarballs are kept, in the tool cache.
pub fn sources_dir(layout: &Layout) -> Utf8PathBuf {
    layout.tools().join("host-tool-sources")
}

/// The pinned tarball, from the first URL that serves it with the pinned sha256.
pub fn fetch_source(sh: &Shell, layout: &Layout, source: &SourcePin) -> Result<Utf8PathBuf> {
    let path = sources_dir(layout).join(source.file);
    if path.exists() && fsutil::sha256_file(&path)? == source.sha256 {
        return Ok(path);
    }
    // Downloads are shared by every build cache, whichever host-tools lock its caller holds.
    let _lock = CacheLock::sources(layout)?;
    if path.exists() && fsutil::sha256_file(&path)? == source.sha256 {
        return Ok(path);
    }
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

/// What every configure, make and compile of one tool build for one architecture shares.
struct BuildEnv<'a> {
    cc: Utf8PathBuf,
    archivers: &'a zig::Archivers,
    arch: Arch,
    /// Where the tool's libraries are installed, for tools that link any.
    sysroot: Option<Utf8PathBuf>,
}

impl BuildEnv<'_> {
    /// Paths of the build tree and the sysroot must not reach the binaries (assertion
    /// messages, say).
    fn cflags(&self, dir: &Utf8Path) -> String {
        let mut flags = format!("{CFLAGS} -ffile-prefix-map={dir}=.");
        if let Some(sysroot) = &self.sysroot {
            flags.push_str(&format!(
                " -I{sysroot}/usr/include -ffile-prefix-map={sysroot}=/"
            ));
        }
        flags
    }

    fn ldflags(&self) -> String {
        match &self.sysroot {
            Some(sysroot) => format!("{LDFLAGS} -L{sysroot}/usr/lib"),
            None => LDFLAGS.to_owned(),
        }
    }

    fn configure(&self, sh: &Shell, dir: &Utf8Path, args: &[&str], label: &str) -> Result<()> {
        let _cwd = sh.push_dir(dir);
        let host = format!("--host={}", self.arch.musl_target());
        let build_triple = format!("--build={BUILD_TRIPLE}");
        let configure = cmd!(sh, "./configure {host} {build_triple} {args...}")
            .env("CC", self.cc.as_str())
            .env("AR", self.archivers.ar.as_str())
            .env("RANLIB", self.archivers.ranlib.as_str())
            .env("CFLAGS", self.cflags(dir))
            .env("LDFLAGS", self.ldflags())
            .env("PKG_CONFIG", "false");
        run_logged(configure, dir, "configure", label, self.arch)
    }

    fn make(&self, sh: &Shell, dir: &Utf8Path, targets: &[&str], label: &str) -> Result<()> {
        let _cwd = sh.push_dir(dir);
        let jobs = make_jobs();
        run_logged(
            cmd!(sh, "make {jobs} {targets...}"),
            dir,
            "make",
            label,
            self.arch,
        )
    }
}

/// Builds one library in `dir` and installs it into the sysroot.
fn build_library(
    sh: &Shell,
    env: &BuildEnv<'_>,
    library: &HostLibrary,
    dir: &Utf8Path,
    sysroot: &Utf8Path,
    tool: &HostTool,
) -> Result<()> {
    let label = format!(
        "{} {} (for {})",
        library.source.name,
        library.source.version,
        tool.name()
    );
    let lib_dir = sysroot.join("usr/lib");
    let include_dir = sysroot.join("usr/include");
    for created in [&lib_dir, &include_dir] {
        std::fs::create_dir_all(created).with_context(|| format!("cannot create {created}"))?;
    }
    match library.build {
        LibraryBuild::Autotools {
            configure,
            make,
            install,
        } => {
            let mut args = vec!["--prefix=/usr"];
            args.extend_from_slice(configure);
            env.configure(sh, dir, &args, &label)?;
            for &targets in make {
                env.make(sh, dir, targets, &label)?;
            }
            let destdir = format!("DESTDIR={sysroot}");
            for &targets in install {
                let mut args = vec![destdir.as_str()];
                args.extend_from_slice(targets);
                env.make(sh, dir, &args, &label)?;
            }
            // libtool's archives name the build's paths; the linker needs only the `.a`.
            for entry in fsutil::walk(&lib_dir)? {
                if entry.extension() == Some("la") {
                    std::fs::remove_file(&entry)?;
                }
            }
        }
        LibraryBuild::Archive {
            sources,
            archive,
            headers,
        } => {
            let _cwd = sh.push_dir(dir);
            let cc = &env.cc;
            let cflags_text = env.cflags(dir);
            let mut objects = Vec::new();
            for source in sources {
                let object = format!("{}.o", source.trim_end_matches(".c"));
                let cflags = cflags_text.split_whitespace();
                let compile = cmd!(sh, "{cc} {cflags...} -c {source} -o {object}");
                run_logged(compile, dir, "compile", &label, env.arch)?;
                objects.push(object);
            }
            let ar = &env.archivers.ar;
            let archive_path = lib_dir.join(archive);
            run_logged(
                cmd!(sh, "{ar} rcs {archive_path} {objects...}"),
                dir,
                "archive",
                &label,
                env.arch,
            )?;
            for header in headers {
                std::fs::copy(dir.join(header), include_dir.join(header))
                    .with_context(|| format!("cannot install {header} of {label}"))?;
            }
        }
    }
    Ok(())
}

/// Applies one edit to the unpacked source; an edit that finds nothing is an error.
fn apply_edit(build: &Utf8Path, edit: &SourceEdit, tool: &HostTool) -> Result<()> {
    let path = build.join(edit.file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    if !text.contains(edit.find) {
        bail!(
            "{} {}: {} no longer contains `{}`; update the edit in kubelet-upstream/src/hosttools.rs ({})",
            tool.name(),
            tool.version(),
            edit.file,
            edit.find,
            edit.why
        );
    }
    fsutil::write_atomic(&path, text.replacen(edit.find, edit.replace, 1).as_bytes())
}

/// Runs a build step with its output in a log beside the build; a failure shows the log's end.
fn run_logged(
    command: xshell::Cmd<'_>,
    build: &Utf8Path,
    step: &str,
    label: &str,
    arch: Arch,
) -> Result<()> {
    let output = command
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run {step} for {label}"))?;
    let mut text = output.stdout;
    text.extend_from_slice(&output.stderr);
    let log = build.join(format!("xtask-{step}.log"));
    fsutil::write_atomic(&log, &text)?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "{step} of {label} for {} failed; last lines:\n{}\nfull log: {log}",
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

/// Packs an installed program in place and checks it again. A program that upx cannot pack, or
/// that no longer runs once packed, is an error: upx 4.2 packs every one of them, so a failure
/// means something changed that must be looked at, not shipped.
fn pack_program(
    sh: &Shell,
    upx: &Upx,
    tree: &Utf8Path,
    tool: &HostTool,
    program: &ToolProgram,
    arch: Arch,
) -> Result<()> {
    let path = tree.join(program.installed);
    // The packed copy keeps the program's name: some print it in their version line.
    let scratch = tempfile::Builder::new()
        .prefix(".upx-")
        .tempdir_in(path.parent().context("an installed path has a directory")?)
        .context("cannot create a directory for upx's output")?;
    let packed = Utf8Path::from_path(scratch.path())
        .context("non-UTF-8 cache path")?
        .join(program.file_name());
    let upx_path = &upx.path;
    let upx_args = HOST_TOOL_UPX_ARGS;
    let output = cmd!(sh, "{upx_path} {upx_args...} -o {packed} {path}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run {upx_path}"))?;
    if !output.status.success() {
        bail!(
            "upx cannot pack {} of {} {} for {}: {}",
            program.installed,
            tool.name(),
            tool.version(),
            arch.platform(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    check_runs(&packed, tool, program, arch)
        .context("the packed program no longer runs; every host tool ships packed")?;
    std::fs::rename(&packed, &path)
        .with_context(|| format!("cannot move the packed {path} into place"))
}

/// The program at `path` is a static executable of the architecture and prints its version.
pub fn check_runs(
    path: &Utf8Path,
    tool: &HostTool,
    program: &ToolProgram,
    arch: Arch,
) -> Result<()> {
    elf::check(path, arch)?;
    let output = runner::run(path, arch, program.version_args, &[])?;
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
