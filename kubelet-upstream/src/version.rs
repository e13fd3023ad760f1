//! Kubernetes release versions (`v1.26.0`) and Go versions (`1.19.4`).

use std::fmt;
use std::str::FromStr;

/// A Kubernetes release tag such as `v1.26.0`. Pre-releases are not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed version `{input}`: expected a release tag like v1.26.0 (v, then MAJOR.MINOR.PATCH)"
)]
pub struct VersionError {
    pub input: String,
}

impl KubeVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        KubeVersion {
            major,
            minor,
            patch,
        }
    }

    /// `(major, minor)`, the unit that upstream support windows and cri-tools follow.
    pub fn minor_line(self) -> (u32, u32) {
        (self.major, self.minor)
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self.minor_line() >= (major, minor)
    }
}

impl FromStr for KubeVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = || VersionError {
            input: input.to_owned(),
        };
        let rest = input.strip_prefix('v').ok_or_else(error)?;
        let [major, minor, patch] = parse_dotted::<3>(rest).ok_or_else(error)?;
        Ok(KubeVersion::new(major, minor, patch))
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A Go toolchain release such as `1.19.4` (shown as `go1.19.4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl GoVersion {
    /// The first Go whose `go` command downloads other toolchains itself (`GOTOOLCHAIN`).
    pub const FIRST_WITH_TOOLCHAIN_SWITCH: GoVersion = GoVersion {
        major: 1,
        minor: 21,
        patch: 0,
    };

    /// The name the go command and the `golang.org/toolchain` module use: `go1.19.4`.
    pub fn toolchain_name(self) -> String {
        format!("go{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for GoVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let rest = input.strip_prefix("go").unwrap_or(input);
        let [major, minor, patch] = parse_dotted::<3>(rest).ok_or_else(|| VersionError {
            input: input.to_owned(),
        })?;
        Ok(GoVersion {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Parses exactly `N` dot-separated decimal numbers without leading zeros or signs.
fn parse_dotted<const N: usize>(text: &str) -> Option<[u32; N]> {
    let mut numbers = [0u32; N];
    let mut parts = text.split('.');
    for slot in numbers.iter_mut() {
        let part = parts.next()?;
        let canonical = !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'));
        if !canonical {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    parts.next().is_none().then_some(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_tags() {
        let version: KubeVersion = "v1.26.0".parse().unwrap();
        assert_eq!(version, KubeVersion::new(1, 26, 0));
        assert_eq!(version.to_string(), "v1.26.0");
        assert!(version.at_least(1, 24));
        assert!(!version.at_least(1, 27));
    }

    #[test]
    fn rejects_malformed_tags() {
        for bad in [
            "1.26.0",
            "v1.26",
            "v1.26.0.1",
            "v1.26.x",
            "v1.026.0",
            "v1.26.0-rc.1",
            "",
            "v",
        ] {
            let error = bad.parse::<KubeVersion>().unwrap_err();
            assert!(error
                .to_string()
                .contains("expected a release tag like v1.26.0"));
        }
    }

    #[test]
    fn orders_numerically() {
        let older: KubeVersion = "v1.9.10".parse().unwrap();
        let newer: KubeVersion = "v1.10.0".parse().unwrap();
        assert!(older < newer);
    }

    #[test]
    fn parses_go_versions() {
        let go: GoVersion = "1.19.4".parse().unwrap();
        assert_eq!(go.toolchain_name(), "go1.19.4");
        assert_eq!("go1.19.4".parse::<GoVersion>().unwrap(), go);
        assert!(go < GoVersion::FIRST_WITH_TOOLCHAIN_SWITCH);
        assert!("1.19".parse::<GoVersion>().is_err());
    }
}
