//! Compiler invocations, as data: which go command builds which binary for which platform, with
//! which environment. The plan prints them and the build runs them, so both always agree.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::rules::{self, Binary};
use kubelet_upstream::{Arch, Release};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::go::{self, Network, Toolchain};
use crate::layout::Layout;
use crate::source::SourceTree;
use kubelet_upstream::node::shell_quote as quote;

/// Environment variable that names a C compiler for one architecture, e.g. `XTASK_CC_ARM64`.
const CC_ENV_PREFIX: &str = "XTASK_CC_";
/// No debug info: it would carry host paths into the objects, and `-s -w` drops it anyway.
const CGO_CFLAGS: &str = "-O2 -g0";
/// Linker flags every binary gets: no symbol table or DWARF, no build id that varies, and a
/// static link against musl so binaries run on hosts with any C library. The external linker
/// gets its own `-s`: older Go does not pass `-s` on, and musl's objects carry debug info.
const BASE_LDFLAGS: [&str; 5] = [
    "-s",
    "-w",
    "-buildid=",
    "-linkmode=external",
    "'-extldflags=-static -s'",
];

/// The C compiler cgo uses for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CCompiler {
    /// zig cc through the per-target wrapper the xtask provisions.
    Zig { wrapper: Utf8PathBuf },
    /// A musl cross compiler the user configured, such as `aarch64-linux-musl-gcc`.
    Configured(String),
}

impl CCompiler {
    pub fn command(&self) -> String {
        match self {
            CCompiler::Zig { wrapper } => wrapper.to_string(),
            CCompiler::Configured(cc) => cc.clone(),
        }
    }
}

/// C compilers per architecture: `--cc ARCH=CC`, then `XTASK_CC_<ARCH>`, else zig.
pub fn c_compilers(layout: &Layout, cli: &[String]) -> Result<BTreeMap<Arch, CCompiler>> {
    let mut chosen = BTreeMap::new();
    for arch in Arch::ALL {
        let env_name = format!("{CC_ENV_PREFIX}{}", arch.name().to_uppercase());
        let compiler = match std::env::var(env_name) {
            Ok(cc) if !cc.is_empty() => CCompiler::Configured(cc),
            _ => CCompiler::Zig {
                wrapper: layout.zig_cc_wrapper(arch),
            },
        };
        chosen.insert(arch, compiler);
    }
    for entry in cli {
        let Some((arch, cc)) = entry.split_once('=') else {
            bail!("--cc takes ARCH=COMPILER, e.g. arm64=aarch64-linux-musl-gcc; got `{entry}`");
        };
        let arch: Arch = arch.parse().map_err(anyhow::Error::msg)?;
        chosen.insert(arch, CCompiler::Configured(cc.to_owned()));
    }
    Ok(chosen)
}

/// One `go build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileStep {
    /// The toolchain's go binary (see `go::go_command`).
    pub go: Utf8PathBuf,
    pub binary: Binary,
    pub arch: Arch,
    pub dir: Utf8PathBuf,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub output: Utf8PathBuf,
}

impl CompileStep {
    /// The go arguments with the output redirected, for writing beside the final path first.
    pub fn args_with_output(&self, output: &Utf8Path) -> Vec<String> {
        self.args
            .iter()
            .map(|arg| {
                if *arg == self.output.as_str() {
                    output.to_string()
                } else {
                    arg.clone()
                }
            })
            .collect()
    }

    /// The step as one shell-like line, for the plan and for error messages.
    pub fn display(&self) -> String {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", quote(v)))
            .collect();
        let args: Vec<String> = self.args.iter().map(|a| quote(a)).collect();
        format!(
            "(cd {} && env {} {} {})",
            self.dir,
            env.join(" "),
            self.go,
            args.join(" ")
        )
    }
}

/// The commit date as upstream's buildDate: RFC 3339 in UTC, never the clock.
pub fn build_date(release: &Release) -> String {
    OffsetDateTime::from_unix_timestamp(release.source_date_epoch)
        .expect("the manifest validated the date")
        .format(&Rfc3339)
        .expect("RFC 3339 formats every valid date")
}

/// Where an unpacked binary is written.
pub fn unpacked_path(
    layout: &Layout,
    release: &Release,
    arch: Arch,
    binary: &Binary,
) -> Utf8PathBuf {
    layout
        .binaries(release.version, arch)
        .join("unpacked")
        .join(&binary.name)
}

pub fn compile_step(
    go: &Utf8Path,
    layout: &Layout,
    release: &Release,
    tree: &SourceTree,
    binary: &Binary,
    arch: Arch,
    cc: &CCompiler,
) -> CompileStep {
    let toolchain = Toolchain::for_release(release);
    let mut env = go::go_env(layout, &toolchain, Network::Offline);
    env.retain(|(key, _)| key != "GOFLAGS");
    env.push(("GOFLAGS".into(), format!("-modcacherw {}", tree.mod_flag)));
    env.push(("GOOS".into(), "linux".into()));
    env.push(("GOARCH".into(), arch.goarch().into()));
    if let Some(goarm) = arch.goarm() {
        env.push(("GOARM".into(), goarm.into()));
    }
    env.push(("CGO_ENABLED".into(), "1".into()));
    env.push(("CC".into(), cc.command()));
    env.push(("CGO_CFLAGS".into(), CGO_CFLAGS.into()));
    env.push((
        "SOURCE_DATE_EPOCH".into(),
        release.source_date_epoch.to_string(),
    ));

    let mut ldflags: Vec<String> = BASE_LDFLAGS.iter().map(|s| s.to_string()).collect();
    ldflags.extend(rules::version_ldflags(
        release,
        binary,
        &build_date(release),
        tree.built_from(),
    ));
    let output = unpacked_path(layout, release, arch, binary);
    let mut args = vec![
        "build".to_owned(),
        "-trimpath".to_owned(),
        "-buildvcs=false".to_owned(),
    ];
    let tags = rules::go_build_tags(binary);
    if !tags.is_empty() {
        args.push(format!("-tags={}", tags.join(",")));
    }
    args.push(format!("-ldflags={}", ldflags.join(" ")));
    args.push("-o".into());
    args.push(output.to_string());
    args.push(tree.package(&binary.package));
    CompileStep {
        go: go.to_owned(),
        binary: binary.clone(),
        arch,
        dir: tree.dir.clone(),
        env,
        args,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_upstream::{Manifest, MANIFEST_FILE, MANIFEST_TEXT};

    fn fixture() -> (Layout, Release) {
        let manifest = Manifest::parse(MANIFEST_TEXT, MANIFEST_FILE).unwrap();
        let release = manifest
            .release("v1.26.0".parse().unwrap())
            .unwrap()
            .clone();
        (
            Layout::new("/ws".into(), "/ws/target/kubelet-build".into()),
            release,
        )
    }

    fn tree() -> SourceTree {
        SourceTree {
            component: "kubernetes".into(),
            version: "v1.26.0".into(),
            commit: "b46a3f887ca979b1a5d14fd39cb1af43e7e5d12d".into(),
            module: "k8s.io/kubernetes".into(),
            built_version: "v1.26.0".into(),
            dir: "/src/k8s".into(),
            package_prefix: "./".into(),
            mod_flag: "-mod=vendor".into(),
            substitute: None,
        }
    }

    #[test]
    fn kubelet_for_armv7_is_static_cgo_with_version_stamps() {
        let (layout, release) = fixture();
        let kubelet = rules::binaries(&release).remove(0);
        let cc = CCompiler::Configured("arm-linux-musleabihf-gcc".into());
        let go = Utf8PathBuf::from("/cache/toolchain/bin/go");
        let step = compile_step(&go, &layout, &release, &tree(), &kubelet, Arch::Armv7, &cc);
        let env: BTreeMap<_, _> = step.env.iter().cloned().collect();
        assert_eq!(env["GOARCH"], "arm");
        assert_eq!(env["GOARM"], "7");
        assert_eq!(env["CGO_ENABLED"], "1");
        assert_eq!(env["CC"], "arm-linux-musleabihf-gcc");
        assert_eq!(
            env["GOTOOLCHAIN"], "local",
            "the toolchain's own go runs, no switching"
        );
        let shown = step.display();
        assert!(shown.contains(" /cache/toolchain/bin/go build "), "{shown}");
        assert_eq!(env["GOPROXY"], "off");
        assert_eq!(env["GOFLAGS"], "-modcacherw -mod=vendor");
        assert!(step.args.contains(&"-trimpath".to_string()));
        assert!(step.args.contains(&"-tags=providerless".to_string()));
        let ldflags = step
            .args
            .iter()
            .find(|a| a.starts_with("-ldflags="))
            .unwrap();
        assert!(ldflags.contains("-s -w"));
        assert!(ldflags.contains("'-extldflags=-static -s'"));
        assert!(ldflags.contains("k8s.io/component-base/version.gitVersion=v1.26.0"));
        assert!(ldflags.contains(&format!("buildDate={}", build_date(&release))));
        assert_eq!(step.args.last().unwrap(), "./cmd/kubelet");
        assert_eq!(
            step.output,
            "/ws/target/kubelet-build/out/v1.26.0/armv7/unpacked/kubelet"
        );
    }

    #[test]
    fn build_date_comes_from_the_commit() {
        let (_, release) = fixture();
        assert_eq!(build_date(&release), "2022-12-08T19:51:43Z");
    }

    #[test]
    fn compiler_overrides_parse() {
        let layout = Layout::new("/ws".into(), "/c".into());
        let chosen = c_compilers(&layout, &["arm64=aarch64-linux-musl-gcc".into()]).unwrap();
        assert_eq!(
            chosen[&Arch::Arm64],
            CCompiler::Configured("aarch64-linux-musl-gcc".into())
        );
        assert!(matches!(chosen[&Arch::Amd64], CCompiler::Zig { .. }));
        assert!(c_compilers(&layout, &["sparc=gcc".into()]).is_err());
        assert!(c_compilers(&layout, &["gcc".into()]).is_err());
    }

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        assert_eq!(quote("-ldflags=-s -w"), "'-ldflags=-s -w'");
        assert_eq!(quote("plain"), "plain");
    }
}
