//! The pinned upstream matrix of containerized-kubelet, and every rule that depends on the
//! Kubernetes version. The xtask reads this crate; nothing here runs a process or touches the
//! network, so its tests are fast and exhaustive.

mod component;
pub mod hostcommands;
pub mod hosttools;
mod manifest;
pub mod modules;
pub mod node;
mod platform;
pub mod rules;
mod version;

pub use component::Component;
pub use manifest::{GoproxySubstitute, Manifest, ManifestError, Pin, Release, SCHEMA_VERSION};
pub use platform::Arch;
pub use version::{GoVersion, KubeVersion, VersionError};

/// The manifest's path relative to the workspace root.
pub const MANIFEST_FILE: &str = "kubelet-upstream/upstream.toml";

/// The committed manifest, for tests and tools that must not depend on the working directory.
pub const MANIFEST_TEXT: &str = include_str!("../upstream.toml");

#[cfg(test)]
mod tests;
