//! End to end: a small real Go program that uses cgo, in a git repository this test creates,
//! built for amd64, arm64 and armv7 through the same code path as kubelet (git source, compile
//! step, zig wrapper, ELF checks, upx), then run natively or under qemu.

mod support;

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use git2::Repository;
use kubelet_upstream::rules::{Binary, BinaryKind};
use kubelet_upstream::{
    Arch, Component, GoVersion, Manifest, Pin, Release, MANIFEST_FILE, MANIFEST_TEXT,
};
use xshell::{cmd, Shell};
use xtask::CCompiler;
use xtask::Fetcher;
use xtask::GitFetcher;
use xtask::Layout;
use xtask::{build_release, plan_build, BuildOptions};

const MODULE: &str = "example.invalid/hello";
const TAG: &str = "v1.26.1";
const COMMIT_TIME: i64 = 1_670_544_844;
const EXPECTED: &str = "hello v1.26.1 triple=42";

const MAIN_GO: &str = r#"package main

/*
static int triple(int x) { return 3 * x; }
*/
import "C"

import (
	"fmt"
	"net"
	"os/user"

	"example.invalid/hello/pkg/version"
)

func main() {
	// net and os/user pull in libc's resolver and user database through cgo.
	_, _ = net.LookupHost("localhost")
	_, _ = user.Current()
	fmt.Printf("hello %s triple=%d\n", version.Version, int(C.triple(14)))
}
"#;

fn host_go(sh: &Shell) -> GoVersion {
    let text = cmd!(sh, "go env GOVERSION")
        .env("GOTOOLCHAIN", "local")
        .read()
        .unwrap();
    let text = text.trim().trim_start_matches("go");
    let text = if text.matches('.').count() == 1 {
        format!("{text}.0")
    } else {
        text.to_owned()
    };
    text.parse().unwrap()
}

fn upstream_repo(dir: &Utf8Path) -> String {
    let repo = Repository::init(dir).unwrap();
    support::write(
        dir.as_std_path(),
        "go.mod",
        &format!("module {MODULE}\n\ngo 1.19\n"),
    );
    support::write(
        dir.as_std_path(),
        "pkg/version/version.go",
        "package version\n\nvar Version = \"unset\"\n",
    );
    support::write(dir.as_std_path(), "cmd/hello/main.go", MAIN_GO);
    let commit = support::commit_all(&repo, "hello", COMMIT_TIME);
    support::tag(&repo, TAG, commit, COMMIT_TIME);
    commit.to_string()
}

fn release_for(commit: &str, go: GoVersion) -> Release {
    let manifest = Manifest::parse(MANIFEST_TEXT, MANIFEST_FILE).unwrap();
    let mut release = manifest
        .release("v1.26.0".parse().unwrap())
        .unwrap()
        .clone();
    release.cri_tools = Pin {
        component: Component::CriTools,
        module: MODULE.into(),
        version: TAG.into(),
        commit: commit.into(),
        module_sum: None,
        goproxy: None,
    };
    // The host's own Go: the test exercises the build, not a toolchain download.
    release.build_go = Some((go, "the test builds with the host's Go".into()));
    release
}

fn hello() -> Binary {
    Binary {
        name: "hello".into(),
        component: Component::CriTools,
        package: "cmd/hello".into(),
        pack: true,
        kind: BinaryKind::Crictl,
    }
}

#[test]
#[ignore = "end-to-end: needs qemu-user-static, zig and upx; run with -- --include-ignored (.ci/run installs them)"]
fn cgo_program_cross_compiles_for_every_arch_and_runs() {
    support::require_tools(
        "cross_compile",
        &["go", "python3", "qemu-aarch64-static", "qemu-arm-static"],
    );
    // Zig's per-target caches take minutes to fill; keep them between runs under target/.
    let cache = Utf8PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache");
    std::env::set_var(xtask::ZIG_WRAPPER_SELF_ENV, env!("CARGO_BIN_EXE_xtask"));
    let upstream_dir = tempfile::tempdir().unwrap();
    let upstream = Utf8Path::from_path(upstream_dir.path())
        .unwrap()
        .join("hello.git");
    let commit = upstream_repo(&upstream);
    let root = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let layout = Layout::new(root, cache.clone());
    // A fresh checkout and fresh outputs every run; only toolchains and compiler caches persist.
    for stale in ["sources", "out"] {
        std::fs::remove_dir_all(cache.join(stale)).ok();
    }

    let sh = Shell::new().unwrap();
    let release = release_for(&commit, host_go(&sh));
    let remotes: BTreeMap<Component, String> = Component::ALL
        .into_iter()
        .map(|c| (c, upstream.to_string()))
        .collect();
    let fetcher = GitFetcher {
        layout: &layout,
        remotes,
    };
    let tree = fetcher.fetch(&release, &release.cri_tools).unwrap();
    let trees = vec![tree];
    let options = BuildOptions {
        arches: Arch::ALL.to_vec(),
        compilers: Arch::ALL
            .into_iter()
            .map(|a| {
                (
                    a,
                    CCompiler::Zig {
                        wrapper: layout.zig_cc_wrapper(a),
                    },
                )
            })
            .collect(),
        strict: false,
        pack_daemons: false,
    };

    let plan = plan_build(&sh, &layout, &release, &trees, &[hello()], &options).unwrap();
    let manifests = build_release(&sh, &layout, &release, &plan, &options).unwrap();

    assert_eq!(manifests.len(), 3);
    for (manifest, arch) in manifests.iter().zip(Arch::ALL) {
        assert_eq!(manifest.platform, arch.platform());
        let record = manifest.binary("hello").unwrap();
        let shipped = layout.binaries(release.version, arch).join(&record.path);
        let info = xtask::check_elf(&shipped, arch).unwrap();
        assert!(!info.has_interpreter);
        let output = xtask::run_on(&shipped, arch, &["--version"], &[]).unwrap();
        assert!(
            output.success && output.text.contains(EXPECTED),
            "{arch}: {}",
            output.text
        );
        assert_eq!(record.sha256, xtask::sha256_file(&shipped).unwrap());
        // upx 4.2 packs every architecture, and the packed program is what ran above.
        let packed = record
            .packed_size
            .unwrap_or_else(|| panic!("{arch}: shipped unpacked: {record:?}"));
        assert!(packed < record.unpacked_size, "{arch}: upx made it bigger");
    }

    // A second build with nothing changed compiles nothing: the outputs stay untouched.
    let unpacked = layout
        .binaries(release.version, Arch::Arm64)
        .join("unpacked/hello");
    let before = std::fs::metadata(&unpacked).unwrap().modified().unwrap();
    let again = build_release(&sh, &layout, &release, &plan, &options).unwrap();
    assert_eq!(again, manifests);
    assert_eq!(
        std::fs::metadata(&unpacked).unwrap().modified().unwrap(),
        before
    );
}
