//! `cargo xtask doctor`: which tools are here, at which version, and how to get the rest.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::flags;

/// A tool the pipeline uses, what for, and how a maintainer installs it.
struct Tool {
    command: &'static str,
    version_args: &'static [&'static str],
    used_for: &'static str,
    install: &'static str,
    required: bool,
}

const TOOLS: &[Tool] = &[
    Tool {
        command: "go",
        version_args: &["version"],
        used_for: "fetch and compile (go1.21+ downloads the pinned toolchains)",
        install: "https://go.dev/dl or `apt-get install golang`",
        required: true,
    },
    Tool {
        command: "zig",
        version_args: &["version"],
        used_for: "the default musl C cross compiler for cgo",
        install: "`pip install ziglang` (the xtask also provisions it under target/)",
        required: false,
    },
    Tool {
        command: "cmake",
        version_args: &["--version"],
        used_for: "building the pinned upx that packs kubeadm, crictl and the CNI plugins",
        install: "`apt-get install cmake g++` (the xtask builds upx under target/)",
        required: false,
    },
    Tool {
        command: "make",
        version_args: &["--version"],
        used_for: "building the host tools from their pinned tarballs",
        install: "`apt-get install make`",
        required: false,
    },
    Tool {
        command: "gcc",
        version_args: &["--version"],
        used_for: "xfsprogs' build-time generators, which run on the build host",
        install: "`apt-get install gcc`",
        required: false,
    },
    Tool {
        command: "xz",
        version_args: &["--version"],
        used_for: "unpacking the .tar.xz tarballs of upx and the host tools",
        install: "`apt-get install xz-utils`",
        required: false,
    },
    Tool {
        command: "bzip2",
        version_args: &["--help"],
        used_for: "unpacking liburcu's .tar.bz2 for xfsprogs",
        install: "`apt-get install bzip2`",
        required: false,
    },
    Tool {
        command: "curl",
        version_args: &["--version"],
        used_for: "downloading the pinned source tarballs of upx and the host tools",
        install: "`apt-get install curl`",
        required: false,
    },
    Tool {
        command: "qemu-aarch64-static",
        version_args: &["--version"],
        used_for: "running arm64 binaries to check them",
        install: "`apt-get install qemu-user-static`",
        required: false,
    },
    Tool {
        command: "qemu-arm-static",
        version_args: &["--version"],
        used_for: "running armv7 binaries to check them",
        install: "`apt-get install qemu-user-static`",
        required: false,
    },
    Tool {
        command: "buildah",
        version_args: &["--version"],
        used_for: "building images without a Docker engine",
        install: "`apt-get install buildah`",
        required: false,
    },
    Tool {
        command: "docker",
        version_args: &["buildx", "version"],
        used_for: "building images with buildx",
        install: "Docker Engine with the buildx plugin",
        required: false,
    },
    Tool {
        command: "skopeo",
        version_args: &["--version"],
        used_for: "publishing every built image, and reading image sizes",
        install: "`apt-get install skopeo`",
        required: false,
    },
    Tool {
        command: "docker-registry",
        version_args: &["--version"],
        used_for: "the local registry of the end-to-end tests",
        install: "`apt-get install docker-registry`",
        required: false,
    },
];

impl flags::Doctor {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let mut missing_required = Vec::new();
        for tool in TOOLS {
            match which::which(tool.command) {
                Ok(path) => {
                    let version = first_line_of(
                        duct::cmd(&path, tool.version_args)
                            .stderr_to_stdout()
                            .unchecked()
                            .read()
                            .unwrap_or_default(),
                    );
                    println!(
                        "ok       {:<20} {version}  ({})",
                        tool.command,
                        path.display()
                    );
                }
                Err(_) => {
                    let level = if tool.required {
                        "MISSING "
                    } else {
                        "absent  "
                    };
                    println!(
                        "{level} {:<20} for {}; install: {}",
                        tool.command, tool.used_for, tool.install
                    );
                    if tool.required {
                        missing_required.push(tool.command);
                    }
                }
            }
        }
        if !missing_required.is_empty() {
            bail!(
                "required tools are missing: {}",
                missing_required.join(", ")
            );
        }
        Ok(())
    }
}

fn first_line_of(text: String) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no version output)")
        .trim()
        .to_owned()
}
