//! `dockerfiles/iptables-wrapper` under Alpine's own busybox sh, in a chroot of the fixture
//! minirootfs laid out as the image build lays it out: the six commands in /sbin link to the
//! wrapper, and stand-in backends record how they were called. The wrapper must pick legacy when
//! the image has no nft backend, relink all six commands to it, run the command it was called as
//! with its arguments, and change nothing when a backend is missing.

mod support;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use kubelet_upstream::hostcommands::{
    IPTABLES_WRAPPED, IPTABLES_WRAPPED_DIR, IPTABLES_WRAPPER_PATH,
};

const MINIROOTFS: &str = "alpine-minirootfs-3.20.3-x86_64.tar.gz";

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The minirootfs with the wrapper installed and its six links, as `image` stages them.
fn root_with_wrapper() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(support::minirootfs_dir().join(MINIROOTFS))
        .arg("-C")
        .arg(root.path())
        .status()
        .unwrap();
    assert!(status.success());
    let wrapper = root.path().join(IPTABLES_WRAPPER_PATH);
    std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
    std::fs::copy(
        workspace_root().join("dockerfiles/iptables-wrapper"),
        &wrapper,
    )
    .unwrap();
    for command in IPTABLES_WRAPPED {
        symlink(
            format!("/{IPTABLES_WRAPPER_PATH}"),
            root.path().join(IPTABLES_WRAPPED_DIR).join(command),
        )
        .unwrap();
    }
    root
}

/// A backend that says which name it ran as, with which arguments.
fn stand_in(root: &Path, name: &str) {
    let path = root.join("usr/sbin").join(name);
    std::fs::write(&path, "#!/bin/sh\necho \"backend ${0##*/} $*\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn chroot(root: &Path, args: &[&str]) -> Output {
    // The PATH below is the chroot's; the host's chroot is found with the host's.
    Command::new(which::which("chroot").unwrap())
        .arg(root)
        .args(args)
        .env("PATH", "/bin")
        .output()
        .unwrap()
}

fn link_of(root: &Path, command: &str) -> String {
    std::fs::read_link(root.join(IPTABLES_WRAPPED_DIR).join(command))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
#[ignore = "end-to-end: needs root for chroot and ../shared's Alpine minirootfs; run with -- --include-ignored (.ci/run runs as root)"]
fn the_wrapper_links_the_legacy_backend_and_runs_the_command() {
    support::require_tools("iptables_wrapper", &["chroot", "tar"]);
    support::require_minirootfs("iptables_wrapper");
    let root = root_with_wrapper();
    for command in IPTABLES_WRAPPED {
        stand_in(root.path(), &command.replacen("tables", "tables-legacy", 1));
    }
    let output = chroot(root.path(), &["/sbin/ip6tables-save", "-t", "nat"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(text.trim(), "backend ip6tables-legacy-save -t nat");
    for command in IPTABLES_WRAPPED {
        let backend = command.replacen("tables", "tables-legacy", 1);
        assert_eq!(
            link_of(root.path(), command),
            format!("/usr/sbin/{backend}")
        );
    }
    let again = chroot(root.path(), &["/sbin/iptables", "-L"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "backend iptables -L",
        "the second call runs the backend through its link, wrapper gone"
    );
}

#[test]
#[ignore = "end-to-end: needs root for chroot and ../shared's Alpine minirootfs; run with -- --include-ignored (.ci/run runs as root)"]
fn a_missing_backend_is_named_and_no_link_changes() {
    support::require_tools("iptables_wrapper", &["chroot", "tar"]);
    support::require_minirootfs("iptables_wrapper");
    let root = root_with_wrapper();
    for command in IPTABLES_WRAPPED.iter().filter(|c| !c.starts_with("ip6")) {
        stand_in(root.path(), &command.replacen("tables", "tables-legacy", 1));
    }
    let output = chroot(root.path(), &["/sbin/iptables", "-L"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ip6tables-legacy is missing from the image"),
        "{stderr}"
    );
    for command in IPTABLES_WRAPPED {
        assert_eq!(
            link_of(root.path(), command),
            format!("/{IPTABLES_WRAPPER_PATH}")
        );
    }
}

/// The script's own list of commands is the one the image build links.
#[test]
fn the_wrapper_wraps_the_commands_the_image_links() {
    let script =
        std::fs::read_to_string(workspace_root().join("dockerfiles/iptables-wrapper")).unwrap();
    let listed = script
        .lines()
        .find_map(|line| line.strip_prefix("commands=\""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("a commands=\"...\" line");
    assert_eq!(listed.split(' ').collect::<Vec<_>>(), IPTABLES_WRAPPED);
    assert!(script.contains(&format!("sbin=/{IPTABLES_WRAPPED_DIR}\n")));
}
