//! The buildah backend, for hosts without a Docker engine: builds each platform on its own (vfs
//! storage under target/, chroot isolation), assembles a manifest list in platform order, and
//! pushes it with all its images.

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use kubelet_upstream::Arch;
use xshell::{cmd, Shell};

use super::{
    is_loopback, Builder, DigestFile, ImageJob, MountedRoot, Published, Publisher, Target,
};
use crate::layout::Layout;

#[derive(Debug, Clone)]
pub struct Buildah {
    root: Utf8PathBuf,
    runroot: Utf8PathBuf,
}

impl Buildah {
    pub fn new(layout: &Layout) -> Buildah {
        let base = layout.cache().join("buildah");
        Buildah {
            root: base.join("root"),
            runroot: base.join("run"),
        }
    }

    /// Storage options every buildah call shares: one store under target/, vfs so no
    /// overlay support or privileges beyond root are needed.
    fn global(&self) -> Vec<String> {
        vec![
            format!("--root={}", self.root),
            format!("--runroot={}", self.runroot),
            "--storage-driver=vfs".to_owned(),
        ]
    }

    /// The local name of one platform's image and of the image's manifest list.
    fn platform_name(job: &ImageJob, arch: Arch) -> String {
        format!(
            "localhost/ck/{}:{}-{}",
            job.repository,
            job.tag,
            arch.name()
        )
    }

    fn list_name(job: &ImageJob) -> String {
        format!("localhost/ck/{}:{}", job.repository, job.tag)
    }
}

impl Builder for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }

    fn build(&self, sh: &Shell, job: &ImageJob) -> Result<()> {
        let global = &self.global();
        let list = Self::list_name(job);
        // A list from an earlier run would keep its old entries: start from an empty one.
        cmd!(sh, "buildah {global...} manifest rm {list}")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .ignore_stdout()
            .run()?;
        cmd!(sh, "buildah {global...} manifest create {list}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("cannot create a manifest list with buildah")?;
        for (position, &arch) in job.arches.iter().enumerate() {
            let name = Self::platform_name(job, arch);
            let platform = arch.platform();
            let timestamp = job.source_date_epoch.to_string();
            let mut args: Vec<String> = Vec::new();
            for (key, value) in &job.build_args {
                args.push(format!("--build-arg={key}={value}"));
                if key == "BASE_IMAGE" && is_loopback(value) {
                    args.push("--tls-verify=false".to_owned());
                }
            }
            for (key, value) in &job.labels {
                args.push(format!("--label={key}={value}"));
            }
            let dockerfile = job.context.join("Dockerfile");
            let context = &job.context;
            eprintln!("    buildah: {} {platform}", job.reference());
            cmd!(sh, "buildah {global...} build --quiet --isolation=chroot --platform={platform} --timestamp={timestamp} {args...} --file={dockerfile} --tag={name} {context}")
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| format!("buildah could not build {} for {platform}", job.reference()))?;
            cmd!(
                sh,
                "buildah {global...} manifest add {list} containers-storage:{name}"
            )
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("cannot add {platform} to the manifest list"))?;
            if position == 0 {
                crate::pause::point("image-build");
            }
        }
        Ok(())
    }

    fn sweep(&self, sh: &Shell) -> Result<()> {
        // The store is ours alone and the cache lock is held: any container in it is a
        // working container or a mounted root that a killed run never removed.
        let global = &self.global();
        cmd!(sh, "buildah {global...} rm --all")
            .quiet()
            .ignore_stdout()
            .run()
            .context("cannot remove the containers an interrupted run left in the buildah store")
    }

    fn mount(&self, sh: &Shell, job: &ImageJob, arch: Arch) -> Result<MountedRoot> {
        let global = &self.global();
        let name = Self::platform_name(job, arch);
        let container = cmd!(sh, "buildah {global...} from --pull-never {name}")
            .quiet()
            .read()
            .with_context(|| format!("cannot open {name}"))?;
        let path = cmd!(sh, "buildah {global...} mount {container}")
            .quiet()
            .read()
            .with_context(|| format!("cannot mount {name}"))?;
        let buildah = |verb: &str| -> Vec<String> {
            let mut command = vec!["buildah".to_owned()];
            command.extend(global.iter().cloned());
            command.extend([verb.to_owned(), container.clone()]);
            command
        };
        let cleanup = vec![buildah("umount"), buildah("rm")];
        Ok(MountedRoot {
            path: Utf8PathBuf::from(path.trim()),
            cleanup,
            unpacked: None,
        })
    }
}

/// Pushes the list and every image in it to a registry, or writes them to an OCI layout.
pub struct BuildahPublisher {
    pub store: Buildah,
    pub target: Target,
}

impl Publisher for BuildahPublisher {
    fn destination(&self, job: &ImageJob) -> String {
        self.target.destination(job)
    }

    fn publish(&self, sh: &Shell, job: &ImageJob) -> Result<Published> {
        let global = &self.store.global();
        let list = Buildah::list_name(job);
        let destination = self.destination(job);
        let digest_file = DigestFile::new()?;
        let mut options = vec![
            "--all".to_owned(),
            format!("--digestfile={}", digest_file.path),
        ];
        if let Target::Registry { prefix } = &self.target {
            if is_loopback(prefix) {
                options.push("--tls-verify=false".to_owned())
            }
        }
        self.target.prepare()?;
        // `--all` pushes every platform's image before the list, so a failed push never
        // leaves an index that points at missing manifests.
        let registry = self.target.name();
        let options = &options;
        crate::retry::push_with_retry(&registry, &job.reference(), || {
            // Debug logging, because buildah 1.28's `manifest push --all` drops the error of a
            // push the registry answered with 401 or 5xx and exits 0: the reason is only in
            // its debug lines.
            let output = cmd!(
                sh,
                "buildah {global...} --log-level=debug manifest push {options...} {list} {destination}"
            )
            .quiet()
            .ignore_status()
            .output()
            .map_err(|err| err.to_string())?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            let (said, debug) = split_debug_lines(&stderr);
            if !output.status.success() {
                return Err(said);
            }
            if digest_file.digest().is_empty() {
                return Err(silent_push_failure(&debug));
            }
            Ok(())
        })?;
        Ok(Published {
            reference: destination,
            digest: digest_file.digest(),
        })
    }
}

/// Splits buildah's error output into what it says at info level and above, and its debug lines.
fn split_debug_lines(stderr: &str) -> (String, Vec<&str>) {
    let (debug, said): (Vec<&str>, Vec<&str>) =
        stderr.lines().partition(|l| l.contains("level=debug"));
    (said.join("\n"), debug)
}

/// Why a push that exited 0 without writing a digest failed, from buildah's debug lines: a
/// refused login, the last HTTP error status, or failing that, the last line it logged.
pub fn silent_push_failure(debug: &[&str]) -> String {
    let message = |line: &str| -> String {
        line.split_once("msg=")
            .map_or(line, |(_, m)| m)
            .trim_matches('"')
            .replace("\\\"", "\"")
    };
    if let Some(line) = debug.iter().rev().find(|l| l.contains("not authorized")) {
        return format!("unauthorized: {}", message(line));
    }
    // The /v1/_ping probe is a fallback for ancient registries: its 404 says nothing.
    let status = debug
        .iter()
        .rev()
        .filter(|l| !l.contains("/v1/_ping"))
        .find_map(|l| {
            let (_, rest) = l.split_once(" status ")?;
            let code: u16 = rest.get(..3)?.parse().ok()?;
            (code >= 400).then(|| (code, message(l)))
        });
    let network_error = debug
        .iter()
        .rev()
        .filter(|l| !l.contains("/v1/_ping"))
        .find_map(|l| {
            let text = message(l);
            let (_, error) = text.split_once(" err ")?;
            Some(error.split(" (&").next().unwrap_or_default().to_owned())
        });
    match (status, network_error) {
        (Some((code, line)), _) => format!("{} ({line})", http_status_text(code)),
        (None, Some(error)) => error,
        (None, None) => format!(
            "buildah exited 0 but pushed nothing; its last words: {}",
            debug.last().map_or("none".to_owned(), |l| message(l))
        ),
    }
}

fn http_status_text(code: u16) -> String {
    let reason = match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "HTTP error",
    };
    format!("{code} {reason}")
}

/// OCI layouts name an image by one reference; tags cannot hold a second colon.
pub fn oci_ref_name(job: &ImageJob) -> String {
    oci_ref_name_for(&job.repository, &job.tag)
}

pub fn oci_ref_name_for(repository: &str, tag: &str) -> String {
    format!("{repository}_{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::{classify, Failure};

    // Debug lines buildah 1.28 printed here for pushes it reported as successful.
    const REFUSED_LOGIN: &str = r#"time="2026-11-21T19:22:20Z" level=debug msg="Ping http://127.0.0.1:5001/v2/ status 401"
time="2026-11-21T19:22:20Z" level=debug msg="HEAD http://127.0.0.1:5001/v2/ck/alpine/blobs/sha256:6296"
time="2026-11-21T19:22:20Z" level=debug msg="... not authorized"
time="2026-11-21T19:22:20Z" level=debug msg="shutting down the store""#;
    const REFUSED_CONNECTION: &str = r#"time="2026-11-21T20:03:07Z" level=debug msg="Ping http://127.0.0.1:1/v2/ err Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused (&url.Error{Op:\"Get\", URL:\"http://127.0.0.1:1/v2/\", Err:(*net.OpError)(0xc000148870)})"
time="2026-11-21T20:03:07Z" level=debug msg="GET https://127.0.0.1:1/v1/_ping"
time="2026-11-21T20:03:07Z" level=debug msg="Ping http://127.0.0.1:1/v1/_ping err Get \"http://127.0.0.1:1/v1/_ping\": dial tcp 127.0.0.1:1: connect: connection refused (&url.Error{Op:\"Get\", URL:\"http://127.0.0.1:1/v1/_ping\", Err:(*net.OpError)(0xc0001489b0)})"
time="2026-11-21T20:03:07Z" level=debug msg="shutting down the store""#;
    const OVERLOADED: &str = r#"time="2026-11-21T19:22:30Z" level=debug msg="GET http://127.0.0.1:5002/v2/"
time="2026-11-21T19:22:30Z" level=debug msg="Ping http://127.0.0.1:5002/v2/ status 503"
time="2026-11-21T19:22:30Z" level=debug msg="Ping http://127.0.0.1:5002/v1/_ping status 503"
time="2026-11-21T19:22:30Z" level=debug msg="shutting down the store""#;

    #[test]
    fn a_silent_failure_is_classified_from_buildahs_debug_lines() {
        let lines: Vec<&str> = REFUSED_LOGIN.lines().collect();
        let reason = silent_push_failure(&lines);
        assert_eq!(reason, "unauthorized: ... not authorized");
        assert_eq!(classify(&reason), Failure::Auth);

        let lines: Vec<&str> = OVERLOADED.lines().collect();
        let reason = silent_push_failure(&lines);
        assert!(reason.starts_with("503 Service Unavailable ("), "{reason}");
        assert!(reason.contains("/v2/"), "{reason}");
        assert_eq!(classify(&reason), Failure::Transient);

        let lines: Vec<&str> = REFUSED_CONNECTION.lines().collect();
        let reason = silent_push_failure(&lines);
        assert_eq!(
            reason,
            "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"
        );
        assert_eq!(classify(&reason), Failure::Transient);

        let reason = silent_push_failure(&["level=debug msg=\"shutting down the store\""]);
        assert!(reason.contains("pushed nothing"), "{reason}");
    }

    #[test]
    fn debug_lines_are_kept_apart_from_what_buildah_says() {
        let (said, debug) = split_debug_lines(
            "Copying blob sha256:1\ntime=\"t\" level=debug msg=\"GET /v2/\"\nError: denied",
        );
        assert_eq!(said, "Copying blob sha256:1\nError: denied");
        assert_eq!(debug.len(), 1);
    }
}
