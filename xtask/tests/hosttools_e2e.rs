//! The host tools, cross-compiled from their pinned tarballs for every architecture: each
//! program is static, of its architecture, and prints its version there (under qemu-user for
//! arm). The amd64 builds then do their job on this host: iptables programs a rule in a network
//! namespace of its own, blkid, mkfs.ext4, fsck.ext4 and resize2fs take a volume through what
//! kubelet's mount code does with it, and mkfs.xfs formats one that blkid then finds.
//! Every program ships packed with upx, and a second run builds nothing.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use camino::Utf8Path;
use kubelet_upstream::hosttools::{
    HostTool, E2FSPROGS, HOST_TOOLS, IPTABLES, UTIL_LINUX, XFSPROGS,
};
use kubelet_upstream::Arch;

/// upx writes this in the header of every file it packs.
const UPX_MAGIC: &[u8] = b"UPX!";
/// The namespace the rule goes into; it only ever holds that rule.
const NETNS: &str = "ck-hosttools-e2e";

fn tools(cache: &Path) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("tools")
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
fn host_tools_build_static_for_every_arch_and_work() {
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

    for tool in HOST_TOOLS {
        for arch in Arch::ALL {
            for program in tool.programs {
                let path = support::installed_host_tool(tool, arch, program.installed);
                assert!(
                    printed.contains(path.to_str().unwrap()),
                    "{} {arch} not printed: {printed}",
                    program.installed
                );
                let utf8 = Utf8Path::from_path(&path).unwrap();
                let info = xtask::check_elf(utf8, arch).unwrap();
                assert!(!info.has_interpreter, "{arch}: static");
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    bytes.windows(UPX_MAGIC.len()).any(|w| w == UPX_MAGIC),
                    "{} {arch}: packed with upx",
                    program.installed
                );
                for link in program.links {
                    let target = std::fs::read_link(path.with_file_name(link)).unwrap();
                    assert_eq!(target, path.file_name().unwrap(), "{link}");
                }
                let output = xtask::run_on(utf8, arch, program.version_args, &[]).unwrap();
                assert!(
                    output.code == Some(program.version_exit)
                        && output.text.contains(program.version_output),
                    "{} {arch}: {}",
                    program.installed,
                    output.text
                );
            }
        }
    }

    check_iptables_rule(&support::installed_host_tool(
        &IPTABLES,
        Arch::Amd64,
        IPTABLES.programs[0].installed,
    ));
    check_ext4_volume(work.path());
    check_xfs_volume(work.path());

    let second = tools(&cache);
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(!log.contains("building"), "nothing is rebuilt: {log}");
}

/// qemu-user cannot pass netfilter's socket options, so only the native build programs a rule:
/// a DNAT like kube-proxy's, in a namespace that is deleted again.
fn check_iptables_rule(program: &Path) {
    let program = program.to_str().unwrap();
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
        .args(["netns", "exec", NETNS, program, "iptables"])
        .args(rule)
        .output()
        .unwrap();
    let listed = run(
        "ip",
        &[
            "netns", "exec", NETNS, program, "iptables", "-t", "nat", "-S", "OUTPUT",
        ],
    );
    run("ip", &["netns", "delete", NETNS]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(
        listed.contains(
            "-A OUTPUT -d 127.0.0.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:8080"
        ),
        "{listed}"
    );
}

/// What kubelet's mount code does with a new ext4 volume, with the amd64 builds on a file: blkid
/// finds no file system (exit status 2), mkfs.ext4 formats it, blkid then reports ext4,
/// fsck.ext4 and `fsck -a` find it clean, and resize2fs grows it.
fn check_ext4_volume(dir: &Path) {
    let tool = |tool: &HostTool, path: &str| {
        support::installed_host_tool(tool, Arch::Amd64, path)
            .to_str()
            .unwrap()
            .to_owned()
    };
    let blkid = tool(&UTIL_LINUX, "usr/bin/blkid");
    let image = dir.join("volume.img");
    let image = image.to_str().unwrap();
    std::fs::write(image, vec![0u8; 8 << 20]).unwrap();
    let probe = ["-p", "-s", "TYPE", "-s", "PTTYPE", "-o", "export", image];
    let blank = Command::new(&blkid).args(probe).output().unwrap();
    assert_eq!(blank.status.code(), Some(2), "{blank:?}");
    run(
        &tool(&E2FSPROGS, "usr/sbin/mkfs.ext4"),
        &["-q", "-F", "-m0", image],
    );
    let text = run(&blkid, &probe);
    assert!(text.contains("TYPE=ext4"), "{text}");
    run(
        &tool(&E2FSPROGS, "usr/sbin/fsck.ext4"),
        &["-f", "-n", image],
    );
    // What mount-utils runs before it mounts: util-linux's fsck, which finds fsck.ext4 on PATH.
    let e2fsprogs_dir = Path::new(&tool(&E2FSPROGS, "usr/sbin/fsck.ext4"))
        .parent()
        .unwrap()
        .to_owned();
    let checked = Command::new(tool(&UTIL_LINUX, "usr/sbin/fsck"))
        .args(["-a", image])
        .env("PATH", format!("{}:/usr/bin:/bin", e2fsprogs_dir.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && text.contains("clean"),
        "fsck -a: {text}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let file = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    file.set_len(16 << 20).unwrap();
    let grown = run(&tool(&E2FSPROGS, "usr/sbin/resize2fs"), &[image]);
    assert!(grown.contains("is now"), "{grown}");
}

/// SafeFormatAndMount's path for an xfs volume, with the amd64 builds: mkfs.xfs formats a blank
/// file (it needs 300 MiB at least), xfs_repair -n finds it sound, and blkid reports xfs.
fn check_xfs_volume(dir: &Path) {
    let image = dir.join("xfs.img");
    let file = std::fs::File::create(&image).unwrap();
    file.set_len(300 << 20).unwrap();
    let image = image.to_str().unwrap();
    let mkfs = support::installed_host_tool(&XFSPROGS, Arch::Amd64, "usr/sbin/mkfs.xfs");
    run(mkfs.to_str().unwrap(), &["-q", image]);
    // What mount-utils runs on an xfs volume before it mounts it.
    let repair = support::installed_host_tool(&XFSPROGS, Arch::Amd64, "usr/sbin/xfs_repair");
    run(repair.to_str().unwrap(), &["-n", image]);
    let blkid = support::installed_host_tool(&UTIL_LINUX, Arch::Amd64, "usr/bin/blkid");
    let text = run(
        blkid.to_str().unwrap(),
        &["-p", "-s", "TYPE", "-o", "export", image],
    );
    assert!(text.contains("TYPE=xfs"), "{text}");
}
