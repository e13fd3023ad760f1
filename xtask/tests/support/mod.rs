//! Shared by the end-to-end tests.

use std::path::Path;

use git2::{Oid, Repository, Signature, Time};

/// Whether every tool is on PATH. A missing tool skips the test locally, but fails it under CI,
/// where `.ci/run` installs everything and a skip would hide a broken setup.
pub fn tools_present(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which::which(t).is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: missing {}", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!("{message}: CI must install it (.ci/run)");
    }
    eprintln!("E2E-SKIPPED {message}");
    false
}

/// Commits every file under `dir` into the repository there, with a fixed author and date.
pub fn commit_all(repo: &Repository, message: &str, time: i64) -> Oid {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let signature =
        Signature::new("Release Bot", "bot@example.invalid", &Time::new(time, 0)).unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        message,
        &tree,
        &parents,
    )
    .unwrap()
}

pub fn tag(repo: &Repository, name: &str, commit: Oid, time: i64) {
    let object = repo.find_object(commit, None).unwrap();
    let signature =
        Signature::new("Release Bot", "bot@example.invalid", &Time::new(time, 0)).unwrap();
    repo.tag(name, &object, &signature, name, false).unwrap();
}

pub fn write(dir: &Path, path: &str, contents: &str) {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, contents).unwrap();
}
