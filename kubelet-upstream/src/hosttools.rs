//! The host tools the images carry (iptables, util-linux, e2fsprogs, xfsprogs; in time ipset,
//! nft, conntrack): pinned source tarballs, the static libraries each links, how each is
//! configured for a static musl build, and which programs it yields. The xtask cross-compiles them like the Go binaries, so an
//! image build needs no package mirror and runs no foreign-architecture program.
//!
//! Each source is pinned by its sha256. The first URL is upstream's; the second is Debian's
//! `.orig` of the same release, for hosts that reach Debian's archive and not upstream.

/// One pinned source tarball.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePin {
    pub name: &'static str,
    pub version: &'static str,
    /// The tarball's file name in the cache.
    pub file: &'static str,
    pub sha256: &'static str,
    /// Where the same bytes can be fetched, tried in order.
    pub urls: &'static [&'static str],
    /// How Debian's `.orig` relates to upstream's tarball.
    pub debian_orig: &'static str,
}

/// A host tool the images carry: its source and how it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTool {
    pub source: SourcePin,
    /// `./configure` arguments besides `--host`, the compilers and the flags.
    pub configure: &'static [&'static str],
    /// One `make` run per entry, with these arguments; `&[&[]]` is one run of the default
    /// target.
    pub make: &'static [&'static [&'static str]],
    pub programs: &'static [ToolProgram],
    /// Static libraries built first, in order, into a sysroot of the tool's own build.
    pub libraries: &'static [HostLibrary],
    /// Edits to the unpacked source before it is configured.
    pub edits: &'static [SourceEdit],
}

/// A static library a tool links, from its own pinned tarball.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLibrary {
    pub source: SourcePin,
    pub build: LibraryBuild,
}

/// How a library is built and installed into the tool's sysroot (`usr/lib`, `usr/include`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryBuild {
    /// `./configure` (with `--prefix=/usr` and these arguments), one `make` per `make` entry,
    /// then one `make DESTDIR=<sysroot>` per `install` entry.
    Autotools {
        configure: &'static [&'static str],
        make: &'static [&'static [&'static str]],
        install: &'static [&'static [&'static str]],
    },
    /// C files compiled and archived by hand, for a library whose own build system (meson)
    /// would be a whole toolchain for one file.
    Archive {
        sources: &'static [&'static str],
        archive: &'static str,
        headers: &'static [&'static str],
    },
}

/// A literal replacement in one file of a source tree, which must find its text: a pin that
/// moved on without the fix is an error, not a silent no-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceEdit {
    pub file: &'static str,
    pub find: &'static str,
    pub replace: &'static str,
    pub why: &'static str,
}

impl HostTool {
    pub fn name(&self) -> &'static str {
        self.source.name
    }

    pub fn version(&self) -> &'static str {
        self.source.version
    }
}

/// upx, built for the build host: the packer of the tools the images carry. 4.2 and newer
/// pack static amd64 Go programs that still run (3.94's crashed).
pub const UPX: SourcePin = SourcePin {
    name: "upx",
    version: "4.2.4",
    file: "upx-4.2.4-src.tar.xz",
    sha256: "5ed6561607d27fb4ef346fc19f08a93696fa8fa127081e7a7114068306b8e1c4",
    urls: &[
        "https://github.com/upx/upx/releases/download/v4.2.4/upx-4.2.4-src.tar.xz",
        "http://deb.debian.org/debian/pool/main/u/upx-ucl/upx-ucl_4.2.4.orig.tar.xz",
    ],
    debian_orig: "byte-identical to upstream's release tarball (upx-4.2.4-src.tar.xz)",
};

/// A program a tool builds, where the image keeps it, and the names that link to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolProgram {
    /// The path in the build tree.
    pub built: &'static str,
    /// The path in the image, without the leading `/`.
    pub installed: &'static str,
    /// Other names in the same directory that are symlinks to it.
    pub links: &'static [&'static str],
    /// Arguments that make it print its version, what that must contain, and the exit status
    /// it ends with (resize2fs has no version option: its usage shows the version, with 1).
    pub version_args: &'static [&'static str],
    pub version_output: &'static str,
    pub version_exit: i32,
}

impl ToolProgram {
    /// The program's own file name in the image.
    pub fn file_name(&self) -> &'static str {
        self.installed.rsplit('/').next().unwrap_or(self.installed)
    }

    /// Whether `command` runs this program: its file name or one of its links.
    pub fn provides(&self, command: &str) -> bool {
        self.file_name() == command || self.links.contains(&command)
    }
}

/// iptables with the legacy (x_tables) backend. The nft backend needs libmnl and libnftnl,
/// which are not pinned yet: their tarballs are unreachable from the build host this was
/// written on (upstream's site is out of reach and Debian's mirror there answers 404).
pub const IPTABLES: HostTool = HostTool {
    source: SourcePin {
        name: "iptables",
        version: "1.8.11",
        file: "iptables-1.8.11.tar.xz",
        sha256: "d87303d55ef8c92bcad4dd3f978b26d272013642b029425775f5bad1009fe7b2",
        urls: &[
            "https://www.netfilter.org/projects/iptables/files/iptables-1.8.11.tar.xz",
            "http://deb.debian.org/debian/pool/main/i/iptables/iptables_1.8.11.orig.tar.xz",
        ],
        debian_orig: "byte-identical to upstream's release tarball",
    },
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
    make: &[&[]],
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
        version_exit: 0,
    }],
    libraries: &[],
    edits: &[],
};

/// util-linux: its programs for kubelet, its libuuid and libblkid for tools that link them.
const UTIL_LINUX_SOURCE: SourcePin = SourcePin {
    name: "util-linux",
    version: "2.41.5",
    file: "util-linux-2.41.5.tar.xz",
    sha256: "f586e35d320ff537aab3ffeca37e9ecd482ccbe013590db4429a414d8aa6a728",
    urls: &[
        "https://www.kernel.org/pub/linux/utils/util-linux/v2.41/util-linux-2.41.5.tar.xz",
        "http://deb.debian.org/debian/pool/main/u/util-linux/util-linux_2.41.5.orig.tar.xz",
    ],
    debian_orig: "the same sha256 as upstream's tarball in a third-party package index; not compared here first-hand",
};

/// util-linux's mount, umount, blkid, losetup and fsck, which kubelet's mount code runs
/// (busybox's blkid does not print what it parses, and its fsck cannot tell a volume's type, so
/// it would check nothing). Only these programs and the libraries they need are built, each
/// linked statically (`*.static`, and fsck with the static libraries and `-static`).
pub const UTIL_LINUX: HostTool = HostTool {
    source: UTIL_LINUX_SOURCE,
    configure: &[
        // Where the programs look for their state and configuration on the node.
        "--prefix=/usr",
        "--sysconfdir=/etc",
        "--localstatedir=/var",
        "--runstatedir=/run",
        "--disable-all-programs",
        "--enable-libblkid",
        "--enable-libmount",
        "--enable-libsmartcols",
        "--enable-mount",
        "--enable-blkid",
        "--enable-losetup",
        "--enable-fsck",
        "--enable-static-programs=mount,umount,blkid,losetup",
        "--disable-shared",
        "--enable-static",
        "--disable-nls",
        "--disable-liblastlog2",
        "--disable-pylibmount",
        "--disable-bash-completion",
        "--disable-makeinstall-chown",
        "--disable-makeinstall-setuid",
        "--without-systemd",
        "--without-udev",
        "--without-python",
        "--without-tinfo",
        "--without-ncurses",
        "--without-readline",
        "--without-libmagic",
        "--without-cap-ng",
        "--without-btrfs",
        "--without-selinux",
        "--without-audit",
    ],
    make: &[&[
        "mount.static",
        "umount.static",
        "blkid.static",
        "losetup.static",
        "fsck",
    ]],
    programs: &[
        util_linux_program("mount.static", "usr/bin/mount"),
        util_linux_program("umount.static", "usr/bin/umount"),
        util_linux_program("blkid.static", "usr/bin/blkid"),
        util_linux_program("losetup.static", "usr/bin/losetup"),
        util_linux_program("fsck", "usr/sbin/fsck"),
    ],
    libraries: &[],
    edits: &[],
};

const fn util_linux_program(built: &'static str, installed: &'static str) -> ToolProgram {
    ToolProgram {
        built,
        installed,
        links: &[],
        version_args: &["--version"],
        version_output: "from util-linux 2.41.5",
        version_exit: 0,
    }
}

/// e2fsprogs' mke2fs, e2fsck and resize2fs, which kubelet runs to format, check and grow ext4
/// volumes (`mkfs.ext4`, `fsck.ext4`), with e2fsprogs' own libuuid and libblkid built in.
pub const E2FSPROGS: HostTool = HostTool {
    source: SourcePin {
        name: "e2fsprogs",
        version: "1.47.2",
        file: "e2fsprogs-1.47.2.tar.gz",
        sha256: "6dcd67ff9d8b13274ba3f088e4318be4f5b71412cd863524423fc49d39a6371f",
        urls: &[
            "https://downloads.sourceforge.net/project/e2fsprogs/e2fsprogs/v1.47.2/e2fsprogs-1.47.2.tar.gz",
            "http://deb.debian.org/debian/pool/main/e/e2fsprogs/e2fsprogs_1.47.2.orig.tar.gz",
        ],
        debian_orig: "byte-identical to upstream's .tar.gz on SourceForge; kernel.org's .tar.xz of the same release is a different file",
    },
    configure: &[
        "--disable-nls",
        "--disable-fuse2fs",
        "--disable-defrag",
        "--disable-imager",
        "--disable-debugfs",
        "--disable-uuidd",
        "--disable-fsck",
        "--disable-e2initrd-helper",
        "--disable-tdb",
        "--disable-bmap-stats",
        "--disable-backtrace",
        "--disable-elf-shlibs",
        "--enable-libuuid",
        "--enable-libblkid",
        "--without-libarchive",
        "--without-pthread",
        // musl has 64-bit lseek on every architecture but no lseek64 symbol to link against;
        // without these, 32-bit builds fall back to a raw _llseek syscall stub that no longer
        // compiles.
        "CPPFLAGS=-D_LARGEFILE64_SOURCE",
        "ac_cv_func_lseek64=yes",
    ],
    make: &[
        &["libs"],
        &["-C", "misc", "mke2fs"],
        &["-C", "e2fsck", "e2fsck"],
        &["-C", "resize", "resize2fs"],
    ],
    programs: &[
        ToolProgram {
            built: "misc/mke2fs",
            installed: "usr/sbin/mke2fs",
            links: &["mkfs.ext4", "mkfs.ext3", "mkfs.ext2"],
            version_args: &["-V"],
            version_output: "mke2fs 1.47.2",
            version_exit: 0,
        },
        ToolProgram {
            built: "e2fsck/e2fsck",
            installed: "usr/sbin/e2fsck",
            links: &["fsck.ext4", "fsck.ext3", "fsck.ext2"],
            version_args: &["-V"],
            version_output: "e2fsck 1.47.2",
            version_exit: 0,
        },
        ToolProgram {
            built: "resize/resize2fs",
            installed: "usr/sbin/resize2fs",
            links: &[],
            version_args: &[],
            version_output: "resize2fs 1.47.2",
            version_exit: 1,
        },
    ],
    libraries: &[],
    edits: &[],
};

/// util-linux's libuuid and libblkid, for tools that link them.
const LIBUUID_AND_LIBBLKID: HostLibrary = HostLibrary {
    source: UTIL_LINUX_SOURCE,
    build: LibraryBuild::Autotools {
        configure: &[
            "--disable-all-programs",
            "--enable-libuuid",
            "--enable-libblkid",
            "--disable-shared",
            "--enable-static",
            "--disable-nls",
            "--disable-asciidoc",
            "--disable-poman",
            "--disable-bash-completion",
            "--disable-makeinstall-chown",
            "--disable-makeinstall-setuid",
            "--without-python",
            "--without-systemd",
            "--without-udev",
            "--without-ncursesw",
            "--without-ncurses",
            "--without-tinfo",
            "--without-readline",
            "--without-cap-ng",
            "--without-libz",
            "--without-libmagic",
            "--without-user",
            "--without-econf",
            "--without-cryptsetup",
            "--without-selinux",
            "--without-audit",
            "--without-smack",
            "--without-btrfs",
        ],
        make: &[&["libuuid.la", "libblkid.la"]],
        // blkid.h is generated, hence its `nodist_` install target.
        install: &[&[
            "install-usrlib_execLTLIBRARIES",
            "install-uuidincHEADERS",
            "install-nodist_blkidincHEADERS",
        ]],
    },
};

/// liburcu 0.13.2: the newest release whose tarball Debian's archive still serves (0.14 and
/// 0.15 are gone from it); xfsprogs 6.13 needs 0.13 or newer.
const LIBURCU: HostLibrary = HostLibrary {
    source: SourcePin {
        name: "liburcu",
        version: "0.13.2",
        file: "userspace-rcu-0.13.2.tar.bz2",
        sha256: "1213fd9f1b0b74da7de2bb74335b76098db9738fec5d3cdc07c0c524f34fc032",
        urls: &[
            "https://lttng.org/files/urcu/userspace-rcu-0.13.2.tar.bz2",
            "http://deb.debian.org/debian/pool/main/libu/liburcu/liburcu_0.13.2.orig.tar.bz2",
        ],
        debian_orig: "Debian's liburcu_0.13.2.orig.tar.bz2, by its sha256; not compared with lttng.org's here",
    },
    build: LibraryBuild::Autotools {
        configure: &["--disable-shared", "--enable-static"],
        make: &[&["-C", "include"], &["-C", "src"]],
        install: &[&["-C", "include", "install"], &["-C", "src", "install"]],
    },
};

/// inih r59, the .ini parser xfsprogs reads its config files with: one C file.
const INIH: HostLibrary = HostLibrary {
    source: SourcePin {
        name: "inih",
        version: "59",
        file: "inih-r59.tar.gz",
        sha256: "062279922805f5e9a369551a08d5ddb506140fe50774183ffdbb7c22bb97e3f4",
        urls: &[
            "https://github.com/benhoyt/inih/archive/refs/tags/r59.tar.gz",
            "http://deb.debian.org/debian/pool/main/libi/libinih/libinih_59.orig.tar.gz",
        ],
        debian_orig: "Debian's libinih_59.orig.tar.gz, by its sha256; not compared with GitHub's archive here",
    },
    build: LibraryBuild::Archive {
        sources: &["ini.c"],
        archive: "libinih.a",
        headers: &["ini.h"],
    },
};

/// xfsprogs' mkfs.xfs, xfs_repair and xfs_growfs, which kubelet runs to format, check and grow
/// xfs volumes, with
/// liburcu, inih, libuuid and libblkid (topology, and refusing to overwrite a file system)
/// linked in.
pub const XFSPROGS: HostTool = HostTool {
    source: SourcePin {
        name: "xfsprogs",
        version: "6.13.0",
        file: "xfsprogs-6.13.0.tar.xz",
        sha256: "0459933f93d94c82bc2789e7bd63742273d9d74207cdae67dc3032038da08337",
        urls: &[
            "https://www.kernel.org/pub/linux/utils/fs/xfs/xfsprogs/xfsprogs-6.13.0.tar.xz",
            "http://deb.debian.org/debian/pool/main/x/xfsprogs/xfsprogs_6.13.0.orig.tar.xz",
        ],
        debian_orig: "Debian's xfsprogs_6.13.0.orig.tar.xz, by its sha256; not compared with kernel.org's here",
    },
    configure: &[
        "--prefix=/usr",
        // Build-time generators run on the build host.
        "BUILD_CC=gcc",
        "CXX=no",
        // zig cc drops its musl headers for `-MM` with several files; no dependency files.
        "ac_cv_gcc_nodeps=no",
        // Otherwise xfsprogs appends `-g -O2 -DDEBUG`.
        "DEBUG=-DNDEBUG",
        "OPTIMIZER=-Os",
        "--enable-shared=no",
        "--enable-gettext=no",
        "--enable-editline=no",
        "--enable-termcap=no",
        "--enable-lib64=no",
        "--enable-scrub=no",
        "--enable-libicu=no",
        "--enable-lto=no",
        "--enable-ubsan=no",
        "--enable-addrsan=no",
        "--enable-threadsan=no",
        "--with-systemd-unit-dir=no",
        "--with-crond-dir=no",
        "--with-udev-rule-dir=no",
    ],
    // `EXTRA_CXXFILES=` skips a C++ header test; mkfs re-enters libxfs, so both lines need it.
    make: &[
        &["headers"],
        &["libfrog", "libxfs", "libxcmd", "libxlog", "EXTRA_CXXFILES="],
        &["mkfs", "repair", "growfs", "EXTRA_CXXFILES="],
    ],
    programs: &[
        ToolProgram {
            built: "mkfs/mkfs.xfs",
            installed: "usr/sbin/mkfs.xfs",
            links: &[],
            version_args: &["-V"],
            version_output: "mkfs.xfs version 6.13.0",
            version_exit: 0,
        },
        ToolProgram {
            built: "repair/xfs_repair",
            installed: "usr/sbin/xfs_repair",
            links: &[],
            version_args: &["-V"],
            version_output: "xfs_repair version 6.13.0",
            version_exit: 0,
        },
        ToolProgram {
            built: "growfs/xfs_growfs",
            installed: "usr/sbin/xfs_growfs",
            links: &[],
            version_args: &["-V"],
            version_output: "xfs_growfs version 6.13.0",
            version_exit: 0,
        },
    ],
    libraries: &[INIH, LIBURCU, LIBUUID_AND_LIBBLKID],
    edits: &[SourceEdit {
        file: "mkfs/proto.c",
        find: "static long filesize(int fd);",
        replace: "static off_t filesize(int fd);",
        why: "the prototype disagrees with the definition, an error where off_t is 64 bits and long 32 (armv7)",
    }],
};

/// Every pinned host tool, in build order.
pub const HOST_TOOLS: &[HostTool] = &[IPTABLES, UTIL_LINUX, E2FSPROGS, XFSPROGS];

pub fn host_tool(name: &str) -> Option<&'static HostTool> {
    HOST_TOOLS.iter().find(|tool| tool.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_is_pinned_by_a_full_sha256_and_an_upstream_url_first() {
        let libraries = HOST_TOOLS
            .iter()
            .flat_map(|t| t.libraries.iter().map(|l| l.source));
        let sources = HOST_TOOLS
            .iter()
            .map(|t| t.source)
            .chain(libraries)
            .chain([UPX]);
        for source in sources {
            assert_eq!(source.sha256.len(), 64, "{}", source.name);
            assert!(source.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(source.file.contains(source.version), "{}", source.name);
            assert!(
                source
                    .urls
                    .iter()
                    .all(|url| url.ends_with(&source.file[source.file.len() - 7..])),
                "{}: every URL serves the same kind of tarball",
                source.name
            );
            assert!(!source.urls.is_empty());
            assert!(
                !source.urls[0].contains("debian.org"),
                "upstream first: {}",
                source.name
            );
            for url in source.urls {
                assert!(url.contains(source.version), "{url}");
            }
        }
        for tool in HOST_TOOLS {
            for program in tool.programs {
                assert!(!program.installed.starts_with('/'));
                assert!(!program.version_output.is_empty());
            }
        }
        assert_eq!(host_tool("iptables"), Some(&IPTABLES));
        assert_eq!(host_tool("nope"), None);
    }
}
