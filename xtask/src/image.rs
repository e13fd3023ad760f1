//! `cargo xtask image`: build and push the images of a release.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::flags;

impl flags::Image {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        bail!("image builds are not implemented yet (issue #4); `cargo xtask release VERSION --dry-run` lists every image, tag and platform")
    }
}
