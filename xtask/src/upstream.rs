//! `cargo xtask upstream`: the pinned matrix.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::context::Context;
use crate::flags::{self, UpstreamAction};

impl flags::Upstream {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let cx = Context::load()?;
        match self.action.unwrap_or(UpstreamAction::List) {
            UpstreamAction::List => {
                print!("{}", list(&cx));
                Ok(())
            }
            UpstreamAction::Check | UpstreamAction::Bump => {
                bail!("`upstream check` and `upstream bump` are not implemented yet (issue #5); `upstream list` shows the pins")
            }
        }
    }
}

/// The README's table of pinned releases, generated from the manifest (a tidy test keeps the
/// committed README in step).
pub fn pins_markdown(manifest: &kubelet_upstream::Manifest) -> String {
    let mut out = String::from(
        "| Kubernetes | commit | Go | cri-tools | CNI plugins | flannel plugin | Alpine |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for release in manifest.releases() {
        let go = match &release.build_go {
            Some((build, _)) => format!("go{build} (upstream: go{})", release.go),
            None => format!("go{}", release.go),
        };
        out.push_str(&format!(
            "| {} | `{}` | {go} | {} | {} | {} | {} |\n",
            release.version,
            &release.kubernetes.commit[..12],
            pin_cell(&release.cri_tools),
            pin_cell(&release.cni_plugins),
            pin_cell(&release.flannel_plugin),
            release.alpine
        ));
    }
    out
}

fn pin_cell(pin: &kubelet_upstream::Pin) -> String {
    match &pin.goproxy {
        Some(sub) => format!(
            "{} (goproxy stand-in: {}@{})",
            pin.version, sub.module, sub.version
        ),
        None => pin.version.clone(),
    }
}

fn list(cx: &Context) -> String {
    let mut out = String::new();
    for release in cx.manifest.releases() {
        out.push_str(&format!(
            "{}  {}  go{}  alpine {}\n",
            release.version,
            release.kubernetes.commit,
            release.toolchain(),
            release.alpine
        ));
        for pin in &release.pins()[1..] {
            out.push_str(&format!(
                "    {:<15} {:<18} {}",
                pin.component.key(),
                pin.version,
                pin.commit
            ));
            if let Some(sub) = &pin.goproxy {
                out.push_str(&format!("  (goproxy: {}@{})", sub.module, sub.version));
            }
            out.push('\n');
        }
    }
    out
}
