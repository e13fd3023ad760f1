//! How a node runs kubelet from one of the images: the host paths kubelet shares with the host,
//! with their mount propagation, and the container runtime commands that start it.
//!
//! The README's commands and its host-path table are generated from here (a tidy test keeps
//! them fresh), and the end-to-end cluster starts kubelet with these very commands, so what the
//! README tells a user is what is tested.

use crate::rules::Image;
use crate::version::KubeVersion;

/// containerd's CRI socket, in the directory that is mounted whole: a file bind mount would
/// keep pointing at the old socket's inode once containerd restarts.
pub const CONTAINERD_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
/// cri-dockerd's socket, for Docker hosts.
pub const CRI_DOCKERD_ENDPOINT: &str = "unix:///run/cri-dockerd.sock";
/// Where `ctr run -d` writes kubelet's output: without a log URI the output pipe fills up
/// (about 128 KiB) and blocks kubelet.
pub const CONTAINERD_LOG_URI: &str = "file:///var/log/kubelet.log";
/// The namespace containerd's CRI plugin, and so kubelet's pods, live in.
pub const CONTAINERD_NAMESPACE: &str = "k8s.io";
/// The container's name in the commands.
pub const CONTAINER_NAME: &str = "kubelet";

/// The container runtimes the README shows commands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    /// Docker through cri-dockerd (kubelet has no built-in Docker support from 1.24 on).
    Docker,
}

/// How a mount's submounts travel between host and container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// The runtime's default (private): the container sees the host path as it was.
    Default,
    /// Mounts made on either side appear on the other: kubelet mounts volumes under its root,
    /// and the runtime, on the host, must see them.
    Rshared,
}

/// One host path kubelet's container mounts at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMount {
    pub path: &'static str,
    pub propagation: Propagation,
    pub read_only: bool,
    /// When a node needs it: "yes", or the condition.
    pub needed: &'static str,
    pub what_for: &'static str,
    /// Which runtime it is for; None for both.
    pub runtime: Option<Runtime>,
}

const fn mount(
    path: &'static str,
    propagation: Propagation,
    read_only: bool,
    needed: &'static str,
    what_for: &'static str,
    runtime: Option<Runtime>,
) -> HostMount {
    HostMount {
        path,
        propagation,
        read_only,
        needed,
        what_for,
        runtime,
    }
}

use Propagation::{Default as Private, Rshared};

/// Every host path of the commands, in the order they are passed.
pub const HOST_MOUNTS: &[HostMount] = &[
    mount("/etc/machine-id", Private, true, "yes", "the node's machine ID (`kubectl get node -o wide` shows it; empty without)", None),
    mount(
        "/etc/os-release",
        Private,
        true,
        "yes",
        "the node's OS as the node reports it (`osImage`); without it, the image's Alpine",
        None,
    ),
    mount("/sys/fs/cgroup", Private, false, "yes", "cgroups", None),
    mount("/run/containerd", Private, false, "yes", "the CRI socket; the directory, so a containerd restart does not leave a stale socket behind", Some(Runtime::Containerd)),
    mount("/var/lib/containerd", Rshared, false, "yes", "container root filesystems", Some(Runtime::Containerd)),
    mount("/run/cri-dockerd.sock", Private, false, "yes", "the CRI socket of cri-dockerd", Some(Runtime::Docker)),
    mount("/var/lib/docker", Rshared, false, "yes", "container root filesystems", Some(Runtime::Docker)),
    mount("/var/lib/kubelet", Rshared, false, "yes", "kubelet's root: volumes (secrets, config maps, emptyDir in memory) mounted here must reach the runtime", None),
    mount("/var/log/pods", Private, false, "yes", "pod logs", None),
    mount("/var/log/containers", Private, false, "yes", "the links to pod logs that log collectors read", None),
    mount("/etc/kubernetes", Private, false, "yes", "kubeconfigs and certificates", None),
    mount("/etc/cni/net.d", Private, true, "with CNI", "network configuration", None),
];

/// The mounts of one runtime's command.
pub fn host_mounts(runtime: Runtime) -> impl Iterator<Item = &'static HostMount> {
    HOST_MOUNTS
        .iter()
        .filter(move |m| m.runtime.is_none_or(|r| r == runtime))
}

/// The directories a node creates before kubelet starts: bind mounts need their sources. The
/// runtime's, the cgroup tree and the machine ID are the host's own.
pub fn host_directories() -> Vec<&'static str> {
    HOST_MOUNTS
        .iter()
        .filter(|m| {
            m.runtime.is_none()
                && !matches!(
                    m.path,
                    "/etc/machine-id" | "/etc/os-release" | "/sys/fs/cgroup"
                )
        })
        .map(|m| m.path)
        .chain(["/opt/cni/bin"])
        .collect()
}

/// The paths that must be shared mounts on the host, for `Rshared` to take effect.
pub fn shared_paths(runtime: Runtime) -> Vec<&'static str> {
    host_mounts(runtime)
        .filter(|m| m.propagation == Rshared)
        .map(|m| m.path)
        .collect()
}

/// Where a node's namespaces are taken from; the README uses init's, a test its own process's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNamespaces {
    pub pid: String,
    pub uts: String,
}

impl Default for NodeNamespaces {
    fn default() -> NodeNamespaces {
        NodeNamespaces {
            pid: "/proc/1/ns/pid".into(),
            uts: "/proc/1/ns/uts".into(),
        }
    }
}

/// kubelet's arguments for a runtime: the image's default command, pointed at the runtime's
/// socket.
pub fn kubelet_args(image: Image, version: KubeVersion, runtime: Runtime) -> Vec<String> {
    let (_, cmd) = image.entrypoint(version);
    let endpoint = match runtime {
        Runtime::Containerd => CONTAINERD_ENDPOINT,
        Runtime::Docker => CRI_DOCKERD_ENDPOINT,
    };
    cmd.into_iter()
        .map(
            |arg| match arg.strip_prefix("--container-runtime-endpoint=") {
                Some(_) => format!("--container-runtime-endpoint={endpoint}"),
                None => arg,
            },
        )
        .collect()
}

/// `ctr run`: detached, with its output in a log file, in the host's network, PID and UTS
/// namespaces, the root filesystem's propagation shared so kubelet's mounts reach the host.
pub fn containerd_command(
    reference: &str,
    image: Image,
    version: KubeVersion,
    namespaces: &NodeNamespaces,
) -> Vec<String> {
    let mut argv: Vec<String> = [
        "ctr",
        "-n",
        CONTAINERD_NAMESPACE,
        "run",
        "-d",
        "--privileged",
        "--net-host",
    ]
    .map(String::from)
    .to_vec();
    argv.push(format!("--log-uri={CONTAINERD_LOG_URI}"));
    argv.push("--rootfs-propagation=rshared".into());
    argv.push(format!("--with-ns=pid:{}", namespaces.pid));
    argv.push(format!("--with-ns=uts:{}", namespaces.uts));
    for m in host_mounts(Runtime::Containerd) {
        let mut options = vec!["rbind"];
        if m.propagation == Rshared {
            options.push("rshared");
        }
        options.push(if m.read_only { "ro" } else { "rw" });
        argv.push("--mount".into());
        argv.push(format!(
            "type=bind,src={0},dst={0},options={1}",
            m.path,
            options.join(":")
        ));
    }
    argv.push(reference.into());
    argv.push(CONTAINER_NAME.into());
    // ctr's arguments replace the image's whole command, entrypoint included.
    let (entrypoint, _) = image.entrypoint(version);
    argv.extend(entrypoint);
    argv.extend(kubelet_args(image, version, Runtime::Containerd));
    argv
}

/// `docker run`, restarted by Docker, against cri-dockerd's socket.
pub fn docker_command(reference: &str, image: Image, version: KubeVersion) -> Vec<String> {
    let mut argv: Vec<String> = [
        "docker",
        "run",
        "-d",
        "--restart=always",
        "--name=kubelet",
        "--network=host",
        "--pid=host",
        "--uts=host",
        "--privileged",
    ]
    .map(String::from)
    .to_vec();
    for m in host_mounts(Runtime::Docker) {
        let mut spec = format!("type=bind,src={0},dst={0}", m.path);
        if m.propagation == Rshared {
            spec.push_str(",bind-propagation=rshared");
        }
        if m.read_only {
            spec.push_str(",readonly");
        }
        argv.push("--mount".into());
        argv.push(spec);
    }
    argv.push(reference.into());
    // Arguments after the image replace CMD; the ENTRYPOINT stays kubelet.
    argv.extend(kubelet_args(image, version, Runtime::Docker));
    argv
}

/// A command as the README shows it: options that take a value kept with it, one option or
/// group per line, and the image and what follows it on lines of their own.
pub fn shell_lines(argv: &[String], reference: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut iter = argv.iter().peekable();
    let mut after_image = false;
    while let Some(arg) = iter.next() {
        let word = shell_quote(arg);
        if arg == reference {
            lines.push(std::mem::take(&mut current));
            current = word;
            after_image = true;
            continue;
        }
        let starts_group = arg == "--mount"
            || arg.starts_with("--log-uri")
            || arg.starts_with("--with-ns=pid")
            || (after_image && arg.starts_with("--") && current.len() > 60);
        if starts_group && !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&word);
        if arg == "--mount" {
            if let Some(value) = iter.next() {
                current.push(' ');
                current.push_str(&shell_quote(value));
            }
        }
    }
    lines.push(current);
    let lines: Vec<String> = lines.into_iter().filter(|l| !l.is_empty()).collect();
    let mut out = String::new();
    for (index, line) in lines.iter().enumerate() {
        if index > 0 {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push_str(if index + 1 < lines.len() {
            " \\\n"
        } else {
            "\n"
        });
    }
    out
}

/// A word as a POSIX shell reads it back: plain when it can be, single-quoted otherwise.
pub fn shell_quote(word: &str) -> String {
    let plain = word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain && !word.is_empty() {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The host-path table of the README.
pub fn mounts_table() -> String {
    let mut out = String::from(
        "| Host path (same path inside) | Propagation | Needed | Runtime | What for |\n| --- | --- | --- | --- | --- |\n",
    );
    for m in HOST_MOUNTS {
        let propagation = match m.propagation {
            Private => "default",
            Rshared => "**rshared**",
        };
        let runtime = match m.runtime {
            None => "both",
            Some(Runtime::Containerd) => "containerd",
            Some(Runtime::Docker) => "Docker",
        };
        let access = if m.read_only { ", read-only" } else { "" };
        out.push_str(&format!(
            "| `{}` | {propagation}{access} | {} | {runtime} | {} |\n",
            m.path, m.needed, m.what_for
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> KubeVersion {
        text.parse().unwrap()
    }

    #[test]
    fn containerd_command_fixes_what_a_real_node_needed() {
        let argv = containerd_command(
            "r/kubelet:t",
            Image::KubeletCni,
            v("v1.26.0"),
            &NodeNamespaces::default(),
        );
        let text = argv.join(" ");
        assert!(text.contains("--rootfs-propagation=rshared"), "{text}");
        assert!(
            text.contains("--log-uri=file:///var/log/kubelet.log"),
            "{text}"
        );
        assert!(
            text.contains("src=/run/containerd,dst=/run/containerd,options=rbind:rw"),
            "{text}"
        );
        assert!(
            !text.contains("containerd.sock,dst="),
            "the directory, not the socket: {text}"
        );
        assert!(
            text.contains("src=/etc/machine-id,dst=/etc/machine-id,options=rbind:ro"),
            "{text}"
        );
        assert!(text.contains("src=/var/log/containers,"), "{text}");
        assert!(
            text.contains("src=/var/lib/kubelet,dst=/var/lib/kubelet,options=rbind:rshared:rw"),
            "{text}"
        );
        let image = argv.iter().position(|a| a == "r/kubelet:t").unwrap();
        assert_eq!(argv[image + 1..image + 3], ["kubelet", "kubelet"]);
        assert!(argv.contains(&"--container-runtime=remote".to_owned()));
        assert!(argv.contains(&format!(
            "--container-runtime-endpoint={CONTAINERD_ENDPOINT}"
        )));
        let newer = containerd_command(
            "r/kubelet:t",
            Image::Kubelet,
            v("v1.37.1"),
            &NodeNamespaces::default(),
        );
        assert!(
            !newer.contains(&"--container-runtime=remote".to_owned()),
            "gone in 1.27"
        );
    }

    #[test]
    fn docker_command_points_kubelet_at_cri_dockerd() {
        let argv = docker_command("r/kubelet:t", Image::Kubelet, v("v1.26.0"));
        assert!(argv.contains(&format!(
            "--container-runtime-endpoint={CRI_DOCKERD_ENDPOINT}"
        )));
        assert!(!argv.iter().any(|a| a.contains("/var/lib/containerd")));
        assert!(argv.contains(
            &"type=bind,src=/var/lib/kubelet,dst=/var/lib/kubelet,bind-propagation=rshared"
                .to_owned()
        ));
        let image = argv.iter().position(|a| a == "r/kubelet:t").unwrap();
        assert!(
            argv[image + 1].starts_with("--config="),
            "CMD only, after the image"
        );
    }

    #[test]
    fn shell_lines_keep_each_mount_with_its_value_and_end_without_a_continuation() {
        let argv = containerd_command(
            "r/kubelet:t",
            Image::Kubelet,
            v("v1.26.0"),
            &NodeNamespaces::default(),
        );
        let text = shell_lines(&argv, "r/kubelet:t");
        for line in text.lines() {
            if line.trim_start().starts_with("--mount") {
                assert!(line.contains("type=bind"), "{line}");
            }
        }
        assert!(text.ends_with("containerd.sock\n"), "{text}");
        assert_eq!(text.matches(" \\\n").count() + 1, text.lines().count());
        let words: Vec<String> = text
            .replace(" \\\n", " ")
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(words, argv, "the lines are the command");
    }

    #[test]
    fn shared_paths_are_those_kubelet_and_the_runtime_share_mounts_through() {
        assert_eq!(
            shared_paths(Runtime::Containerd),
            ["/var/lib/containerd", "/var/lib/kubelet"]
        );
        assert_eq!(
            shared_paths(Runtime::Docker),
            ["/var/lib/docker", "/var/lib/kubelet"]
        );
        assert!(host_directories().contains(&"/var/log/containers"));
        assert!(!host_directories().contains(&"/etc/machine-id"));
    }
}
