//! Version rules of the Go modules a release is built from, and of the releases that stay pinned.
//!
//! Kubernetes publishes its staging modules (`k8s.io/api`, `k8s.io/component-base`, …) as
//! `v0.MINOR.PATCH` for release `v1.MINOR.PATCH`, while its own go.mod requires them at `v0.0.0`
//! and replaces them with directories of its tree. Building through a module proxy means
//! rewriting those requirements; these functions decide how, and the xtask reads and writes
//! the go.mod files. Nothing here runs a process.

use std::collections::BTreeMap;

use crate::version::KubeVersion;

/// How many of the newest Kubernetes minors `upstream check` and `upstream bump` keep pinned,
/// each at its newest patch.
pub const TRACKED_MINORS: usize = 3;

/// Where older releases of tools that embed Kubernetes, cri-tools among them, took the staging
/// modules from: pseudo-versions of `k8s.io/kubernetes/staging/src/...` that only their vendor/
/// resolved.
pub const STAGING_PATH_PREFIX: &str = "k8s.io/kubernetes/staging/src/";

/// One `replace` directive of a go.mod: `old [old_version] => new [new_version]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replace<'a> {
    pub old: &'a str,
    pub old_version: Option<&'a str>,
    pub new: &'a str,
    pub new_version: Option<&'a str>,
}

/// The version a staging module is published at for a Kubernetes release: `v0.26.0` for
/// `v1.26.0`.
pub fn staging_version(release: KubeVersion) -> String {
    format!("v0.{}.{}", release.minor, release.patch)
}

/// Whether a replacement is a directory (`./staging/...`) rather than another module.
pub fn is_local_path(path: &str) -> bool {
    path.starts_with("./") || path.starts_with("../") || path.starts_with('/')
}

/// The staging modules of a Kubernetes go.mod: the modules it replaces with directories of its
/// own tree.
pub fn staging_modules<'a>(kubernetes_replaces: &[Replace<'a>]) -> Vec<&'a str> {
    kubernetes_replaces
        .iter()
        .filter(|r| is_local_path(r.new))
        .map(|r| r.old)
        .collect()
}

/// Every staging module with the version it is pinned at for `release`. Published staging
/// modules still require each other at `v0.0.0` (upstream resolves that with local replaces,
/// which a dependency's go.mod cannot carry), so a build outside the tree pins them all.
pub fn staging_pins<'a>(release: KubeVersion, staging: &[&'a str]) -> Vec<(&'a str, String)> {
    staging
        .iter()
        .map(|&module| (module, staging_version(release)))
        .collect()
}

/// The version the generated build module requires `module` at: a staging module at its
/// published version, anything else at upstream's own requirement.
pub fn required_version(
    release: KubeVersion,
    staging: &[&str],
    module: &str,
    upstream_version: &str,
) -> String {
    if staging.contains(&module) {
        staging_version(release)
    } else {
        upstream_version.to_owned()
    }
}

/// Upstream's replaces that the build module keeps: those pointing at other modules. The local
/// ones only make sense inside the Kubernetes tree.
pub fn remote_replaces<'a>(kubernetes_replaces: &[Replace<'a>]) -> Vec<Replace<'a>> {
    kubernetes_replaces
        .iter()
        .filter(|r| !is_local_path(r.new))
        .copied()
        .collect()
}

/// Whether a tool that embeds Kubernetes takes the staging modules from
/// `k8s.io/kubernetes/staging/src/...`. Module zips drop vendor/, the only place such replaces
/// resolved, so its go.mod must then pin the [`staging_pins`] of the release instead.
pub fn uses_staging_paths(tool_replaces: &[Replace<'_>]) -> bool {
    tool_replaces
        .iter()
        .any(|r| r.new.starts_with(STAGING_PATH_PREFIX))
}

/// The releases that stay pinned: the newest patch of each of the [`TRACKED_MINORS`] newest
/// minors among `tags`, oldest first, each with what the tag maps to (its commit, say).
pub fn tracked_releases<T: Clone>(tags: &BTreeMap<KubeVersion, T>) -> Vec<(KubeVersion, T)> {
    let mut by_minor: BTreeMap<(u32, u32), (KubeVersion, T)> = BTreeMap::new();
    for (&version, value) in tags {
        // Tags iterate in version order, so the last one seen in a minor is its newest patch.
        by_minor.insert(version.minor_line(), (version, value.clone()));
    }
    let mut newest: Vec<(KubeVersion, T)> =
        by_minor.into_values().rev().take(TRACKED_MINORS).collect();
    newest.reverse();
    newest
}

/// The newest tag in the minor of `release`: cri-tools releases follow the Kubernetes minor.
pub fn newest_in_minor<T: Clone>(
    tags: &BTreeMap<KubeVersion, T>,
    release: KubeVersion,
) -> Option<(KubeVersion, T)> {
    tags.iter()
        .rev()
        .find(|(v, _)| v.minor_line() == release.minor_line())
        .map(|(v, value)| (*v, value.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> KubeVersion {
        text.parse().unwrap()
    }

    /// A staging module as upstream's go.mod replaces it: with a directory of its tree.
    const fn local(module: &'static str, dir: &'static str) -> Replace<'static> {
        Replace {
            old: module,
            old_version: None,
            new: dir,
            new_version: None,
        }
    }

    const API: Replace<'static> = local("k8s.io/api", "./staging/src/k8s.io/api");
    const KUBELET: Replace<'static> = local("k8s.io/kubelet", "./staging/src/k8s.io/kubelet");
    const COMPONENT_BASE: Replace<'static> = local(
        "k8s.io/component-base",
        "./staging/src/k8s.io/component-base",
    );

    const REMOTE: Replace<'static> = Replace {
        old: "example.com/x",
        old_version: Some("v1.0.0"),
        new: "example.com/y",
        new_version: Some("v1.0.1"),
    };

    #[test]
    fn staging_modules_are_published_as_v0_minor_patch() {
        assert_eq!(staging_version(v("v1.26.0")), "v0.26.0");
        assert_eq!(staging_version(v("v1.37.1")), "v0.37.1");
        assert_eq!(staging_version(v("v1.9.10")), "v0.9.10");
    }

    #[test]
    fn staging_modules_are_the_local_replaces() {
        let replaces = [API, REMOTE, COMPONENT_BASE];
        assert_eq!(
            staging_modules(&replaces),
            ["k8s.io/api", "k8s.io/component-base"]
        );
        assert_eq!(remote_replaces(&replaces), [REMOTE]);
        assert!(is_local_path("../x") && is_local_path("/abs") && !is_local_path("k8s.io/x"));
    }

    #[test]
    fn staging_requirements_and_pins_take_the_published_version() {
        let staging = ["k8s.io/api"];
        let release = v("v1.26.3");
        assert_eq!(
            required_version(release, &staging, "k8s.io/api", "v0.0.0"),
            "v0.26.3"
        );
        assert_eq!(
            required_version(release, &staging, "github.com/spf13/cobra", "v1.6.0"),
            "v1.6.0"
        );
        assert_eq!(
            staging_pins(release, &staging),
            [("k8s.io/api", "v0.26.3".to_owned())]
        );
    }

    #[test]
    fn old_cri_tools_staging_paths_are_detected() {
        let old_cri_tools = [Replace {
            old: "k8s.io/api",
            old_version: None,
            new: "k8s.io/kubernetes/staging/src/k8s.io/api",
            new_version: Some("v0.0.0-20221208195143-b46a3f887ca9"),
        }];
        assert!(uses_staging_paths(&old_cri_tools));
        // Newer cri-tools require the published modules already: nothing to rewrite.
        assert!(!uses_staging_paths(&[REMOTE]));
        assert!(!uses_staging_paths(&[]));
        // What they are rewritten to: every staging module of the release, published.
        let kubernetes = [API, KUBELET, REMOTE];
        assert_eq!(
            staging_pins(v("v1.26.0"), &staging_modules(&kubernetes)),
            [
                ("k8s.io/api", "v0.26.0".to_owned()),
                ("k8s.io/kubelet", "v0.26.0".to_owned())
            ]
        );
    }

    fn tags(versions: &[&str]) -> BTreeMap<KubeVersion, usize> {
        versions
            .iter()
            .enumerate()
            .map(|(i, text)| (v(text), i))
            .collect()
    }

    #[test]
    fn tracks_the_newest_patch_of_the_three_newest_minors() {
        let tags = tags(&[
            "v1.34.9", "v1.35.0", "v1.35.8", "v1.36.4", "v1.37.0", "v1.37.1",
        ]);
        let tracked: Vec<(String, usize)> = tracked_releases(&tags)
            .into_iter()
            .map(|(version, i)| (version.to_string(), i))
            .collect();
        assert_eq!(
            tracked,
            [
                ("v1.35.8".to_owned(), 2),
                ("v1.36.4".to_owned(), 3),
                ("v1.37.1".to_owned(), 5)
            ]
        );
        // Numeric, not textual, order: v1.9 is older than v1.10.
        let tracked = tracked_releases(&self::tags(&["v1.10.0", "v1.9.9", "v1.8.1", "v1.7.0"]));
        let names: Vec<String> = tracked.iter().map(|(v, _)| v.to_string()).collect();
        assert_eq!(names, ["v1.8.1", "v1.9.9", "v1.10.0"]);
        assert!(tracked_releases::<usize>(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn cri_tools_follow_the_kubernetes_minor() {
        let tags = tags(&["v1.37.0", "v1.37.2", "v1.38.0"]);
        assert_eq!(
            newest_in_minor(&tags, v("v1.37.9")).map(|(v, _)| v.to_string()),
            Some("v1.37.2".to_owned())
        );
        assert_eq!(newest_in_minor(&tags, v("v1.39.0")), None);
    }
}
