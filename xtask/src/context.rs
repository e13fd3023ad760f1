//! What every command starts from: the layout, the validated manifest and the releases asked for.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use kubelet_upstream::{Component, KubeVersion, Manifest, Release};

use crate::flags::RemoteOverride;
use crate::layout::Layout;

/// Prefix of the environment variables that override a component's remote, e.g.
/// `XTASK_REMOTE_CRI_TOOLS=/srv/mirrors/cri-tools.git`.
const REMOTE_ENV_PREFIX: &str = "XTASK_REMOTE_";

pub struct Context {
    pub layout: Layout,
    pub manifest: Manifest,
}

impl Context {
    pub fn load() -> Result<Context> {
        let layout = Layout::discover()?;
        Context::with_layout(layout)
    }

    pub fn with_layout(layout: Layout) -> Result<Context> {
        let path = layout.manifest();
        let manifest = Manifest::load(path.as_std_path())?;
        Ok(Context { layout, manifest })
    }

    /// The pinned releases for the versions given, in the order given, or one error naming
    /// every unknown or malformed version and listing what is pinned.
    pub fn releases(&self, versions: &[String]) -> Result<Vec<&Release>> {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for text in versions {
            match text.parse::<KubeVersion>() {
                Err(err) => problems.push(err.to_string()),
                Ok(version) => match self.manifest.release(version) {
                    Some(release) => found.push(release),
                    None => problems.push(format!("{version} is not pinned")),
                },
            }
        }
        if !problems.is_empty() {
            bail!(
                "{}. Pinned releases: {}. Pin a new one with `cargo xtask upstream bump` or by editing {}",
                problems.join("; "),
                self.manifest.pinned_list(),
                kubelet_upstream::MANIFEST_FILE
            );
        }
        Ok(found)
    }

    /// Remote URLs: the manifest's, then `XTASK_REMOTE_<NAME>`, then `--remote NAME=URL`.
    pub fn remotes(&self, overrides: &[RemoteOverride]) -> BTreeMap<Component, String> {
        let mut remotes = BTreeMap::new();
        for component in Component::ALL {
            let env_name = format!(
                "{REMOTE_ENV_PREFIX}{}",
                component.key().to_uppercase().replace('-', "_")
            );
            let url = std::env::var(env_name)
                .ok()
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| self.manifest.remote(component).to_owned());
            remotes.insert(component, url);
        }
        for o in overrides {
            remotes.insert(o.component, o.url.clone());
        }
        remotes
    }
}
