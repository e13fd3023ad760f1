//! `cargo xtask bench`: how much native cross-compiling saves over the original's way, a Go
//! toolchain for arm64 running under qemu-user emulation. Prints both times and their ratio.
//!
//! Both sides compile the same binary, from the same sources, with the same flags, from an empty
//! GOCACHE. On the emulated side the arm64 `go` command and every tool it runs (compile, asm,
//! link, through `-toolexec`) run under qemu; the C compiler is the same native zig wrapper on
//! both sides, so the ratio measures the Go toolchain, which does nearly all the work.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;
use kubelet_upstream::{rules, Arch};
use serde::Deserialize;
use xshell::{cmd, Shell};

use crate::compile::{self, CompileStep};
use crate::context::Context as Cx;
use crate::fetch::fetch_release;
use crate::flags;
use crate::go::{self, Network, Toolchain};
use crate::layout::Layout;
use crate::lock::CacheLock;
use crate::{runner, zig};

const BENCH_ARCH: Arch = Arch::Arm64;

impl flags::Bench {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let cx = Cx::load()?;
        let release = *cx
            .releases(std::slice::from_ref(&self.version))?
            .first()
            .expect("one version");
        let binary = rules::binaries(release)
            .into_iter()
            .find(|b| b.name == self.binary)
            .with_context(|| format!("{} has no binary `{}`", release.version, self.binary))?;
        let _lock = CacheLock::acquire(&cx.layout)?;
        let sources = fetch_release(sh, &cx, release, &self.source)?;
        let zig_path = zig::provision(sh, &cx.layout)?;
        zig::write_wrappers(&cx.layout, &zig_path, &[BENCH_ARCH])?;
        let qemu = runner::emulator(BENCH_ARCH)?
            .context("this host is arm64: there is nothing to emulate")?;
        let tree = sources.tree(binary.component)?;
        let compilers = compile::c_compilers(&cx.layout, &[])?;
        let go = go::release_go(sh, &cx.layout, release)?;
        let step = compile::compile_step(
            &go,
            &cx.layout,
            release,
            tree,
            &binary,
            BENCH_ARCH,
            &compilers[&BENCH_ARCH],
        );
        let bench_dir = cx.layout.cache().join("bench");
        let expected = rules::version_output(release, binary.kind, &tree.built_version);
        warm_c_compiler(sh, &cx.layout, &bench_dir)?;

        eprintln!(
            "==> cross-compiling {} for {} from an empty GOCACHE",
            binary.name,
            BENCH_ARCH.platform()
        );
        let cross = timed_build(sh, &step, &bench_dir.join("cross"), None)?;
        check_runs(&cross.output, &expected)?;
        eprintln!("    {:.1} s", cross.seconds);

        let toolchain = Toolchain::for_release(release);
        let go_arm64 = arm64_toolchain(sh, &cx.layout, &toolchain)?;
        eprintln!(
            "==> compiling the same with go{} for arm64 under {qemu} (this takes long)",
            toolchain.version
        );
        let emulated = timed_build(
            sh,
            &step,
            &bench_dir.join("emulated"),
            Some((&qemu, &go_arm64)),
        )?;
        check_runs(&emulated.output, &expected)?;
        eprintln!("    {:.1} s", emulated.seconds);

        println!(
            "binary:     {} {} ({})",
            binary.name,
            release.version,
            BENCH_ARCH.platform()
        );
        println!("cross:      {:.1} s", cross.seconds);
        println!("emulated:   {:.1} s", emulated.seconds);
        println!(
            "ratio:      {:.1}x (emulated / cross)",
            emulated.seconds / cross.seconds
        );
        Ok(())
    }
}

/// zig builds musl for a target on first use; that one-time cost is not part of compiling.
fn warm_c_compiler(sh: &Shell, layout: &Layout, dir: &Utf8PathBuf) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let source = dir.join("warm.c");
    std::fs::write(&source, "int main(void) { return 0; }\n")?;
    let wrapper = layout.zig_cc_wrapper(BENCH_ARCH);
    let output = dir.join("warm");
    cmd!(sh, "{wrapper} -static {source} -o {output}")
        .quiet()
        .run()
        .context("the zig wrapper cannot link a C program")?;
    Ok(())
}

struct Timed {
    seconds: f64,
    output: Utf8PathBuf,
}

/// Runs the compile step with its own empty GOCACHE and output; with `emulated`, through the
/// arm64 go command under qemu.
fn timed_build(
    sh: &Shell,
    step: &CompileStep,
    dir: &Utf8PathBuf,
    emulated: Option<(&Utf8PathBuf, &Utf8PathBuf)>,
) -> Result<Timed> {
    crate::fsutil::remove_dir_all_writable(dir)?;
    std::fs::create_dir_all(dir)?;
    let output = dir.join(&step.binary.name);
    let mut env = step.env.clone();
    env.retain(|(key, _)| key != "GOCACHE");
    env.push(("GOCACHE".into(), dir.join("gocache").to_string()));
    let mut args = step.args_with_output(&output);
    let _cwd = sh.push_dir(&step.dir);
    let started = Instant::now();
    let result = match emulated {
        None => {
            let go = &step.go;
            cmd!(sh, "{go} {args...}").envs(env).quiet().run()
        }
        Some((qemu, go_arm64)) => {
            args.insert(1, format!("-toolexec={qemu}"));
            cmd!(sh, "{qemu} {go_arm64} {args...}")
                .envs(env)
                .quiet()
                .run()
        }
    };
    result.with_context(|| {
        format!(
            "the {} build failed",
            if emulated.is_some() {
                "emulated"
            } else {
                "cross"
            }
        )
    })?;
    Ok(Timed {
        seconds: started.elapsed().as_secs_f64(),
        output,
    })
}

fn check_runs(binary: &Utf8PathBuf, expected: &str) -> Result<()> {
    let output = runner::run(binary, BENCH_ARCH, &["--version"], &[])?;
    if !output.success || !output.text.contains(expected) {
        bail!(
            "{binary} does not print `{expected}`: {}",
            output.text.trim()
        );
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Download {
    dir: Option<Utf8PathBuf>,
    error: Option<String>,
}

/// The linux-arm64 build of the release's Go, from the module proxy's golang.org/toolchain.
fn arm64_toolchain(sh: &Shell, layout: &Layout, toolchain: &Toolchain) -> Result<Utf8PathBuf> {
    let module = format!(
        "golang.org/toolchain@v0.0.1-{}.linux-arm64",
        toolchain.version.toolchain_name()
    );
    let json = cmd!(sh, "go mod download -json {module}")
        .envs(go::go_env(layout, toolchain, Network::Allowed))
        .env("GOTOOLCHAIN", "local")
        .quiet()
        .ignore_status()
        .read()?;
    let download: Download =
        serde_json::from_str(&json).with_context(|| format!("cannot download {module}"))?;
    if let Some(error) = download.error {
        bail!(
            "cannot download {module}, the arm64 Go the emulated side needs: {}; bench a release whose Go the proxy serves for linux-arm64",
            error.lines().last().unwrap_or(&error).trim()
        );
    }
    let dir = download
        .dir
        .with_context(|| format!("{module} has no directory"))?;
    // `go mod download` unpacks module files without their executable bits.
    for tools in [dir.join("bin"), dir.join("pkg/tool/linux_arm64")] {
        for entry in std::fs::read_dir(&tools).with_context(|| format!("cannot list {tools}"))? {
            let path = entry?.path();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
    }
    Ok(dir.join("bin/go"))
}
