//! Rules that change with the Kubernetes version: which binaries exist, which kubelet flags
//! still exist, what each image carries and which host commands it needs.
//!
//! Everything here is data with small lookups, so a new upstream release usually means editing
//! one table row, and the tests below pin the behaviour of the releases we know.

use crate::component::Component;
use crate::manifest::Release;
use crate::version::KubeVersion;

/// A program built from one upstream component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub name: String,
    pub component: Component,
    /// The package directory inside the component's module, such as `cmd/kubelet`.
    pub package: String,
    /// Daemons stay unpacked: upx would cost memory and start-up time on every node for the
    /// lifetime of the process, and kubelet and kube-proxy are never re-executed.
    pub pack: bool,
    pub kind: BinaryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    Kubelet,
    KubeProxy,
    Kubeadm,
    Crictl,
    CniPlugin,
}

/// The CNI plugins flannel's network config chains: the flannel delegate writes a bridge config,
/// host-local hands out the addresses, portmap serves hostPort and loopback every pod needs.
pub const FLANNEL_CNI_PLUGINS: [&str; 5] =
    ["bridge", "flannel", "host-local", "loopback", "portmap"];

/// One Linux plugin of containernetworking/plugins and the releases that ship it
/// (`since` inclusive, `until` exclusive), compared as CNI plugin versions.
struct CniPluginRow {
    group: &'static str,
    name: &'static str,
    since: (u32, u32),
    until: Option<(u32, u32)>,
}

const CNI_PLUGIN_TABLE: &[CniPluginRow] = &[
    cni("main", "bridge", (0, 7), None),
    cni("main", "host-device", (0, 7), None),
    cni("main", "ipvlan", (0, 7), None),
    cni("main", "loopback", (0, 7), None),
    cni("main", "macvlan", (0, 7), None),
    cni("main", "ptp", (0, 7), None),
    cni("main", "vlan", (0, 7), None),
    cni("main", "dummy", (1, 2), None),
    cni("main", "tap", (1, 3), None),
    cni("ipam", "dhcp", (0, 7), None),
    cni("ipam", "host-local", (0, 7), None),
    cni("ipam", "static", (0, 7), None),
    cni("meta", "bandwidth", (0, 7), None),
    cni("meta", "firewall", (0, 7), None),
    cni("meta", "flannel", (0, 7), Some((1, 0))),
    cni("meta", "portmap", (0, 7), None),
    cni("meta", "sbr", (0, 7), None),
    cni("meta", "tuning", (0, 7), None),
    cni("meta", "vrf", (0, 8), None),
];

const fn cni(
    group: &'static str,
    name: &'static str,
    since: (u32, u32),
    until: Option<(u32, u32)>,
) -> CniPluginRow {
    CniPluginRow {
        group,
        name,
        since,
        until,
    }
}

/// `(major, minor)` of a component tag such as `v1.1.1` or `v1.7.1-flannel2`.
fn tag_minor_line(tag: &str) -> Option<(u32, u32)> {
    let core = tag.split('-').next()?;
    core.parse::<KubeVersion>()
        .ok()
        .map(KubeVersion::minor_line)
}

/// The Linux plugins of a containernetworking/plugins release, as `(group, name)`, sorted by name.
/// The flannel plugin is not among them: it comes from flannel-io/cni-plugin.
pub fn cni_plugins(cni_tag: &str) -> Vec<(&'static str, &'static str)> {
    let Some(line) = tag_minor_line(cni_tag) else {
        return Vec::new();
    };
    let mut plugins: Vec<_> = CNI_PLUGIN_TABLE
        .iter()
        .filter(|row| row.name != "flannel")
        .filter(|row| line >= row.since && row.until.is_none_or(|until| line < until))
        .map(|row| (row.group, row.name))
        .collect();
    plugins.sort_by_key(|&(_, name)| name);
    plugins
}

/// Every binary a release is built into, in a fixed order: Kubernetes, crictl, CNI plugins.
pub fn binaries(release: &Release) -> Vec<Binary> {
    let mut all = vec![
        kube_binary("kubelet", BinaryKind::Kubelet, false),
        kube_binary("kube-proxy", BinaryKind::KubeProxy, false),
        kube_binary("kubeadm", BinaryKind::Kubeadm, true),
        Binary {
            name: "crictl".into(),
            component: Component::CriTools,
            package: "cmd/crictl".into(),
            pack: true,
            kind: BinaryKind::Crictl,
        },
    ];
    let mut plugins: Vec<Binary> = cni_plugins(&release.cni_plugins.version)
        .into_iter()
        .map(|(group, name)| Binary {
            name: name.into(),
            component: Component::CniPlugins,
            package: format!("plugins/{group}/{name}"),
            pack: true,
            kind: BinaryKind::CniPlugin,
        })
        .collect();
    plugins.push(Binary {
        name: "flannel".into(),
        component: Component::FlannelPlugin,
        package: ".".into(),
        pack: true,
        kind: BinaryKind::CniPlugin,
    });
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    all.extend(plugins);
    all
}

fn kube_binary(name: &str, kind: BinaryKind, pack: bool) -> Binary {
    Binary {
        name: name.into(),
        component: Component::Kubernetes,
        package: format!("cmd/{name}"),
        pack,
        kind,
    }
}

/// How a built binary shows that it runs on its platform: the arguments and environment that
/// make it print its version and exit 0, without a config or a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeTest {
    pub args: Vec<&'static str>,
    pub env: Vec<(&'static str, &'static str)>,
}

pub fn smoke_test(kind: BinaryKind) -> SmokeTest {
    let (args, env) = match kind {
        BinaryKind::Kubelet | BinaryKind::KubeProxy | BinaryKind::Crictl => {
            (vec!["--version"], vec![])
        }
        BinaryKind::Kubeadm => (vec!["version", "-o", "short"], vec![]),
        // CNI plugins speak the CNI protocol: VERSION is the one command that needs no config.
        BinaryKind::CniPlugin => (vec![], vec![("CNI_COMMAND", "VERSION")]),
    };
    SmokeTest { args, env }
}

/// What the smoke test must print. `built_version` is the version of the code actually built,
/// which for a goproxy stand-in (crictl) differs from the pin.
pub fn version_output(release: &Release, kind: BinaryKind, built_version: &str) -> String {
    match kind {
        BinaryKind::Kubelet | BinaryKind::KubeProxy => format!("Kubernetes {}", release.version),
        BinaryKind::Kubeadm => release.version.to_string(),
        BinaryKind::Crictl => built_version.to_owned(),
        BinaryKind::CniPlugin => "cniVersion".to_owned(),
    }
}

/// The Go build tags upstream uses for the binaries we ship. `providerless` drops the in-tree
/// cloud providers, which a node image does not need and which make kubelet much bigger.
pub fn go_build_tags(binary: &Binary) -> &'static [&'static str] {
    component_build_tags(binary.component)
}

/// The build tags of every binary of a component: dependency resolution must see the same
/// files the builds will compile.
pub fn component_build_tags(component: Component) -> &'static [&'static str] {
    match component {
        Component::Kubernetes => &["providerless"],
        _ => &[],
    }
}

/// The module and version a component was actually built from: the pin, or the goproxy
/// stand-in that replaced it. Stamps name what was built, never what was merely pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltFrom<'a> {
    pub module: &'a str,
    pub version: &'a str,
    pub commit: &'a str,
}

/// The `-X` version stamps upstream's own build scripts set, so `--version` prints the release.
pub fn version_ldflags(
    release: &Release,
    binary: &Binary,
    build_date: &str,
    built: BuiltFrom<'_>,
) -> Vec<String> {
    let BuiltFrom {
        module,
        version,
        commit,
    } = built;
    match binary.component {
        Component::Kubernetes => kubernetes_version_ldflags(release, build_date),
        Component::CriTools => vec![format!("-X {module}/pkg/version.Version={version}")],
        Component::CniPlugins => vec![format!(
            "-X {module}/pkg/utils/buildversion.BuildVersion={version}"
        )],
        // flannel's own build scripts stamp package main, with an 8-digit commit.
        Component::FlannelPlugin if module == Component::FlannelPlugin.module_path() => vec![
            format!("-X main.Version={version}"),
            format!("-X main.Commit={}", &commit[..commit.len().min(8)]),
            "-X main.Program=flannel".to_owned(),
        ],
        // Its stand-in is the flannel plugin as containernetworking/plugins last shipped it.
        Component::FlannelPlugin => vec![format!(
            "-X {module}/pkg/utils/buildversion.BuildVersion={version}"
        )],
    }
}

/// Mirrors `kube::version::ldflags` in upstream's hack/lib/version.sh.
fn kubernetes_version_ldflags(release: &Release, build_date: &str) -> Vec<String> {
    let version = release.version;
    let values = [
        ("buildDate", build_date.to_owned()),
        ("gitCommit", release.kubernetes.commit.clone()),
        ("gitTreeState", "clean".to_owned()),
        ("gitVersion", version.to_string()),
        ("gitMajor", version.major.to_string()),
        ("gitMinor", version.minor.to_string()),
    ];
    let mut flags = Vec::new();
    for package in [
        "k8s.io/client-go/pkg/version",
        "k8s.io/component-base/version",
    ] {
        for (key, value) in &values {
            flags.push(format!("-X {package}.{key}={value}"));
        }
    }
    flags
}

/// A kubelet flag that upstream removed in some release.
pub struct RemovedFlag {
    pub name: &'static str,
    pub removed_in: (u32, u32),
    pub why: &'static str,
}

pub const REMOVED_KUBELET_FLAGS: &[RemovedFlag] = &[
    removed(
        "--network-plugin",
        (1, 24),
        "dockershim removal: the runtime runs CNI",
    ),
    removed(
        "--cni-bin-dir",
        (1, 24),
        "dockershim removal: the runtime runs CNI",
    ),
    removed(
        "--cni-conf-dir",
        (1, 24),
        "dockershim removal: the runtime runs CNI",
    ),
    removed(
        "--cni-cache-dir",
        (1, 24),
        "dockershim removal: the runtime runs CNI",
    ),
    removed(
        "--network-plugin-mtu",
        (1, 24),
        "dockershim removal: the runtime runs CNI",
    ),
    removed("--docker-endpoint", (1, 24), "dockershim removal"),
    removed(
        "--image-pull-progress-deadline",
        (1, 24),
        "dockershim removal",
    ),
    removed(
        "--experimental-dockershim-root-directory",
        (1, 24),
        "dockershim removal",
    ),
    removed("--non-masquerade-cidr", (1, 24), "dockershim removal"),
    removed(
        "--container-runtime",
        (1, 27),
        "only remote runtimes are left",
    ),
];

const fn removed(name: &'static str, removed_in: (u32, u32), why: &'static str) -> RemovedFlag {
    RemovedFlag {
        name,
        removed_in,
        why,
    }
}

/// Whether kubelet of `version` still accepts `flag`.
pub fn kubelet_has_flag(version: KubeVersion, flag: &str) -> bool {
    REMOVED_KUBELET_FLAGS
        .iter()
        .find(|row| row.name == flag)
        .is_none_or(|row| version.minor_line() < row.removed_in)
}

/// The images of a release. The kubelet variants share one repository and differ by tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Image {
    Kubelet,
    KubeletFlannel,
    KubeletCni,
    KubeletKubeadm,
    KubeletKubeadmCni,
    KubeProxy,
}

/// Repository names, relative to the registry prefix the user gives.
pub const KUBELET_REPOSITORY: &str = "kubelet";
pub const KUBE_PROXY_REPOSITORY: &str = "kube-proxy";

/// Where images that carry CNI plugins keep them, and where `install-cni` copies them to.
pub const IMAGE_CNI_DIR: &str = "/opt/cni/bin";

impl Image {
    pub const ALL: [Image; 6] = [
        Image::Kubelet,
        Image::KubeletFlannel,
        Image::KubeletCni,
        Image::KubeletKubeadm,
        Image::KubeletKubeadmCni,
        Image::KubeProxy,
    ];

    pub fn repository(self) -> &'static str {
        match self {
            Image::KubeProxy => KUBE_PROXY_REPOSITORY,
            _ => KUBELET_REPOSITORY,
        }
    }

    /// The variant word in the tag; the plain kubelet image has none.
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Image::Kubelet | Image::KubeProxy => None,
            Image::KubeletFlannel => Some("flannel"),
            Image::KubeletCni => Some("cni"),
            Image::KubeletKubeadm => Some("kubeadm"),
            Image::KubeletKubeadmCni => Some("kubeadm-cni"),
        }
    }

    /// A short name for messages and cache paths.
    pub fn name(self) -> &'static str {
        match self {
            Image::Kubelet => "kubelet",
            Image::KubeletFlannel => "kubelet-flannel",
            Image::KubeletCni => "kubelet-cni",
            Image::KubeletKubeadm => "kubelet-kubeadm",
            Image::KubeletKubeadmCni => "kubelet-kubeadm-cni",
            Image::KubeProxy => "kube-proxy",
        }
    }

    pub fn from_name(name: &str) -> Option<Image> {
        Image::ALL.into_iter().find(|image| image.name() == name)
    }

    /// `v1.26.0-flannel-alpine3.20`.
    pub fn tag(self, release: &Release) -> String {
        let alpine = release.alpine_branch();
        match self.variant() {
            Some(variant) => format!("{}-{variant}-alpine{alpine}", release.version),
            None => format!("{}-alpine{alpine}", release.version),
        }
    }

    /// The Dockerfile under `dockerfiles/` that builds this image.
    pub fn dockerfile(self) -> &'static str {
        match self {
            Image::KubeProxy => "kube-proxy.Dockerfile",
            _ => "kubelet.Dockerfile",
        }
    }

    pub fn carries_cni(self) -> bool {
        matches!(
            self,
            Image::KubeletFlannel | Image::KubeletCni | Image::KubeletKubeadmCni
        )
    }

    pub fn carries_kubeadm(self) -> bool {
        matches!(self, Image::KubeletKubeadm | Image::KubeletKubeadmCni)
    }

    /// The binaries that go into this image, in build order.
    pub fn binaries(self, release: &Release) -> Vec<Binary> {
        binaries(release)
            .into_iter()
            .filter(|binary| self.wants(binary))
            .collect()
    }

    fn wants(self, binary: &Binary) -> bool {
        match binary.kind {
            BinaryKind::Kubelet => self != Image::KubeProxy,
            BinaryKind::KubeProxy => self == Image::KubeProxy,
            BinaryKind::Kubeadm | BinaryKind::Crictl => self.carries_kubeadm(),
            BinaryKind::CniPlugin => match self {
                Image::KubeletFlannel => FLANNEL_CNI_PLUGINS.contains(&binary.name.as_str()),
                Image::KubeletCni | Image::KubeletKubeadmCni => true,
                _ => false,
            },
        }
    }

    /// The daemon an image exists to run, which its checks start from inside the image.
    pub fn main_program(self) -> Program {
        match self {
            Image::KubeProxy => Program {
                name: "kube-proxy",
                kind: BinaryKind::KubeProxy,
            },
            _ => Program {
                name: "kubelet",
                kind: BinaryKind::Kubelet,
            },
        }
    }

    /// ENTRYPOINT and CMD. The kubelet flags follow the release: flags that upstream removed
    /// would stop kubelet at start-up.
    pub fn entrypoint(self, version: KubeVersion) -> (Vec<String>, Vec<String>) {
        if self == Image::KubeProxy {
            return (vec!["kube-proxy".into()], Vec::new());
        }
        let mut args: Vec<String> = KUBELET_DEFAULT_ARGS.iter().map(|s| s.to_string()).collect();
        if self.carries_cni() && kubelet_has_flag(version, "--network-plugin") {
            args.push("--network-plugin=cni".into());
        }
        if kubelet_has_flag(version, "--container-runtime") {
            args.push("--container-runtime=remote".into());
        }
        // Without it a remote-runtime kubelet (1.24 to 1.26) will not start, and later ones
        // would look for their built-in default rather than containerd's socket.
        args.push(format!(
            "--container-runtime-endpoint={}",
            crate::node::CONTAINERD_ENDPOINT
        ));
        (vec!["kubelet".into()], args)
    }
}

/// A program by name and kind, for the checks that start it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub kind: BinaryKind,
}

/// The arguments kubelet starts with by default: the layout `kubeadm join` writes.
pub const KUBELET_DEFAULT_ARGS: [&str; 4] = [
    "--config=/var/lib/kubelet/config.yaml",
    "--register-node",
    "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
    "--kubeconfig=/etc/kubernetes/kubelet.conf",
];
