//! Packing with upx, as data: which binaries are packed, how, and how each packed binary is
//! checked to still run on its architecture.

use camino::Utf8PathBuf;
use kubelet_upstream::rules::{Binary, BinaryKind};
use kubelet_upstream::{Arch, Release};

use crate::compile::unpacked_path;
use crate::layout::Layout;

/// Best compression: these tools run rarely, so decompression time matters less than disk.
/// Not `--lzma`: upx 3.94's LZMA output of a static Go binary segfaulted on arm64 here.
pub const UPX_ARGS: [&str; 2] = ["--best", "--no-progress"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackStep {
    pub binary: Binary,
    pub arch: Arch,
    pub input: Utf8PathBuf,
    pub output: Utf8PathBuf,
}

/// Arguments and environment that make a binary print its version and exit 0.
pub fn smoke_test(binary: &Binary) -> (Vec<&'static str>, Vec<(&'static str, &'static str)>) {
    match binary.kind {
        BinaryKind::Kubelet | BinaryKind::KubeProxy => (vec!["--version"], vec![]),
        BinaryKind::Kubeadm => (vec!["version", "-o", "short"], vec![]),
        BinaryKind::Crictl => (vec!["--version"], vec![]),
        // CNI plugins speak the CNI protocol: VERSION is the one command that needs no config.
        BinaryKind::CniPlugin => (vec![], vec![("CNI_COMMAND", "VERSION")]),
    }
}

/// Where the final binary of a release and architecture lives, packed or not.
pub fn final_path(layout: &Layout, release: &Release, arch: Arch, binary: &Binary) -> Utf8PathBuf {
    layout
        .binaries(release.version, arch)
        .join("bin")
        .join(&binary.name)
}

pub fn pack_step(layout: &Layout, release: &Release, arch: Arch, binary: &Binary) -> PackStep {
    PackStep {
        binary: binary.clone(),
        arch,
        input: unpacked_path(layout, release, arch, binary),
        output: final_path(layout, release, arch, binary),
    }
}

/// Whether a binary is packed: the tools always, the daemons only when asked.
pub fn wants_packing(binary: &Binary, pack_daemons: bool) -> bool {
    binary.pack || pack_daemons
}

impl PackStep {
    pub fn display(&self) -> String {
        let (args, env) = smoke_test(&self.binary);
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        let runner = match Arch::host() {
            Some(host) if host == self.arch => String::new(),
            _ => format!("{} ", self.arch.qemu_user()),
        };
        format!(
            "upx {} -o {} {}; then {}{}{} {}",
            UPX_ARGS.join(" "),
            self.output,
            self.input,
            env.concat(),
            runner,
            self.output,
            args.join(" ")
        )
    }
}
