//! Small but real upstream look-alikes: git repositories with Go programs at the paths, module
//! names and version variables of Kubernetes, cri-tools, the CNI plugins and flannel, so the
//! whole pipeline runs on them exactly as on the real sources.

use std::path::Path;

use git2::Repository;

use super::{commit_all, tag, write};

pub const COMMIT_TIME: i64 = 1_670_529_103;
pub const KUBERNETES_TAG: &str = "v1.26.0";
pub const CRI_TOOLS_TAG: &str = "v1.26.1";
pub const CNI_TAG: &str = "v1.1.1";
pub const FLANNEL_TAG: &str = "v1.6.2-flannel1";

/// The CNI plugins of containernetworking/plugins v1.1.1, as `group/name`.
pub const CNI_PLUGINS: [&str; 16] = [
    "main/bridge",
    "main/host-device",
    "main/ipvlan",
    "main/loopback",
    "main/macvlan",
    "main/ptp",
    "main/vlan",
    "ipam/dhcp",
    "ipam/host-local",
    "ipam/static",
    "meta/bandwidth",
    "meta/firewall",
    "meta/portmap",
    "meta/sbr",
    "meta/tuning",
    "meta/vrf",
];

/// A cgo call in every program, so every build goes through the C cross compiler.
const CGO_PREAMBLE: &str = "/*\nstatic int answer(void) { return 42; }\n*/\nimport \"C\"\n";

const CNI_VERSION_JSON: &str =
    r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}"#;

pub struct Repos {
    pub kubernetes: (String, String),
    pub cri_tools: (String, String),
    pub cni_plugins: (String, String),
    pub flannel: (String, String),
}

/// Creates the four repositories under `dir`; returns (path, tagged commit) of each.
pub fn create(dir: &Path) -> Repos {
    Repos {
        kubernetes: kubernetes(&dir.join("kubernetes")),
        cri_tools: cri_tools(&dir.join("cri-tools")),
        cni_plugins: cni_plugins(&dir.join("plugins")),
        flannel: flannel(&dir.join("cni-plugin")),
    }
}

fn finish(dir: &Path, tag_name: &str) -> (String, String) {
    let repo = Repository::init(dir).unwrap();
    let commit = commit_all(&repo, &format!("release {tag_name}"), COMMIT_TIME);
    tag(&repo, tag_name, commit, COMMIT_TIME);
    (dir.to_str().unwrap().to_owned(), commit.to_string())
}

fn kubernetes(dir: &Path) -> (String, String) {
    write(dir, "go.mod", "module k8s.io/kubernetes\n\ngo 1.19\n\nrequire k8s.io/component-base v0.0.0\n\nreplace k8s.io/component-base => ./staging/src/k8s.io/component-base\n");
    write(
        dir,
        "staging/src/k8s.io/component-base/go.mod",
        "module k8s.io/component-base\n\ngo 1.19\n",
    );
    write(
        dir,
        "staging/src/k8s.io/component-base/version/version.go",
        "package version\n\nvar gitVersion = \"v0.0.0-master+$Format:%H$\"\n\nfunc Get() string { return gitVersion }\n",
    );
    for (name, version_args) in [
        ("kubelet", "--version"),
        ("kube-proxy", "--version"),
        ("kubeadm", "version"),
    ] {
        let print = if name == "kubeadm" {
            "version.Get()"
        } else {
            "\"Kubernetes \" + version.Get()"
        };
        let main = format!(
            "package main\n\n{CGO_PREAMBLE}\nimport (\n\t\"fmt\"\n\t\"os\"\n\n\t\"k8s.io/component-base/version\"\n)\n\nfunc main() {{\n\tif len(os.Args) > 1 && os.Args[1] == \"{version_args}\" {{\n\t\tfmt.Println({print})\n\t\treturn\n\t}}\n\tfmt.Println(\"{name} fixture, answer\", int(C.answer()))\n\tos.Exit(1)\n}}\n"
        );
        write(dir, &format!("cmd/{name}/main.go"), &main);
    }
    finish(dir, KUBERNETES_TAG)
}

fn cri_tools(dir: &Path) -> (String, String) {
    write(
        dir,
        "go.mod",
        "module github.com/kubernetes-sigs/cri-tools\n\ngo 1.19\n",
    );
    write(
        dir,
        "pkg/version/version.go",
        "package version\n\nvar Version = \"unknown\"\n",
    );
    let main = format!(
        "package main\n\n{CGO_PREAMBLE}\nimport (\n\t\"fmt\"\n\n\t\"github.com/kubernetes-sigs/cri-tools/pkg/version\"\n)\n\nfunc main() {{\n\t_ = C.answer()\n\tfmt.Println(\"crictl version \" + version.Version)\n}}\n"
    );
    write(dir, "cmd/crictl/main.go", &main);
    finish(dir, CRI_TOOLS_TAG)
}

fn cni_main(package_doc: &str) -> String {
    format!(
        "// {package_doc}\npackage main\n\n{CGO_PREAMBLE}\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {{\n\t_ = C.answer()\n\tif os.Getenv(\"CNI_COMMAND\") == \"VERSION\" {{\n\t\tfmt.Println(`{CNI_VERSION_JSON}`)\n\t\treturn\n\t}}\n\tfmt.Fprintln(os.Stderr, \"CNI_COMMAND is not set\")\n\tos.Exit(1)\n}}\n"
    )
}

fn cni_plugins(dir: &Path) -> (String, String) {
    write(
        dir,
        "go.mod",
        "module github.com/containernetworking/plugins\n\ngo 1.19\n",
    );
    write(
        dir,
        "pkg/utils/buildversion/buildversion.go",
        "package buildversion\n\nvar BuildVersion = \"unknown\"\n",
    );
    for plugin in CNI_PLUGINS {
        write(dir, &format!("plugins/{plugin}/main.go"), &cni_main(plugin));
    }
    finish(dir, CNI_TAG)
}

fn flannel(dir: &Path) -> (String, String) {
    write(
        dir,
        "go.mod",
        "module github.com/flannel-io/cni-plugin\n\ngo 1.19\n",
    );
    write(dir, "flannel.go", &cni_main("flannel"));
    write(dir, "version.go", "package main\n\nvar (\n\tVersion = \"unset\"\n\tCommit  = \"unset\"\n\tProgram = \"unset\"\n)\n");
    finish(dir, FLANNEL_TAG)
}

/// A manifest pinning the fixtures as release v1.26.0, built with the host's Go.
pub fn manifest(repos: &Repos, host_go: &str) -> String {
    let date = "2022-12-08T19:51:43Z";
    format!(
        r#"schema = 1

[remotes]
kubernetes = "{k}"
cri-tools = "{c}"
cni-plugins = "{n}"
flannel-plugin = "{f}"

[[release]]
version = "{KUBERNETES_TAG}"
commit = "{kc}"
commit-date = "{date}"
go = "{host_go}"
alpine = "3.20.3"
alpine-digest = "sha256:1e42bbe2508154c9126d48c2b8a75420c3544343bf86fd041fb7527e017a4b4a"

[release.cri-tools]
module = "github.com/kubernetes-sigs/cri-tools"
version = "{CRI_TOOLS_TAG}"
commit = "{cc}"

[release.cni-plugins]
version = "{CNI_TAG}"
commit = "{nc}"

[release.flannel-plugin]
version = "{FLANNEL_TAG}"
commit = "{fc}"
"#,
        k = repos.kubernetes.0,
        kc = repos.kubernetes.1,
        c = repos.cri_tools.0,
        cc = repos.cri_tools.1,
        n = repos.cni_plugins.0,
        nc = repos.cni_plugins.1,
        f = repos.flannel.0,
        fc = repos.flannel.1,
    )
}
