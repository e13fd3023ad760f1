//! One run at a time per cache: a second run waits for the first instead of writing the same
//! entries beside it. The lock is an OS file lock, so a killed run never leaves it held.

use std::fs::{File, OpenOptions};

use anyhow::{Context, Result};

use crate::layout::Layout;

const LOCK_FILE: &str = "cache.lock";

/// Held for the whole run; released when dropped or when the process dies.
pub struct CacheLock {
    _file: File,
}

impl CacheLock {
    pub fn acquire(layout: &Layout) -> Result<CacheLock> {
        let dir = layout.locks();
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the cache lock {path}"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                eprintln!("waiting for another xtask run that holds {path} ...");
                file.lock()
                    .with_context(|| format!("cannot take the cache lock {path}"))?;
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("cannot take the cache lock {path}"))
            }
        }
        Ok(CacheLock { _file: file })
    }
}
