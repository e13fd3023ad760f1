//! Publishing a built OCI layout with skopeo: every platform image first, then the index, each
//! with its digest kept as built (`--preserve-digests`), to a registry or to the local OCI
//! layout. Both builders write such a layout, so this is the one publisher.

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::{ImageJob, Published, Publisher, Target};

pub struct SkopeoPublisher {
    pub target: Target,
}

impl SkopeoPublisher {
    fn options(&self) -> Vec<String> {
        let mut options = vec!["--all".to_owned(), "--preserve-digests".to_owned()];
        if self.target.is_loopback_registry() {
            options.push("--dest-tls-verify=false".to_owned());
        }
        options
    }
}

impl Publisher for SkopeoPublisher {
    fn publish(&self, sh: &Shell, job: &ImageJob) -> Result<Published> {
        let source = format!("oci:{}", job.built);
        let destination = self.target.destination(job);
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
        let digest = digest_file.digest()?;
        Ok(Published {
            reference: destination,
            digest,
        })
    }
}

/// The file skopeo writes the pushed index's digest to (`--digestfile`).
struct DigestFile {
    file: tempfile::NamedTempFile,
    path: String,
}

impl DigestFile {
    fn new() -> Result<DigestFile> {
        let file = tempfile::NamedTempFile::new().context("cannot create a digest file")?;
        let path = file
            .path()
            .to_str()
            .context("non-UTF-8 temp path")?
            .to_owned();
        Ok(DigestFile { file, path })
    }

    /// The digest written. A push that wrote none, or something else, did not land as asked.
    fn digest(&self) -> Result<String> {
        let text = std::fs::read_to_string(self.file.path()).unwrap_or_default();
        checked_digest(text.trim())
    }
}

/// `sha256:` and 64 lowercase hex digits, or an error that says the push cannot be trusted.
pub fn checked_digest(digest: &str) -> Result<String> {
    let well_formed = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !well_formed {
        let shown = if digest.is_empty() { "nothing" } else { digest };
        bail!("skopeo reported success but wrote {shown} as the pushed digest; the push cannot be trusted, run it again");
    }
    Ok(digest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_without_a_well_formed_digest_is_an_error() {
        let good = format!("sha256:{}", "0a".repeat(32));
        assert_eq!(checked_digest(&good).unwrap(), good);
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "md5:0a0a",
            &good.to_uppercase(),
        ] {
            let error = checked_digest(bad).unwrap_err().to_string();
            assert!(error.contains("cannot be trusted"), "{bad}: {error}");
        }
    }
}
