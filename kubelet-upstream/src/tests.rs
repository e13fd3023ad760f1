use crate::rules::{self, Image};
use crate::{Arch, Component, KubeVersion, Manifest, MANIFEST_FILE, MANIFEST_TEXT};

const GOOD: &str = r#"
schema = 1

[remotes]
kubernetes = "https://example.invalid/kubernetes.git"
cri-tools = "https://example.invalid/cri-tools.git"
cni-plugins = "https://example.invalid/plugins.git"
flannel-plugin = "https://example.invalid/cni-plugin.git"

[[release]]
version = "v1.26.0"
commit = "b46a3f887ca979b1a5d14fd39cb1af43e7e5d12d"
commit-date = "2022-12-08T19:51:43Z"
go = "1.19.4"
alpine = "3.20.3"
alpine-digest = "sha256:1e42bbe2508154c9126d48c2b8a75420c3544343bf86fd041fb7527e017a4b4a"

[release.cri-tools]
version = "v1.26.0"
commit = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

[release.cni-plugins]
version = "v1.1.1"
commit = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

[release.flannel-plugin]
version = "v1.1.2"
commit = "cccccccccccccccccccccccccccccccccccccccc"
"#;

fn parse(text: &str) -> Result<Manifest, crate::ManifestError> {
    Manifest::parse(text, "upstream.toml")
}

fn error_for(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

fn v(text: &str) -> KubeVersion {
    text.parse().unwrap()
}

#[test]
fn committed_manifest_is_valid() {
    let manifest = Manifest::parse(MANIFEST_TEXT, MANIFEST_FILE).unwrap();
    for required in ["v1.24.9", "v1.25.5", "v1.26.0"] {
        assert!(
            manifest.release(v(required)).is_some(),
            "{required} must stay pinned"
        );
    }
    let release = manifest.release(v("v1.26.0")).unwrap();
    assert_eq!(release.go.to_string(), "1.19.4");
    assert!(release.kubernetes.module_sum.is_some());
}

#[test]
fn committed_manifest_pins_the_sum_of_every_module_the_proxy_source_downloads() {
    let manifest = Manifest::parse(MANIFEST_TEXT, MANIFEST_FILE).unwrap();
    for release in manifest.releases() {
        for pin in release.pins() {
            assert!(
                pin.goproxy_module_sum().is_some(),
                "{} {}: {:?} has no module-sum",
                release.version,
                pin.component,
                pin.goproxy_module()
            );
        }
    }
}

#[test]
fn committed_manifest_pins_three_newest_minors() {
    let manifest = Manifest::parse(MANIFEST_TEXT, MANIFEST_FILE).unwrap();
    let mut minors: Vec<(u32, u32)> = manifest
        .releases()
        .iter()
        .map(|r| r.version.minor_line())
        .collect();
    minors.dedup();
    assert!(minors.len() >= 6, "{minors:?}");
    let newest = *minors.last().unwrap();
    assert!(newest >= (1, 37), "{newest:?}");
}

#[test]
fn parses_a_good_manifest() {
    let manifest = parse(GOOD).unwrap();
    let release = manifest.release(v("v1.26.0")).unwrap();
    assert_eq!(release.source_date_epoch, 1670529103);
    assert_eq!(release.alpine_branch(), "3.20");
    assert_eq!(release.cri_tools.component, Component::CriTools);
    assert_eq!(
        manifest.remote(Component::FlannelPlugin),
        "https://example.invalid/cni-plugin.git"
    );
    assert_eq!(manifest.pinned_list(), "v1.26.0");
}

#[test]
fn rejects_a_short_commit_with_line_and_field() {
    let text = GOOD.replace("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abc123");
    let error = parse(&text).unwrap_err();
    assert_eq!(error.line, 20);
    assert_eq!(error.field, "release v1.26.0: cri-tools.commit");
    assert!(error.message.contains("40 lowercase hex digits"), "{error}");
    assert!(
        error.to_string().starts_with("upstream.toml:20: "),
        "{error}"
    );
}

#[test]
fn rejects_uppercase_commit() {
    let text = GOOD.replace(
        "b46a3f887ca979b1a5d14fd39cb1af43e7e5d12d",
        "B46A3F887CA979B1A5D14FD39CB1AF43E7E5D12D",
    );
    assert!(error_for(&text).contains("release v1.26.0: commit"));
}

#[test]
fn rejects_missing_field_naming_it() {
    let text = GOOD.replace("go = \"1.19.4\"\n", "");
    let error = parse(&text).unwrap_err();
    assert_eq!(error.field, "go");
    assert!(error.message.contains("missing field"), "{error}");
    assert!(error.line > 0);
}

#[test]
fn rejects_malformed_version() {
    let text = GOOD.replace("version = \"v1.26.0\"", "version = \"1.26\"");
    let error = parse(&text).unwrap_err();
    assert_eq!((error.line, error.field.as_str()), (11, "version"));
    assert!(error.message.contains("malformed version `1.26`"));
}

#[test]
fn rejects_duplicate_versions() {
    let second = &GOOD[GOOD.find("[[release]]").unwrap()..];
    let text = format!("{GOOD}\n{second}");
    let error = parse(&text).unwrap_err();
    assert!(
        error.message.contains("pinned twice (first at line 11)"),
        "{error}"
    );
    assert!(error.line > 11);
}

#[test]
fn rejects_cri_tools_of_another_minor() {
    let text = GOOD.replace(
        "version = \"v1.26.0\"\ncommit = \"aaaa",
        "version = \"v1.25.0\"\ncommit = \"aaaa",
    );
    let error = error_for(&text);
    assert!(error.contains("pin a cri-tools v1.26.x release"), "{error}");
}

#[test]
fn rejects_unknown_fields_and_syntax_errors() {
    let text = GOOD.replace("go = \"1.19.4\"", "go = \"1.19.4\"\ngo-version = \"1\"");
    assert!(error_for(&text).contains("go-version"));
    let error = error_for("schema = [");
    assert!(error.starts_with("upstream.toml:1:"), "{error}");
}

#[test]
fn rejects_bad_dates_sums_and_alpine() {
    let text = GOOD.replace("2022-12-08T19:51:43Z", "yesterday");
    assert!(error_for(&text).contains("commit-date"));
    let text = GOOD.replace(
        "go = \"1.19.4\"",
        "go = \"1.19.4\"\nmodule-sum = \"h1:short\"",
    );
    assert!(error_for(&text).contains("module-sum"));
    let text = GOOD.replace("alpine = \"3.20.3\"", "alpine = \"edge\"");
    assert!(error_for(&text).contains("Alpine release"));
}

#[test]
fn rejects_wrong_schema_and_missing_remote() {
    assert!(error_for(&GOOD.replace("schema = 1", "schema = 2")).contains("schema 1"));
    let text = GOOD.replace(
        "flannel-plugin = \"https://example.invalid/cni-plugin.git\"\n",
        "",
    );
    assert!(error_for(&text).contains("remotes.flannel-plugin"));
}

#[test]
fn substitutes_are_explicit() {
    let text = GOOD.replace(
        "[release.flannel-plugin]",
        "[release.flannel-plugin.goproxy]\nmodule = \"github.com/containernetworking/plugins\"\nversion = \"v0.9.1\"\nsubdir = \"plugins/meta/flannel\"\nreason = \"not served\"\n\n[release.flannel-plugin]",
    );
    // A sub-table before its parent is still the same table in TOML.
    let manifest = parse(&text).unwrap();
    let pin = &manifest.releases()[0].flannel_plugin;
    assert_eq!(
        pin.goproxy_module(),
        (
            "github.com/containernetworking/plugins",
            "v0.9.1",
            Some("plugins/meta/flannel")
        )
    );
    let empty_reason = text.replace("reason = \"not served\"", "reason = \" \"");
    assert!(error_for(&empty_reason).contains("say why"));
}

#[test]
fn kubelet_flags_follow_the_release() {
    assert!(rules::kubelet_has_flag(v("v1.23.17"), "--network-plugin"));
    assert!(!rules::kubelet_has_flag(v("v1.24.0"), "--network-plugin"));
    assert!(rules::kubelet_has_flag(v("v1.26.0"), "--container-runtime"));
    assert!(!rules::kubelet_has_flag(
        v("v1.27.0"),
        "--container-runtime"
    ));
    assert!(rules::kubelet_has_flag(v("v1.37.1"), "--config"));
}

#[test]
fn entrypoints_follow_the_release() {
    let (entry, cmd) = Image::KubeletCni.entrypoint(v("v1.23.6"));
    assert_eq!(entry, ["kubelet"]);
    assert!(cmd.contains(&"--network-plugin=cni".to_string()));
    assert!(cmd.contains(&"--container-runtime=remote".to_string()));

    let (_, cmd) = Image::KubeletCni.entrypoint(v("v1.26.0"));
    assert!(!cmd.iter().any(|a| a.starts_with("--network-plugin")));
    assert!(cmd.contains(&"--container-runtime=remote".to_string()));
    // A 1.26 kubelet with a remote runtime and no endpoint refuses to start.
    assert!(cmd.contains(
        &"--container-runtime-endpoint=unix:///run/containerd/containerd.sock".to_string()
    ));

    let (_, cmd) = Image::Kubelet.entrypoint(v("v1.37.1"));
    let endpoint = "--container-runtime-endpoint=unix:///run/containerd/containerd.sock";
    assert_eq!(cmd[..4], rules::KUBELET_DEFAULT_ARGS);
    assert_eq!(cmd[4..], [endpoint]);
    assert_eq!(Image::KubeProxy.entrypoint(v("v1.37.1")).0, ["kube-proxy"]);
}

#[test]
fn images_carry_only_their_scenario() {
    let manifest = parse(GOOD).unwrap();
    let release = &manifest.releases()[0];
    let names = |image: Image| -> Vec<String> {
        image
            .binaries(release)
            .into_iter()
            .map(|b| b.name)
            .collect()
    };
    assert_eq!(names(Image::Kubelet), ["kubelet"]);
    assert_eq!(names(Image::KubeProxy), ["kube-proxy"]);
    assert_eq!(
        names(Image::KubeletFlannel),
        [
            "kubelet",
            "bridge",
            "flannel",
            "host-local",
            "loopback",
            "portmap"
        ]
    );
    assert_eq!(
        names(Image::KubeletKubeadm),
        ["kubelet", "kubeadm", "crictl"]
    );
    let all_cni = names(Image::KubeletCni);
    assert_eq!(all_cni.len(), 1 + 16 + 1, "{all_cni:?}");
    assert!(names(Image::KubeletKubeadmCni).len() == all_cni.len() + 2);
}

#[test]
fn image_tags_follow_the_original_style() {
    let manifest = parse(GOOD).unwrap();
    let release = &manifest.releases()[0];
    let tags: Vec<String> = Image::ALL.iter().map(|i| i.tag(release)).collect();
    assert_eq!(
        tags,
        [
            "v1.26.0-alpine3.20",
            "v1.26.0-flannel-alpine3.20",
            "v1.26.0-cni-alpine3.20",
            "v1.26.0-kubeadm-alpine3.20",
            "v1.26.0-kubeadm-cni-alpine3.20",
            "v1.26.0-alpine3.20",
        ]
    );
    assert_eq!(Image::KubeProxy.repository(), "kube-proxy");
}

#[test]
fn cni_plugin_lists_follow_the_plugins_release() {
    let names = |tag: &str| -> Vec<&str> {
        rules::cni_plugins(tag)
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    };
    assert!(!names("v1.1.1").contains(&"dummy"));
    assert!(names("v1.2.0").contains(&"dummy"));
    assert!(names("v1.9.1").contains(&"tap"));
    assert!(
        !names("v0.9.1").contains(&"flannel"),
        "flannel is its own component"
    );
    assert!(names("garbage").is_empty());
}

#[test]
fn kubernetes_version_stamps_mirror_upstream() {
    let manifest = parse(GOOD).unwrap();
    let release = &manifest.releases()[0];
    let kubelet = &rules::binaries(release)[0];
    let built = rules::BuiltFrom {
        module: "k8s.io/kubernetes",
        version: "v1.26.0",
        commit: "b46a3f887ca979b1a5d14fd39cb1af43e7e5d12d",
    };
    let flags = rules::version_ldflags(release, kubelet, "2022-12-08T19:51:43Z", built);
    assert!(flags.contains(&"-X k8s.io/component-base/version.gitVersion=v1.26.0".to_string()));
    assert!(flags.contains(&"-X k8s.io/client-go/pkg/version.gitMinor=26".to_string()));
    assert!(flags
        .contains(&"-X k8s.io/component-base/version.buildDate=2022-12-08T19:51:43Z".to_string()));
    assert_eq!(rules::go_build_tags(kubelet), ["providerless"]);
    let crictl = &rules::binaries(release)[3];
    let stand_in = rules::BuiltFrom {
        module: "sigs.k8s.io/cri-tools",
        version: "v1.36.0",
        commit: "88d8ad9d40f82726fda53c2d271e6172b4c619c9",
    };
    assert_eq!(
        rules::version_ldflags(release, crictl, "", stand_in),
        ["-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.36.0"],
        "a stand-in is stamped with its own version"
    );
}

#[test]
fn platforms_are_in_index_order() {
    assert_eq!(
        Arch::ALL.map(Arch::platform),
        ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    );
}
