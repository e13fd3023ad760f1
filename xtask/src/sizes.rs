//! `cargo xtask sizes`: image sizes per platform and the README table.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::flags;

impl flags::Sizes {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        bail!("the size matrix is not implemented yet (issue #5)")
    }
}
