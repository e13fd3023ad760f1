//! File operations that never leave a half-written cache entry behind: everything is written
//! to a temporary sibling first and renamed into place once complete.

use std::fs::{self, File};
use std::io::{self, Read};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

/// Every temporary sibling of an entry is named `.<name>.partial-…`, and a replaced entry is
/// moved aside as `.<name>.old-…`, so a run killed at any point leaves only names that the next
/// run (which holds the cache lock, so no live run owns them) recognises and sweeps.
const PARTIAL_MARK: &str = "partial-";
const OLD_MARK: &str = "old-";

/// A temporary sibling of `path` that belongs to this process; `what` tells uses apart.
pub fn partial_path(path: &Utf8Path, what: &str) -> Utf8PathBuf {
    let name = path.file_name().unwrap_or("entry");
    let pid = std::process::id();
    if name.starts_with('.') && name.contains(&format!(".{PARTIAL_MARK}")) {
        // Already a temporary: keep its entry's prefix so one sweep finds both.
        return path.with_file_name(format!("{name}-{what}{pid}"));
    }
    path.with_file_name(format!(".{name}.{PARTIAL_MARK}{what}{pid}"))
}

/// Removes what killed runs left beside `path`: temporaries and entries moved aside.
pub fn sweep_leftovers(path: &Utf8Path) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    let own_suffix = std::process::id().to_string();
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let leftover = rest.starts_with(OLD_MARK)
            || (rest.starts_with(PARTIAL_MARK) && !rest.ends_with(&own_suffix));
        if leftover {
            let stale = dir.join(file_name);
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir_all_writable(&stale)?;
            } else {
                fs::remove_file(&stale).with_context(|| format!("cannot remove {stale}"))?;
            }
        }
    }
    Ok(())
}

/// Writes `contents` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Utf8Path, contents: &[u8]) -> Result<()> {
    let dir = parent_of(path)?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.{PARTIAL_MARK}",
            path.file_name().unwrap_or("entry")
        ))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {dir}"))?;
    io::Write::write_all(&mut temp, contents).with_context(|| format!("cannot write {path}"))?;
    temp.as_file().sync_all().ok();
    temp.persist(path)
        .with_context(|| format!("cannot move the new {path} into place"))?;
    Ok(())
}

/// A fresh temporary directory beside `final_path`, to be completed and then [`commit_dir`]ed.
pub fn staging_dir(final_path: &Utf8Path) -> Result<tempfile::TempDir> {
    let dir = parent_of(final_path)?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    sweep_leftovers(final_path)?;
    let name = final_path.file_name().unwrap_or("entry");
    tempfile::Builder::new()
        .prefix(&format!(".{name}.{PARTIAL_MARK}"))
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a staging directory in {dir}"))
}

/// Moves a completed staging directory to `final_path`, replacing an older entry.
pub fn commit_dir(staging: tempfile::TempDir, final_path: &Utf8Path) -> Result<()> {
    let staged = staging.keep();
    if final_path.exists() {
        let old = final_path.with_file_name(format!(
            ".{}.{OLD_MARK}{}",
            final_path.file_name().unwrap_or("entry"),
            std::process::id()
        ));
        fs::rename(final_path, &old).with_context(|| format!("cannot move {final_path} aside"))?;
        fs::rename(&staged, final_path)
            .with_context(|| format!("cannot move the new {final_path} into place"))?;
        remove_dir_all_writable(&old)?;
    } else {
        fs::rename(&staged, final_path)
            .with_context(|| format!("cannot move the new {final_path} into place"))?;
    }
    Ok(())
}

/// Removes a tree even where it holds read-only files (the Go module cache makes them).
pub fn remove_dir_all_writable(path: &Utf8Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    make_writable(path)?;
    fs::remove_dir_all(path).with_context(|| format!("cannot remove {path}"))
}

fn make_writable(path: &Utf8Path) -> Result<()> {
    for entry in walk(path)? {
        let metadata = fs::symlink_metadata(&entry)?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        let mut permissions = metadata.permissions();
        if permissions.readonly() {
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            fs::set_permissions(&entry, permissions)?;
        }
    }
    Ok(())
}

/// Every path below `root` (included), directories before their contents, sorted by name.
pub fn walk(root: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let mut out = vec![root.to_owned()];
    let mut index = 0;
    while index < out.len() {
        let path = out[index].clone();
        index += 1;
        let metadata =
            fs::symlink_metadata(&path).with_context(|| format!("cannot read {path}"))?;
        if !metadata.is_dir() {
            continue;
        }
        let mut children: Vec<Utf8PathBuf> = Vec::new();
        for entry in fs::read_dir(&path).with_context(|| format!("cannot list {path}"))? {
            let entry = entry?;
            let child = Utf8PathBuf::from_path_buf(entry.path())
                .map_err(|p| anyhow::anyhow!("non-UTF-8 path {}", p.display()))?;
            children.push(child);
        }
        children.sort();
        out.extend(children);
    }
    Ok(out)
}

/// Copies a tree, keeping the executable bits and making everything writable.
pub fn copy_tree(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    for source in walk(from)? {
        let relative = source
            .strip_prefix(from)
            .expect("walk stays below its root");
        let target = to.join(relative);
        let metadata = fs::symlink_metadata(&source)?;
        if metadata.is_dir() {
            fs::create_dir_all(&target).with_context(|| format!("cannot create {target}"))?;
        } else if metadata.file_type().is_symlink() {
            let link = fs::read_link(&source)?;
            std::os::unix::fs::symlink(link, &target)?;
        } else {
            fs::copy(&source, &target).with_context(|| format!("cannot copy {source}"))?;
            let mut permissions = fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            fs::set_permissions(&target, permissions)?;
        }
    }
    Ok(())
}

pub fn sha256_file(path: &Utf8Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {path}"))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {path}"))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parent_of(path: &Utf8Path) -> Result<&Utf8Path> {
    path.parent()
        .with_context(|| format!("{path} has no parent directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_dir_replaces_atomically() {
        let temp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(temp.path()).unwrap();
        let target = root.join("entry");
        for generation in ["first", "second"] {
            let staging = staging_dir(&target).unwrap();
            fs::write(staging.path().join("data"), generation).unwrap();
            commit_dir(staging, &target).unwrap();
            assert_eq!(fs::read_to_string(target.join("data")).unwrap(), generation);
        }
        let leftovers: Vec<_> = fs::read_dir(root).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no staging or old entries remain");
    }

    #[test]
    fn sweep_removes_what_killed_runs_left_and_keeps_the_rest() {
        let temp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(temp.path()).unwrap();
        let entry = root.join("kubeadm");
        fs::write(&entry, "shipped").unwrap();
        let ours = partial_path(&entry, "packed");
        let nested = partial_path(&ours, "upx");
        for leftover in [".kubeadm.partial-go1", ".kubeadm.partial-packed2-upx2"] {
            fs::write(root.join(leftover), "half").unwrap();
        }
        fs::create_dir(root.join(".kubeadm.old-3")).unwrap();
        fs::write(root.join(".kubeadm.old-3/file"), "old").unwrap();
        for kept in [
            ".kubeadm.stamp",
            ".kubeadm.record.json",
            ".kubelet.partial-go1",
        ] {
            fs::write(root.join(kept), "keep").unwrap();
        }
        fs::write(&ours, "ours").unwrap();
        fs::write(&nested, "ours").unwrap();
        sweep_leftovers(&entry).unwrap();
        let mut left: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![
            ".kubeadm.record.json".to_owned(),
            ".kubeadm.stamp".to_owned(),
            ".kubelet.partial-go1".to_owned(),
            "kubeadm".to_owned(),
            ours.file_name().unwrap().to_owned(),
            nested.file_name().unwrap().to_owned(),
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn write_atomic_and_hash() {
        let temp = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(temp.path()).unwrap().join("a/b.txt");
        write_atomic(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
