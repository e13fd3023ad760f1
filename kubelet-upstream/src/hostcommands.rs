//! The host commands each image needs for a Kubernetes release, and where each comes from: a
//! program of a pinned host tool ([`crate::hosttools`]), the iptables wrapper, the base image's
//! busybox, or nothing yet. The images are complete when every command has a source; the build
//! names the ones that do not.

use crate::hosttools::{HostTool, ToolProgram, E2FSPROGS, IPTABLES, UTIL_LINUX, XFSPROGS};
use crate::rules::Image;
use crate::KubeVersion;

/// The commands the iptables wrapper links to the host's backend on first use, under `/sbin`.
pub const IPTABLES_WRAPPED: [&str; 6] = [
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];
/// The wrapper's path in the image; the links above point at it.
pub const IPTABLES_WRAPPER_PATH: &str = "usr/sbin/iptables-wrapper";
/// Where the wrapped commands' links live.
pub const IPTABLES_WRAPPED_DIR: &str = "sbin";

/// Why the netfilter commands that need libmnl are not built: the one gap in the images.
pub const NEEDS_LIBMNL: &str =
    "needs libmnl with libnftnl, or libnfnetlink and libnetfilter_conntrack, which are not pinned yet";

/// Where an image gets a host command from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandSource {
    /// A program of a pinned host tool: the one whose file name or link is the command.
    Tool(&'static HostTool),
    /// `iptables-wrapper`, linked as the command, which picks legacy or nft on first use.
    IptablesWrapper,
    /// An applet of the base image's busybox.
    Busybox,
    /// No pinned source builds it yet; why.
    NotBuilt(&'static str),
}

/// A command an image needs, from which release on and until which, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCommand {
    pub command: &'static str,
    pub source: CommandSource,
    pub since: Option<(u32, u32)>,
    pub until: Option<(u32, u32)>,
    pub why: &'static str,
}

impl HostCommand {
    /// The tool program that provides the command, for commands a host tool provides.
    pub fn program(&self) -> Option<(&'static HostTool, &'static ToolProgram)> {
        match self.source {
            CommandSource::Tool(tool) => tool
                .programs
                .iter()
                .find(|program| program.provides(self.command))
                .map(|program| (tool, program)),
            _ => None,
        }
    }

    /// Why nothing builds the command yet, for commands that are not built.
    pub fn not_built_reason(&self) -> Option<&'static str> {
        match self.source {
            CommandSource::NotBuilt(reason) => Some(reason),
            _ => None,
        }
    }

    fn applies_to(&self, version: KubeVersion) -> bool {
        let line = version.minor_line();
        self.since.is_none_or(|since| line >= since) && self.until.is_none_or(|until| line < until)
    }
}

const fn always(command: &'static str, source: CommandSource, why: &'static str) -> HostCommand {
    HostCommand {
        command,
        source,
        since: None,
        until: None,
        why,
    }
}

const fn until(
    command: &'static str,
    source: CommandSource,
    until: (u32, u32),
    why: &'static str,
) -> HostCommand {
    HostCommand {
        until: Some(until),
        ..always(command, source, why)
    }
}

const fn since(
    command: &'static str,
    source: CommandSource,
    since: (u32, u32),
    why: &'static str,
) -> HostCommand {
    HostCommand {
        since: Some(since),
        ..always(command, source, why)
    }
}

use CommandSource::{Busybox, IptablesWrapper, NotBuilt, Tool};

/// kubelet stopped owning the KUBE-MARK chains (IPTablesOwnershipCleanup) in 1.28.
const KUBELET_IPTABLES_UNTIL: (u32, u32) = (1, 28);
/// kube-proxy clears stale UDP entries through netlink from 1.32 on, not the conntrack binary.
const KUBE_PROXY_CONNTRACK_UNTIL: (u32, u32) = (1, 32);
/// kube-proxy's nftables mode, which runs nft, arrived in 1.29.
const KUBE_PROXY_NFT_SINCE: (u32, u32) = (1, 29);

/// What kubelet runs itself: mount-utils (util-linux's mount, umount, blkid, losetup and fsck,
/// since busybox's blkid does not print what it parses and its fsck cannot tell a volume's type),
/// SafeFormatAndMount and volume expansion (e2fsprogs, xfsprogs), and until 1.28 its own iptables chains. findmnt and nsenter served only
/// `--containerized`, which 1.16 removed.
pub const KUBELET_COMMANDS: &[HostCommand] = &[
    always("mount", Tool(&UTIL_LINUX), "mount-utils mounts volumes"),
    always("umount", Tool(&UTIL_LINUX), "mount-utils unmounts volumes"),
    always(
        "losetup",
        Tool(&UTIL_LINUX),
        "block volumes are attached as loop devices",
    ),
    always(
        "blkid",
        Tool(&UTIL_LINUX),
        "SafeFormatAndMount detects existing filesystems",
    ),
    always(
        "mkfs.ext4",
        Tool(&E2FSPROGS),
        "SafeFormatAndMount formats new volumes",
    ),
    always(
        "fsck",
        Tool(&UTIL_LINUX),
        "SafeFormatAndMount checks ext volumes before mounting them (`fsck -a`)",
    ),
    always("fsck.ext4", Tool(&E2FSPROGS), "what fsck runs for ext4"),
    always("resize2fs", Tool(&E2FSPROGS), "ext4 volume expansion"),
    always(
        "xfs_repair",
        Tool(&XFSPROGS),
        "SafeFormatAndMount checks xfs volumes before mounting them",
    ),
    always(
        "mkfs.xfs",
        Tool(&XFSPROGS),
        "SafeFormatAndMount formats xfs volumes",
    ),
    always("xfs_growfs", Tool(&XFSPROGS), "xfs volume expansion"),
    until(
        "iptables",
        IptablesWrapper,
        KUBELET_IPTABLES_UNTIL,
        "kubelet owns KUBE-MARK chains until IPTablesOwnershipCleanup",
    ),
    until(
        "ip6tables",
        IptablesWrapper,
        KUBELET_IPTABLES_UNTIL,
        "kubelet owns KUBE-MARK chains until IPTablesOwnershipCleanup",
    ),
    until(
        "iptables-legacy",
        Tool(&IPTABLES),
        KUBELET_IPTABLES_UNTIL,
        "the wrapper's legacy backend",
    ),
    until(
        "ip6tables-legacy",
        Tool(&IPTABLES),
        KUBELET_IPTABLES_UNTIL,
        "the wrapper's legacy backend",
    ),
    until(
        "iptables-nft",
        NotBuilt(NEEDS_LIBMNL),
        KUBELET_IPTABLES_UNTIL,
        "the wrapper's nft backend",
    ),
];

/// What `kubeadm join` preflight looks up on PATH; kubeadm itself only checks they are there.
pub const KUBEADM_COMMANDS: &[HostCommand] = &[
    always("nsenter", Busybox, "kubeadm preflight"),
    always("ip", Busybox, "kubeadm preflight"),
    always("conntrack", NotBuilt(NEEDS_LIBMNL), "kubeadm preflight"),
    always("iptables", IptablesWrapper, "kubeadm preflight"),
    always(
        "iptables-legacy",
        Tool(&IPTABLES),
        "the wrapper's legacy backend",
    ),
    always(
        "ip6tables-legacy",
        Tool(&IPTABLES),
        "the wrapper's legacy backend",
    ),
];

/// What kube-proxy programs the node with.
pub const KUBE_PROXY_COMMANDS: &[HostCommand] = &[
    always("iptables", IptablesWrapper, "iptables mode"),
    always("iptables-save", IptablesWrapper, "iptables mode"),
    always("iptables-restore", IptablesWrapper, "iptables mode"),
    always("ip6tables", IptablesWrapper, "iptables mode, IPv6"),
    always("ip6tables-save", IptablesWrapper, "iptables mode, IPv6"),
    always("ip6tables-restore", IptablesWrapper, "iptables mode, IPv6"),
    always(
        "iptables-legacy",
        Tool(&IPTABLES),
        "hosts still on the legacy backend",
    ),
    always(
        "ip6tables-legacy",
        Tool(&IPTABLES),
        "hosts still on the legacy backend",
    ),
    always(
        "iptables-nft",
        NotBuilt(NEEDS_LIBMNL),
        "hosts on the nft backend",
    ),
    always(
        "ip6tables-nft",
        NotBuilt(NEEDS_LIBMNL),
        "hosts on the nft backend",
    ),
    always("ipset", NotBuilt(NEEDS_LIBMNL), "ipvs mode"),
    until(
        "conntrack",
        NotBuilt(NEEDS_LIBMNL),
        KUBE_PROXY_CONNTRACK_UNTIL,
        "stale UDP conntrack entries",
    ),
    always("modprobe", Busybox, "loads the ipvs and conntrack modules"),
    since(
        "nft",
        NotBuilt(NEEDS_LIBMNL),
        KUBE_PROXY_NFT_SINCE,
        "nftables mode",
    ),
];

/// The host commands `image` needs for `version`, deduplicated, in table order.
pub fn host_commands(image: Image, version: KubeVersion) -> Vec<HostCommand> {
    let tables: &[&[HostCommand]] = match image {
        Image::KubeProxy => &[KUBE_PROXY_COMMANDS],
        image if image.carries_kubeadm() => &[KUBELET_COMMANDS, KUBEADM_COMMANDS],
        _ => &[KUBELET_COMMANDS],
    };
    let mut wanted: Vec<HostCommand> = Vec::new();
    for row in tables.iter().flat_map(|table| table.iter()) {
        if row.applies_to(version) && !wanted.iter().any(|w| w.command == row.command) {
            wanted.push(*row);
        }
    }
    wanted
}

/// The tool programs an image carries for `version`, each once, in table order.
pub fn tool_programs(
    image: Image,
    version: KubeVersion,
) -> Vec<(&'static HostTool, &'static ToolProgram)> {
    let mut programs: Vec<(&HostTool, &ToolProgram)> = Vec::new();
    for (tool, program) in host_commands(image, version)
        .iter()
        .filter_map(HostCommand::program)
    {
        if !programs
            .iter()
            .any(|(_, p)| p.installed == program.installed)
        {
            programs.push((tool, program));
        }
    }
    programs
}

/// Whether the image carries the iptables wrapper for `version`.
pub fn needs_iptables_wrapper(image: Image, version: KubeVersion) -> bool {
    host_commands(image, version)
        .iter()
        .any(|c| c.source == IptablesWrapper)
}

/// The commands an image needs that nothing builds yet, with why.
pub fn not_built(image: Image, version: KubeVersion) -> Vec<HostCommand> {
    host_commands(image, version)
        .into_iter()
        .filter(|c| c.not_built_reason().is_some())
        .collect()
}

/// The README's table of every host command: which images need it in which releases, where it
/// comes from, and what for.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Command | Images | Releases | From | What for |\n| --- | --- | --- | --- | --- |\n",
    );
    let tables: [(&str, &[HostCommand]); 3] = [
        ("kubelet (all five)", KUBELET_COMMANDS),
        ("kubeadm, kubeadm-cni", KUBEADM_COMMANDS),
        ("kube-proxy", KUBE_PROXY_COMMANDS),
    ];
    for (images, table) in tables {
        for row in table {
            let releases = match (row.since, row.until) {
                (None, None) => "all".to_owned(),
                (Some((ma, mi)), None) => format!("{ma}.{mi} and later"),
                (None, Some((ma, mi))) => format!("before {ma}.{mi}"),
                (Some((a, b)), Some((c, d))) => format!("{a}.{b} to before {c}.{d}"),
            };
            let from = match row.source {
                Tool(tool) => {
                    let program = row.program().map_or("?", |(_, p)| p.file_name());
                    format!("{} {} (`{program}`)", tool.name(), tool.version())
                }
                IptablesWrapper => "`iptables-wrapper`, to the host's backend".to_owned(),
                Busybox => "the base's busybox".to_owned(),
                NotBuilt(reason) => format!("**not built yet**: {reason}"),
            };
            out.push_str(&format!(
                "| `{}` | {images} | {releases} | {from} | {} |\n",
                row.command, row.why
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> KubeVersion {
        text.parse().unwrap()
    }

    fn commands(image: Image, version: &str) -> Vec<&'static str> {
        host_commands(image, v(version))
            .iter()
            .map(|c| c.command)
            .collect()
    }

    #[test]
    fn host_commands_follow_the_release() {
        assert!(commands(Image::Kubelet, "v1.26.0").contains(&"iptables"));
        assert!(!commands(Image::Kubelet, "v1.28.0").contains(&"iptables"));
        assert!(!commands(Image::Kubelet, "v1.26.0").contains(&"findmnt"));
        assert!(commands(Image::KubeletKubeadm, "v1.28.0").contains(&"conntrack"));
        assert!(commands(Image::KubeletKubeadm, "v1.28.0").contains(&"iptables"));
        assert!(!commands(Image::KubeProxy, "v1.28.0").contains(&"nft"));
        assert!(commands(Image::KubeProxy, "v1.29.0").contains(&"nft"));
        assert!(commands(Image::KubeProxy, "v1.31.0").contains(&"conntrack"));
        assert!(!commands(Image::KubeProxy, "v1.32.0").contains(&"conntrack"));
    }

    #[test]
    fn every_tool_command_names_a_program_of_its_tool() {
        for table in [KUBELET_COMMANDS, KUBEADM_COMMANDS, KUBE_PROXY_COMMANDS] {
            for row in table {
                if let Tool(tool) = row.source {
                    let (found, program) = row.program().unwrap_or_else(|| {
                        panic!("{} is not a program of {}", row.command, tool.name())
                    });
                    assert_eq!(found.name(), tool.name());
                    assert!(tool.programs.contains(program));
                }
            }
        }
    }

    #[test]
    fn images_carry_only_the_programs_their_commands_need() {
        let installed = |image, version| -> Vec<&str> {
            tool_programs(image, v(version))
                .iter()
                .map(|(_, p)| p.installed)
                .collect()
        };
        let kubelet = installed(Image::Kubelet, "v1.26.0");
        assert!(kubelet.contains(&"usr/bin/mount") && kubelet.contains(&"usr/sbin/mke2fs"));
        assert_eq!(
            kubelet
                .iter()
                .filter(|p| **p == "usr/sbin/xtables-legacy-multi")
                .count(),
            1,
            "one program for both legacy commands"
        );
        assert!(!installed(Image::Kubelet, "v1.28.0").contains(&"usr/sbin/xtables-legacy-multi"));
        let proxy = installed(Image::KubeProxy, "v1.26.0");
        assert_eq!(proxy, ["usr/sbin/xtables-legacy-multi"]);
        assert!(needs_iptables_wrapper(Image::KubeProxy, v("v1.37.1")));
        assert!(needs_iptables_wrapper(Image::KubeletKubeadm, v("v1.37.1")));
        assert!(!needs_iptables_wrapper(Image::Kubelet, v("v1.37.1")));
    }

    #[test]
    fn what_is_not_built_is_named_with_a_reason() {
        let missing: Vec<&str> = not_built(Image::KubeProxy, v("v1.26.0"))
            .iter()
            .map(|c| c.command)
            .collect();
        assert_eq!(
            missing,
            ["iptables-nft", "ip6tables-nft", "ipset", "conntrack"]
        );
        for row in not_built(Image::KubeletKubeadmCni, v("v1.37.1")) {
            let reason = row.not_built_reason().unwrap();
            assert!(reason.contains("not pinned yet"), "{reason}");
        }
    }
}
