//! The declared platform list. Every table that varies by architecture lives here, so adding
//! a platform is one new row, as in Kubernetes' `hack/lib/golang.sh`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    Amd64,
    Arm64,
    Armv7,
}

/// ELF `e_machine` values for the architectures we build.
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
pub const EM_ARM: u16 = 40;

impl Arch {
    /// In index order: image indexes list platforms in this order so their digests are stable.
    pub const ALL: [Arch; 3] = [Arch::Amd64, Arch::Arm64, Arch::Armv7];

    /// The short name used on the command line, in cache paths and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Armv7 => "armv7",
        }
    }

    pub fn goarch(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Armv7 => "arm",
        }
    }

    /// GOARM for 32-bit ARM; hard-float ARMv7 is what armhf boards run.
    pub fn goarm(self) -> Option<&'static str> {
        match self {
            Arch::Armv7 => Some("7"),
            _ => None,
        }
    }

    /// The musl target triple that zig (and most musl cross toolchains) know.
    pub fn musl_target(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-musl",
            Arch::Arm64 => "aarch64-linux-musl",
            Arch::Armv7 => "arm-linux-musleabihf",
        }
    }

    /// OCI platform `architecture` and `variant`.
    pub fn oci_architecture(self) -> &'static str {
        self.goarch()
    }

    pub fn oci_variant(self) -> Option<&'static str> {
        match self {
            Arch::Armv7 => Some("v7"),
            _ => None,
        }
    }

    /// `linux/arm/v7`, as docker buildx and buildah take it.
    pub fn platform(self) -> &'static str {
        match self {
            Arch::Amd64 => "linux/amd64",
            Arch::Arm64 => "linux/arm64",
            Arch::Armv7 => "linux/arm/v7",
        }
    }

    /// Column header of the size table, as the original project named it.
    pub fn size_table_column(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Armv7 => "arm32v7",
        }
    }

    /// Alpine's name for the architecture (minirootfs file names, APK repositories).
    pub fn alpine_arch(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
            Arch::Armv7 => "armv7",
        }
    }

    /// The qemu-user binary that runs this architecture's programs on another host.
    pub fn qemu_user(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-x86_64-static",
            Arch::Arm64 => "qemu-aarch64-static",
            Arch::Armv7 => "qemu-arm-static",
        }
    }

    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => EM_X86_64,
            Arch::Arm64 => EM_AARCH64,
            Arch::Armv7 => EM_ARM,
        }
    }

    /// The architecture this process runs on, if it is one we build.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::Amd64),
            "aarch64" => Some(Arch::Arm64),
            "arm" => Some(Arch::Armv7),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arch::ALL
            .into_iter()
            .find(|arch| arch.name() == s || arch.platform() == s)
            .ok_or_else(|| format!("unknown architecture `{s}`; expected amd64, arm64 or armv7"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(arch.name().parse::<Arch>().unwrap(), arch);
            assert_eq!(arch.platform().parse::<Arch>().unwrap(), arch);
        }
        assert!("riscv64".parse::<Arch>().is_err());
    }

    #[test]
    fn armv7_is_goarm7_hard_float() {
        assert_eq!(Arch::Armv7.goarch(), "arm");
        assert_eq!(Arch::Armv7.goarm(), Some("7"));
        assert_eq!(Arch::Armv7.musl_target(), "arm-linux-musleabihf");
        assert_eq!(Arch::Armv7.oci_variant(), Some("v7"));
    }
}
