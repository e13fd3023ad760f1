//! Packing with upx, as data: which binaries are packed, the exact upx command, and how each
//! packed binary is checked to still run on its architecture.

use camino::{Utf8Path, Utf8PathBuf};
use kubelet_upstream::rules::{self, Binary, SmokeTest};
use kubelet_upstream::{Arch, Release};

use crate::compile::unpacked_path;
use crate::layout::Layout;

/// Best compression: these tools run rarely, so decompression time matters less than disk.
/// Not `--lzma`: upx 3.94's LZMA output of a static Go binary segfaulted on arm64 here.
/// `-q`: one line per binary is enough in a build log.
pub const UPX_ARGS: [&str; 3] = ["--best", "--no-progress", "-q"];
/// The host tools are small C programs, packed with LZMA: about a fifth smaller than `--best`
/// alone (mkfs.xfs for armv7: 433 KB against 552 KB), and each packed program is run before it
/// ships.
pub const HOST_TOOL_UPX_ARGS: [&str; 4] = ["--best", "--lzma", "--no-progress", "-q"];

/// How one binary of one architecture is shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackStep {
    pub binary: Binary,
    pub arch: Arch,
    pub input: Utf8PathBuf,
    pub output: Utf8PathBuf,
    /// Whether upx packs it; otherwise the unpacked binary ships.
    pub packed: bool,
    /// How the packed binary is run before it ships, and what it must print.
    pub smoke_test: SmokeTest,
    pub expected_output: String,
}

/// Where the final binary of a release and architecture lives, packed or not.
pub fn final_path(layout: &Layout, release: &Release, arch: Arch, binary: &Binary) -> Utf8PathBuf {
    layout
        .binaries(release.version, arch)
        .join("bin")
        .join(&binary.name)
}

pub fn pack_step(
    layout: &Layout,
    release: &Release,
    arch: Arch,
    binary: &Binary,
    pack_daemons: bool,
    expected_output: &str,
) -> PackStep {
    PackStep {
        binary: binary.clone(),
        arch,
        input: unpacked_path(layout, release, arch, binary),
        output: final_path(layout, release, arch, binary),
        packed: binary.pack || pack_daemons,
        smoke_test: rules::smoke_test(binary.kind),
        expected_output: expected_output.to_owned(),
    }
}

impl PackStep {
    /// upx's arguments, writing to `output`: the shipped path in plans, a temporary name
    /// beside it when it runs.
    pub fn upx_args(&self, output: &Utf8Path) -> Vec<String> {
        let mut args: Vec<String> = UPX_ARGS.iter().map(|a| a.to_string()).collect();
        args.extend(["-o".to_owned(), output.to_string(), self.input.to_string()]);
        args
    }

    pub fn display(&self) -> String {
        let test = &self.smoke_test;
        let env: Vec<String> = test.env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        let runner = match Arch::host() {
            Some(host) if host == self.arch => String::new(),
            _ => format!("{} ", self.arch.qemu_user()),
        };
        format!(
            "upx {}; then {}{}{} {}",
            self.upx_args(&self.output).join(" "),
            env.concat(),
            runner,
            self.output,
            test.args.join(" ")
        )
    }
}
