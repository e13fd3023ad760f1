//! Shared by the end-to-end tests. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod fixtures;
pub mod goproxy;
pub mod images;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use git2::{Oid, Repository, Signature, Time};

/// How to get a tool an end-to-end test needs and a fresh machine may lack.
fn install_hint(tool: &str) -> &'static str {
    match tool {
        "go" => "Go 1.21 or newer from go.dev/dl or the distribution",
        "python3" => "apt-get install python3 python3-pip (the xtask fetches zig through pip)",
        "cmake" | "c++" => "apt-get install cmake g++ (the xtask builds its pinned upx with them)",
        "curl" => "apt-get install curl (the xtask downloads pinned source tarballs with it)",
        "xz" => "apt-get install xz-utils",
        "ip" => "apt-get install iproute2",
        "buildah" => "apt-get install buildah",
        "skopeo" => "apt-get install skopeo",
        "docker-registry" => "apt-get install docker-registry",
        "qemu-aarch64-static" | "qemu-arm-static" => "apt-get install qemu-user-static",
        "runc" => "apt-get install runc",
        "docker" => "apt-get install docker.io (only the CLI is used)",
        "buildkitd" => ".ci/run builds it from the Go module proxy into target/ci-tools",
        "tar" => "apt-get install tar",
        _ => "see .ci/run",
    }
}

/// Fails the test unless every tool is on PATH, naming each missing one and how to get it.
/// End-to-end tests are `#[ignore]`d, so they run only when asked for, and then never skip.
pub fn require_tools(test: &str, tools: &[&str]) {
    let missing: Vec<String> = tools
        .iter()
        .filter(|t| which::which(t).is_err())
        .map(|t| format!("`{t}` ({})", install_hint(t)))
        .collect();
    assert!(
        missing.is_empty(),
        "{test}: missing {}; .ci/run installs everything the end-to-end tests need",
        missing.join(", ")
    );
}

/// The `error:` lines a command printed: a bad input must give exactly one.
pub fn error_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .collect()
}

/// The host's Go release as the manifest spells it (`1.26.8`): tests build with it, so they
/// exercise the pipeline rather than a toolchain download.
pub fn host_go() -> String {
    let out = Command::new("go")
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let version = text.trim().trim_start_matches("go").to_owned();
    if version.matches('.').count() == 1 {
        format!("{version}.0")
    } else {
        version
    }
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

/// A real OCI registry (Debian's docker-registry) on 127.0.0.1, stopped when dropped.
pub struct Registry {
    child: Child,
    pub address: String,
    _storage: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with_auth(None)
    }

    /// With `Some((user, password))`, the registry requires that login (htpasswd, bcrypt).
    pub fn start_with_auth(login: Option<(&str, &str)>) -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            storage.path().join("data").display()
        );
        if let Some((user, password)) = login {
            let htpasswd = storage.path().join("htpasswd");
            let hash = bcrypt::hash_with_result(password, 4)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY);
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            address,
            _storage: storage,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Toolchains, Go module downloads and zig's libc builds, shared by the end-to-end tests
/// (which run one test binary at a time) so zig's per-target caches fill once.
pub fn tool_cache() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache")
}

/// Where the xtask installs a program of a host tool for an architecture: in the tool cache,
/// which every build cache of the tests shares.
pub fn installed_host_tool(
    tool: &kubelet_upstream::hosttools::HostTool,
    arch: kubelet_upstream::Arch,
    path: &str,
) -> std::path::PathBuf {
    tool_cache()
        .join("host-tools/out")
        .join(format!("{}-{}", tool.name(), tool.version()))
        .join(arch.name())
        .join(path)
}

/// Alpine's minimal root filesystems, beside the clone under ../shared.
pub fn minirootfs_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/alpine-minirootfs-3.20.3")
}

/// Fails the test unless the Alpine fixtures are beside the clone (every developer and CI
/// has `../shared`).
pub fn require_minirootfs(test: &str) {
    assert!(
        minirootfs_dir().join("SHA512SUMS").exists(),
        "{test}: no Alpine minirootfs fixtures at {}: they come with ../shared beside the clone",
        minirootfs_dir().display()
    );
}

/// The tools a fixture release with buildah, a registry and arm64 checks needs.
pub const PIPELINE_TOOLS: [&str; 9] = [
    "go",
    "python3",
    "curl",
    "cmake",
    "c++",
    "buildah",
    "skopeo",
    "docker-registry",
    "qemu-aarch64-static",
];

/// The fixture repositories in a fresh directory, and a manifest that pins them.
pub struct FixtureUpstream {
    pub work: tempfile::TempDir,
    pub manifest: std::path::PathBuf,
}

impl FixtureUpstream {
    pub fn create() -> FixtureUpstream {
        let work = tempfile::tempdir().unwrap();
        let repos = fixtures::create(&work.path().join("upstream"));
        let manifest = work.path().join("upstream.toml");
        std::fs::write(&manifest, fixtures::manifest(&repos, &host_go())).unwrap();
        FixtureUpstream { work, manifest }
    }
}

/// Files below `root` whose names say a run left them half-done.
pub fn leftovers(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Go's build cache and buildah's store keep their own books.
            if name == "buildah" || name == "go" {
                continue;
            }
            if name.contains(".partial-") || name.contains(".old-") {
                found.push(entry.path().display().to_string());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// A real registry behind a relay that answers the first `failures` HTTP requests with
/// 503 Service Unavailable and closes, as an overloaded registry or its load balancer does,
/// then relays everything to the registry. Stops with the test process.
pub struct FlakyFront {
    pub address: String,
    pub failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FlakyFront {
    pub fn start(backend: &str, failures: usize) -> FlakyFront {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let failed = Arc::new(AtomicUsize::new(0));
        let counter = failed.clone();
        let backend = backend.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let backend = backend.clone();
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut first = [0u8; 1];
                    // A TLS probe (handshake byte 0x16) goes to the registry, which turns it
                    // away as any plain-HTTP registry does; HTTP requests count.
                    let is_http = client
                        .peek(&mut first)
                        .is_ok_and(|n| n == 1 && first[0] != 0x16);
                    if is_http && counter.fetch_add(1, Ordering::SeqCst) < failures {
                        answer_503(client);
                    } else {
                        if is_http {
                            counter.fetch_sub(1, Ordering::SeqCst);
                        }
                        relay(client, &backend);
                    }
                });
            }
        });
        FlakyFront { address, failed }
    }

    pub fn failures_served(&self) -> usize {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn answer_503(mut client: std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    let _ = client.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

fn relay(client: std::net::TcpStream, backend: &str) {
    let Ok(server) = std::net::TcpStream::connect(backend) else {
        return;
    };
    let (mut client_read, mut server_write) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let _ = std::io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = upstream.join();
}

/// A BuildKit daemon on a socket of its own, reached by docker buildx through a builder
/// instance (the remote driver) in a docker configuration of its own. Stopped when dropped.
pub struct Buildkit {
    child: Child,
    /// The buildx builder instance's name.
    pub builder: String,
    /// DOCKER_CONFIG for every docker command that should see the builder.
    pub docker_config: tempfile::TempDir,
    _state: tempfile::TempDir,
}

impl Buildkit {
    /// Starts buildkitd, trusting `registry` (on 127.0.0.1) over plain HTTP.
    pub fn start(registry: &str) -> Buildkit {
        let state = tempfile::tempdir().unwrap();
        let socket = state.path().join("buildkitd.sock");
        let config = state.path().join("buildkitd.toml");
        std::fs::write(
            &config,
            format!(
                "[worker.oci]\n  enabled = true\n[worker.containerd]\n  enabled = false\n[registry.\"{registry}\"]\n  http = true\n"
            ),
        )
        .unwrap();
        let child = Command::new("buildkitd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(state.path().join("root"))
            .arg("--addr")
            .arg(format!("unix://{}", socket.display()))
            // No overlay mounts to leave behind when the test ends.
            .args([
                "--oci-worker-snapshotter=native",
                "--containerd-worker=false",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("buildkitd starts");
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "buildkitd did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let docker_config = tempfile::tempdir().unwrap();
        // buildah and skopeo read their credentials from DOCKER_CONFIG too, and want the file.
        std::fs::write(docker_config.path().join("config.json"), "{}").unwrap();
        let builder = format!("ck-e2e-{}", std::process::id());
        let status = Command::new("docker")
            .args(["buildx", "create", "--name", &builder, "--driver", "remote"])
            .arg(format!("unix://{}", socket.display()))
            .env("DOCKER_CONFIG", docker_config.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "docker buildx create failed");
        Buildkit {
            child,
            builder,
            docker_config,
            _state: state,
        }
    }
}

impl Drop for Buildkit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test unless `docker buildx` works with a BuildKit daemon of our own: the docker
/// CLI with the buildx plugin, buildkitd and runc.
pub fn require_buildx(test: &str) {
    require_tools(test, &["docker", "buildkitd", "runc"]);
    let works = Command::new("docker")
        .args(["buildx", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        works,
        "{test}: `docker buildx version` fails: docker has no buildx plugin; .ci/run builds it \
         from the Go module proxy and links it into /usr/local/lib/docker/cli-plugins"
    );
}
