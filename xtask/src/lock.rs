//! One run at a time per cache: a second run waits for the first instead of writing the same
//! entries beside it. The lock is an OS file lock, so a killed run never leaves it held.

use std::fs::{File, OpenOptions};

use anyhow::{Context, Result};

use crate::layout::Layout;

const LOCK_FILE: &str = "cache.lock";
/// Serialises provisioning in a tool cache that several build caches share.
const TOOL_LOCK_FILE: &str = "tools.lock";

/// Held for the whole run; released when dropped or when the process dies.
pub struct CacheLock {
    _file: File,
}

impl CacheLock {
    pub fn acquire(layout: &Layout) -> Result<CacheLock> {
        lock_file(&layout.locks().join(LOCK_FILE))
    }

    /// Held while a toolchain is installed into the tool cache, which other caches may share.
    pub fn tools(layout: &Layout) -> Result<CacheLock> {
        lock_file(&layout.toolchains().join(TOOL_LOCK_FILE))
    }

    /// Held while a pinned tarball is downloaded into the tool cache.
    pub fn sources(layout: &Layout) -> Result<CacheLock> {
        lock_file(&crate::hosttools::sources_dir(layout).join(TOOL_LOCK_FILE))
    }

    /// Held while host tools are built, which other caches may share.
    pub fn host_tools(layout: &Layout) -> Result<CacheLock> {
        lock_file(&layout.host_tools().join(TOOL_LOCK_FILE))
    }
}

fn lock_file(path: &camino::Utf8Path) -> Result<CacheLock> {
    let dir = path.parent().context("a lock file has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock {path}"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("waiting for another xtask run that holds {path} ...");
            file.lock()
                .with_context(|| format!("cannot take the lock {path}"))?;
        }
        Err(std::fs::TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("cannot take the lock {path}"))
        }
    }
    Ok(CacheLock { _file: file })
}
