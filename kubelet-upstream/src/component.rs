//! The upstream projects a release is built from.

use std::fmt;

/// One upstream source tree. Each is fetched once per release and shared by every image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Kubernetes,
    CriTools,
    CniPlugins,
    FlannelPlugin,
}

impl Component {
    pub const ALL: [Component; 4] = [
        Component::Kubernetes,
        Component::CriTools,
        Component::CniPlugins,
        Component::FlannelPlugin,
    ];

    /// The key used in the manifest's `[remotes]` table and in cache paths.
    pub fn key(self) -> &'static str {
        match self {
            Component::Kubernetes => "kubernetes",
            Component::CriTools => "cri-tools",
            Component::CniPlugins => "cni-plugins",
            Component::FlannelPlugin => "flannel-plugin",
        }
    }

    /// The Go module path, which is also what the module proxy serves it under.
    pub fn module_path(self) -> &'static str {
        match self {
            Component::Kubernetes => "k8s.io/kubernetes",
            Component::CriTools => "sigs.k8s.io/cri-tools",
            Component::CniPlugins => "github.com/containernetworking/plugins",
            Component::FlannelPlugin => "github.com/flannel-io/cni-plugin",
        }
    }

    pub fn from_key(key: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.key() == key)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}
