//! The git source against real repositories that each test creates with git2.

use std::collections::BTreeMap;
use std::path::Path;

use camino::{Utf8Path, Utf8PathBuf};
use git2::{Oid, Repository, Signature, Time};
use kubelet_upstream::{Component, Manifest, Pin, Release, MANIFEST_FILE, MANIFEST_TEXT};
use xtask::Fetcher;
use xtask::GitFetcher;
use xtask::Layout;

const TAG: &str = "v1.30.0";
const COMMIT_TIME: i64 = 1_670_544_844;

struct Upstream {
    _dir: tempfile::TempDir,
    path: Utf8PathBuf,
    repo: Repository,
}

impl Upstream {
    fn new() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path())
            .unwrap()
            .join("upstream.git");
        let repo = Repository::init(&path).unwrap();
        Upstream {
            _dir: dir,
            path,
            repo,
        }
    }

    /// Commits one file and returns the commit.
    fn commit(&self, file: &str, contents: &str) -> Oid {
        std::fs::write(self.path.join(file), contents).unwrap();
        let mut index = self.repo.index().unwrap();
        index.add_path(Path::new(file)).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let signature = Signature::new(
            "Release Bot",
            "bot@example.invalid",
            &Time::new(COMMIT_TIME, 0),
        )
        .unwrap();
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                &format!("add {file}"),
                &tree,
                &parents,
            )
            .unwrap()
    }

    /// An annotated tag, as upstream releases use; `force` moves an existing one.
    fn tag(&self, name: &str, commit: Oid, force: bool) {
        let object = self.repo.find_object(commit, None).unwrap();
        let signature = Signature::new(
            "Release Bot",
            "bot@example.invalid",
            &Time::new(COMMIT_TIME, 0),
        )
        .unwrap();
        self.repo
            .tag(name, &object, &signature, name, force)
            .unwrap();
    }
}

struct Cache {
    _dir: tempfile::TempDir,
    layout: Layout,
}

fn cache() -> Cache {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap().to_owned();
    let layout = Layout::new(root.clone(), root.join("cache"));
    Cache { _dir: dir, layout }
}

fn release() -> Release {
    let manifest = Manifest::parse(MANIFEST_TEXT, MANIFEST_FILE).unwrap();
    manifest
        .release("v1.26.0".parse().unwrap())
        .unwrap()
        .clone()
}

fn pin(commit: &str) -> Pin {
    Pin {
        component: Component::CriTools,
        module: "sigs.k8s.io/cri-tools".into(),
        version: TAG.into(),
        commit: commit.into(),
        module_sum: None,
        goproxy: None,
    }
}

fn fetcher<'a>(layout: &'a Layout, url: &str) -> GitFetcher<'a> {
    let remotes: BTreeMap<Component, String> = Component::ALL
        .into_iter()
        .map(|c| (c, url.to_owned()))
        .collect();
    GitFetcher { layout, remotes }
}

/// Everything in the checkout's parent directory: no staging leftovers may remain.
fn entries_beside(layout: &Layout) -> Vec<String> {
    let dir = layout.git_checkout(Component::CriTools, TAG);
    let parent = dir.parent().unwrap();
    if !parent.exists() {
        return Vec::new();
    }
    let mut names: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn fetches_the_pinned_tag_and_checks_it_out() {
    let upstream = Upstream::new();
    upstream.commit("README", "old");
    let pinned = upstream.commit("main.go", "package main\n");
    upstream.tag(TAG, pinned, false);
    upstream.commit("later.go", "package main\n");
    let cache = cache();

    let tree = fetcher(&cache.layout, upstream.path.as_str())
        .fetch(&release(), &pin(&pinned.to_string()))
        .unwrap();

    assert_eq!(tree.commit, pinned.to_string());
    assert_eq!(
        std::fs::read_to_string(tree.dir.join("main.go")).unwrap(),
        "package main\n"
    );
    assert!(
        !tree.dir.join("later.go").exists(),
        "the checkout is the tag, not the branch head"
    );
    let checkout = Repository::open(&tree.dir).unwrap();
    assert_eq!(
        checkout.head().unwrap().peel_to_commit().unwrap().id(),
        pinned
    );
    assert_eq!(entries_beside(&cache.layout), [TAG]);
}

#[test]
fn second_run_reuses_the_cache_without_the_remote() {
    let upstream = Upstream::new();
    let pinned = upstream.commit("main.go", "package main\n");
    upstream.tag(TAG, pinned, false);
    let cache = cache();
    let url = upstream.path.to_string();
    fetcher(&cache.layout, &url)
        .fetch(&release(), &pin(&pinned.to_string()))
        .unwrap();

    // The remote is gone: any network access would fail.
    std::fs::remove_dir_all(&upstream.path).unwrap();
    let tree = fetcher(&cache.layout, &url)
        .fetch(&release(), &pin(&pinned.to_string()))
        .unwrap();
    assert!(tree.dir.join("main.go").exists());
}

#[test]
fn a_moved_tag_is_an_error_naming_both_commits() {
    let upstream = Upstream::new();
    let pinned = upstream.commit("main.go", "package main // v1\n");
    upstream.tag(TAG, pinned, false);
    let moved_to = upstream.commit("main.go", "package main // v2\n");
    upstream.tag(TAG, moved_to, true);
    let cache = cache();

    let error = fetcher(&cache.layout, upstream.path.as_str())
        .fetch(&release(), &pin(&pinned.to_string()))
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&moved_to.to_string()), "{message}");
    assert!(message.contains(&pinned.to_string()), "{message}");
    assert!(message.contains("tag was moved"), "{message}");
    assert!(
        entries_beside(&cache.layout).is_empty(),
        "nothing half-written: {:?}",
        entries_beside(&cache.layout)
    );
}

#[test]
fn a_wrong_pin_is_an_error_and_leaves_nothing() {
    let upstream = Upstream::new();
    let tagged = upstream.commit("main.go", "package main\n");
    upstream.tag(TAG, tagged, false);
    let cache = cache();
    let wrong = "0123456789abcdef0123456789abcdef01234567";

    let error = fetcher(&cache.layout, upstream.path.as_str())
        .fetch(&release(), &pin(wrong))
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(wrong) && message.contains(&tagged.to_string()),
        "{message}"
    );
    assert!(entries_beside(&cache.layout).is_empty());
}

#[test]
fn a_missing_tag_names_the_tag_and_remote() {
    let upstream = Upstream::new();
    let commit = upstream.commit("main.go", "package main\n");
    upstream.tag("v0.0.1", commit, false);
    let cache = cache();

    let error = fetcher(&cache.layout, upstream.path.as_str())
        .fetch(&release(), &pin(&commit.to_string()))
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(TAG) && message.contains(upstream.path.as_str()),
        "{message}"
    );
    assert!(message.contains("--remote cri-tools=URL"), "{message}");
}

#[test]
fn a_new_pin_replaces_the_old_checkout() {
    let upstream = Upstream::new();
    let first = upstream.commit("main.go", "package main // v1\n");
    upstream.tag(TAG, first, false);
    let cache = cache();
    let url = upstream.path.to_string();
    fetcher(&cache.layout, &url)
        .fetch(&release(), &pin(&first.to_string()))
        .unwrap();

    let second = upstream.commit("main.go", "package main // v2\n");
    upstream.tag(TAG, second, true);
    let tree = fetcher(&cache.layout, &url)
        .fetch(&release(), &pin(&second.to_string()))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.dir.join("main.go")).unwrap(),
        "package main // v2\n"
    );
    assert_eq!(entries_beside(&cache.layout), [TAG]);
}

#[test]
fn file_urls_work_like_paths() {
    let upstream = Upstream::new();
    let pinned = upstream.commit("main.go", "package main\n");
    upstream.tag(TAG, pinned, false);
    let cache = cache();
    let url = format!("file://{}", upstream.path);
    let tree = fetcher(&cache.layout, &url)
        .fetch(&release(), &pin(&pinned.to_string()))
        .unwrap();
    assert!(tree.dir.join("main.go").exists());
}
