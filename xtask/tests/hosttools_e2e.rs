//! The host tools, cross-compiled from their pinned tarball for every architecture: each is a
//! static program of its architecture that prints its version there (under qemu-user for arm),
//! the amd64 iptables programs a real rule in a network namespace of its own, and a second run
//! builds nothing.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use camino::Utf8Path;
use kubelet_upstream::hosttools::IPTABLES;
use kubelet_upstream::Arch;

/// The namespace the rule goes into; it only ever holds that rule.
const NETNS: &str = "ck-hosttools-e2e";

fn tools(cache: &Path) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["tools", "--tool", "iptables"])
        .env("XTASK_CACHE_DIR", cache)
        .env("XTASK_TOOL_CACHE_DIR", support::tool_cache())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{program} {args:?}: {text}");
    text
}

#[test]
#[ignore = "end-to-end: needs curl, python3 (zig), qemu-user-static and ip; run with -- --include-ignored (.ci/run installs them)"]
fn iptables_builds_static_for_every_arch_and_programs_a_rule() {
    support::require_tools(
        "hosttools_e2e",
        &[
            "curl",
            "python3",
            "tar",
            "xz",
            "ip",
            "qemu-aarch64-static",
            "qemu-arm-static",
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let first = tools(&cache);
    let printed = String::from_utf8_lossy(&first.stdout);
    let built = &IPTABLES.programs[0];
    let tree_of = |arch: Arch| {
        cache
            .join("tools/out")
            .join(format!("{}-{}", IPTABLES.name(), IPTABLES.version()))
            .join(arch.name())
    };

    for arch in Arch::ALL {
        let program = tree_of(arch).join(built.installed);
        assert!(
            printed.contains(program.to_str().unwrap()),
            "{arch} not printed: {printed}"
        );
        let info = xtask::check_elf(Utf8Path::from_path(&program).unwrap(), arch).unwrap();
        assert!(!info.has_interpreter, "{arch}: static");
        assert!(!built.links.is_empty());
        for link in built.links {
            let target = std::fs::read_link(program.with_file_name(link)).unwrap();
            assert_eq!(target, Path::new("xtables-legacy-multi"), "{link}");
        }
        let output = xtask::run_on(
            Utf8Path::from_path(&program).unwrap(),
            arch,
            &["iptables", "--version"],
            &[],
        )
        .unwrap();
        assert!(
            output.text.contains("iptables v1.8.11 (legacy)") && output.success,
            "{arch}: {}",
            output.text
        );
    }

    // qemu-user cannot pass netfilter's socket options, so only the native build programs a
    // rule: a DNAT like kube-proxy's, in a namespace that is deleted again.
    let amd64 = tree_of(Arch::Amd64).join(built.installed);
    let amd64 = amd64.to_str().unwrap();
    Command::new("ip")
        .args(["netns", "delete", NETNS])
        .output()
        .ok();
    run("ip", &["netns", "add", NETNS]);
    let rule = [
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-d",
        "127.0.0.2/32",
        "-p",
        "tcp",
        "--dport",
        "80",
        "-j",
        "DNAT",
        "--to-destination",
        "127.0.0.1:8080",
    ];
    let added = Command::new("ip")
        .args(["netns", "exec", NETNS, amd64, "iptables"])
        .args(rule)
        .output()
        .unwrap();
    let listed = run(
        "ip",
        &[
            "netns", "exec", NETNS, amd64, "iptables", "-t", "nat", "-S", "OUTPUT",
        ],
    );
    run("ip", &["netns", "delete", NETNS]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(
        listed.contains("-A OUTPUT -d 127.0.0.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:8080"),
        "{listed}"
    );

    let second = tools(&cache);
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(!log.contains("building"), "nothing is rebuilt: {log}");
}
