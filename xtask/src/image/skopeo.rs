//! Publishing an OCI layout with skopeo: every platform image first, then the index, each with
//! its digest kept as built (`--preserve-digests`), to a registry or to the local OCI layout.

use anyhow::Result;
use xshell::{cmd, Shell};

use super::buildx::Buildx;
use super::{is_loopback, DigestFile, ImageJob, Published, Publisher, Target};

pub struct SkopeoPublisher {
    /// The builder whose OCI layouts are published.
    pub source: Buildx,
    pub target: Target,
}

impl SkopeoPublisher {
    fn options(&self) -> Vec<String> {
        let mut options = vec!["--all".to_owned(), "--preserve-digests".to_owned()];
        if let Target::Registry { prefix } = &self.target {
            if is_loopback(prefix) {
                options.push("--dest-tls-verify=false".to_owned());
            }
        }
        options
    }
}

impl Publisher for SkopeoPublisher {
    fn destination(&self, job: &ImageJob) -> String {
        self.target.destination(job)
    }

    fn publish(&self, sh: &Shell, job: &ImageJob) -> Result<Published> {
        let source = format!("oci:{}", self.source.layout_of(job));
        let destination = self.destination(job);
        self.target.prepare()?;
        let digest_file = DigestFile::new()?;
        let digest_path = &digest_file.path;
        let options = &self.options();
        crate::retry::push_with_retry(&self.target.name(), &job.reference(), || {
            // skopeo copies the platform images before the index that lists them.
            let output = cmd!(
                sh,
                "skopeo copy --quiet {options...} --digestfile={digest_path} {source} {destination}"
            )
            .quiet()
            .ignore_status()
            .output()
            .map_err(|err| err.to_string())?;
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        })?;
        Ok(Published {
            reference: destination,
            digest: digest_file.digest(),
        })
    }
}
