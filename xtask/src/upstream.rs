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
