//! The host tools the images carry (iptables, and in time util-linux, e2fsprogs, xfsprogs,
//! ipset, nft, conntrack): pinned source tarballs, how each is configured for a static musl
//! build, and which programs it yields. The xtask cross-compiles them like the Go binaries, so an
//! image build needs no package mirror and runs no foreign-architecture program.
//!
//! Each source is pinned by its sha256. The first URL is upstream's; the second is Debian's
//! `.orig` of the same release, for hosts that reach Debian's archive and not upstream.

/// One pinned source tarball and how it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTool {
    pub name: &'static str,
    pub version: &'static str,
    /// The tarball's file name in the cache.
    pub file: &'static str,
    pub sha256: &'static str,
    /// Where the same bytes can be fetched, tried in order.
    pub urls: &'static [&'static str],
    /// How Debian's `.orig` relates to upstream's tarball.
    pub debian_orig: &'static str,
    /// `./configure` arguments besides `--host`, the compilers and the flags.
    pub configure: &'static [&'static str],
    pub programs: &'static [ToolProgram],
}

/// A program a tool builds, where the image keeps it, and the names that link to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolProgram {
    /// The path in the build tree.
    pub built: &'static str,
    /// The path in the image, without the leading `/`.
    pub installed: &'static str,
    /// Other names in the same directory that are symlinks to it.
    pub links: &'static [&'static str],
    /// Arguments that make it print its version, and what that must contain.
    pub version_args: &'static [&'static str],
    pub version_output: &'static str,
}

/// iptables with the legacy (x_tables) backend. The nft backend needs libmnl and libnftnl,
/// which are not pinned yet: their tarballs are unreachable from the build host this was
/// written on (upstream's site is out of reach and Debian's mirror there answers 404).
pub const IPTABLES: HostTool = HostTool {
    name: "iptables",
    version: "1.8.11",
    file: "iptables-1.8.11.tar.xz",
    sha256: "d87303d55ef8c92bcad4dd3f978b26d272013642b029425775f5bad1009fe7b2",
    urls: &[
        "https://www.netfilter.org/projects/iptables/files/iptables-1.8.11.tar.xz",
        "http://deb.debian.org/debian/pool/main/i/iptables/iptables_1.8.11.orig.tar.xz",
    ],
    debian_orig: "byte-identical to upstream's release tarball",
    configure: &[
        "--prefix=/usr",
        "--sbindir=/usr/sbin",
        "--enable-static",
        "--disable-shared",
        "--disable-nftables",
        "--disable-bpf-compiler",
        "--disable-nfsynproxy",
        "--disable-libipq",
        "--disable-connlabel",
        "--disable-devel",
        "--without-kernel",
    ],
    programs: &[ToolProgram {
        built: "iptables/xtables-legacy-multi",
        installed: "usr/sbin/xtables-legacy-multi",
        links: &[
            "iptables-legacy",
            "iptables-legacy-save",
            "iptables-legacy-restore",
            "ip6tables-legacy",
            "ip6tables-legacy-save",
            "ip6tables-legacy-restore",
        ],
        version_args: &["iptables", "--version"],
        version_output: "iptables v1.8.11 (legacy)",
    }],
};

/// Every pinned host tool, in build order.
pub const HOST_TOOLS: &[HostTool] = &[IPTABLES];

pub fn host_tool(name: &str) -> Option<&'static HostTool> {
    HOST_TOOLS.iter().find(|tool| tool.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_is_pinned_by_a_full_sha256_and_an_upstream_url_first() {
        for tool in HOST_TOOLS {
            assert_eq!(tool.sha256.len(), 64, "{}", tool.name);
            assert!(tool.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(tool.file.contains(tool.version), "{}", tool.name);
            assert!(!tool.urls.is_empty());
            assert!(
                !tool.urls[0].contains("debian.org"),
                "upstream first: {}",
                tool.name
            );
            for url in tool.urls {
                assert!(url.contains(tool.version), "{url}");
            }
            for program in tool.programs {
                assert!(!program.installed.starts_with('/'));
                assert!(!program.version_output.is_empty());
            }
        }
        assert_eq!(host_tool("iptables"), Some(&IPTABLES));
        assert_eq!(host_tool("nope"), None);
    }
}
