//! Loading and validating `upstream.toml`, the pinned upstream matrix.
//!
//! Every problem is reported as one [`ManifestError`] naming the file, the line and the field,
//! because a maintainer fixing a pin by hand needs to know exactly where to look.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use toml::Spanned;

use crate::component::Component;
use crate::version::{GoVersion, KubeVersion};

/// The manifest format this crate reads; bump it when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;
const COMMIT_HEX_LEN: usize = 40;
const MODULE_SUM_PREFIX: &str = "h1:";
/// `h1:` followed by base64 of a SHA-256 digest.
const MODULE_SUM_LEN: usize = 3 + 44;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: {}",
            self.file, self.line, self.field, self.message
        )
    }
}

impl std::error::Error for ManifestError {}

/// The whole pinned matrix, validated.
#[derive(Debug, Clone)]
pub struct Manifest {
    remotes: BTreeMap<Component, String>,
    releases: Vec<Release>,
}

/// One pinned Kubernetes release and everything built alongside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: KubeVersion,
    pub kubernetes: Pin,
    pub cri_tools: Pin,
    pub cni_plugins: Pin,
    pub flannel_plugin: Pin,
    /// The Go release upstream built this Kubernetes with.
    pub go: GoVersion,
    /// The Go we build with when it is not `go`, and why (an unserved toolchain, say).
    pub build_go: Option<(GoVersion, String)>,
    /// The Alpine release of the image base, such as `3.20.3`.
    pub alpine: String,
    /// The digest of that Alpine's multi-arch index, so the base never changes under a tag.
    pub alpine_digest: String,
    /// The Kubernetes commit's date, the source of SOURCE_DATE_EPOCH for every artifact.
    pub source_date_epoch: i64,
}

/// One upstream source pinned to a tag and the commit it must resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub component: Component,
    /// The Go module path at this version (cri-tools moved from github.com to sigs.k8s.io).
    pub module: String,
    pub version: String,
    pub commit: String,
    /// The go command's `h1:` hash of the module zip, checked when fetching through a proxy.
    pub module_sum: Option<String>,
    /// Where the module proxy source takes this component from when it differs from the pin.
    pub goproxy: Option<GoproxySubstitute>,
}

/// A stand-in module for proxies that do not serve the pinned version. The plan names it and
/// its reason at every use, so a substituted build is never mistaken for the pinned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoproxySubstitute {
    pub module: String,
    pub version: String,
    /// The package directory inside that module, when the component lives in a subdirectory.
    pub subdir: Option<String>,
    pub module_sum: Option<String>,
    pub reason: String,
}

impl Pin {
    /// What the goproxy source downloads: the module, the version and the subdirectory.
    pub fn goproxy_module(&self) -> (&str, &str, Option<&str>) {
        match &self.goproxy {
            Some(sub) => (&sub.module, &sub.version, sub.subdir.as_deref()),
            None => (&self.module, &self.version, None),
        }
    }

    pub fn goproxy_module_sum(&self) -> Option<&str> {
        match &self.goproxy {
            Some(sub) => sub.module_sum.as_deref(),
            None => self.module_sum.as_deref(),
        }
    }
}

impl Release {
    /// The Go toolchain the binaries are compiled with.
    pub fn toolchain(&self) -> GoVersion {
        self.build_go.as_ref().map_or(self.go, |(go, _)| *go)
    }

    pub fn pins(&self) -> [&Pin; 4] {
        [
            &self.kubernetes,
            &self.cri_tools,
            &self.cni_plugins,
            &self.flannel_plugin,
        ]
    }

    pub fn pin(&self, component: Component) -> &Pin {
        match component {
            Component::Kubernetes => &self.kubernetes,
            Component::CriTools => &self.cri_tools,
            Component::CniPlugins => &self.cni_plugins,
            Component::FlannelPlugin => &self.flannel_plugin,
        }
    }

    /// `3.20` of `3.20.3`: image tags name the Alpine branch, not its point release.
    pub fn alpine_branch(&self) -> &str {
        match self.alpine.match_indices('.').nth(1) {
            Some((second_dot, _)) => &self.alpine[..second_dot],
            None => &self.alpine,
        }
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|err| ManifestError {
            file: path.display().to_string(),
            line: 0,
            field: "(file)".to_owned(),
            message: format!("cannot read the manifest: {err}"),
        })?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// Parses manifest text; `file` only names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|err| {
            let line = err.span().map_or(0, |span| line_of(text, span.start));
            ManifestError {
                file: file.to_owned(),
                line,
                field: field_of_toml_error(err.message()),
                message: err.message().trim().to_owned(),
            }
        })?;
        Validator { text, file }.manifest(raw)
    }

    /// Releases, oldest first.
    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    pub fn release(&self, version: KubeVersion) -> Option<&Release> {
        self.releases.iter().find(|r| r.version == version)
    }

    pub fn remote(&self, component: Component) -> &str {
        &self.remotes[&component]
    }

    /// Pinned versions as one line, for error messages about unknown versions.
    pub fn pinned_list(&self) -> String {
        let names: Vec<String> = self
            .releases
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        names.join(", ")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    schema: Spanned<u32>,
    remotes: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(rename = "release", default)]
    releases: Vec<RawRelease>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRelease {
    version: Spanned<String>,
    commit: Spanned<String>,
    commit_date: Spanned<String>,
    module_sum: Option<Spanned<String>>,
    go: Spanned<String>,
    build_go: Option<Spanned<String>>,
    build_go_reason: Option<Spanned<String>>,
    alpine: Spanned<String>,
    alpine_digest: Spanned<String>,
    cri_tools: RawPin,
    cni_plugins: RawPin,
    flannel_plugin: RawPin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPin {
    module: Option<Spanned<String>>,
    version: Spanned<String>,
    /// Allows a cri-tools minor other than Kubernetes', with the reason.
    skew_reason: Option<Spanned<String>>,
    commit: Spanned<String>,
    module_sum: Option<Spanned<String>>,
    goproxy: Option<RawSubstitute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSubstitute {
    module: Spanned<String>,
    version: Spanned<String>,
    subdir: Option<Spanned<String>>,
    module_sum: Option<Spanned<String>>,
    reason: Spanned<String>,
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Validator<'_> {
    fn error<T>(&self, at: &Spanned<T>, field: &str, message: String) -> ManifestError {
        ManifestError {
            file: self.file.to_owned(),
            line: line_of(self.text, at.span().start),
            field: field.to_owned(),
            message,
        }
    }

    fn manifest(&self, raw: RawManifest) -> Result<Manifest, ManifestError> {
        if *raw.schema.get_ref() != SCHEMA_VERSION {
            return Err(self.error(
                &raw.schema,
                "schema",
                format!(
                    "this xtask reads schema {SCHEMA_VERSION}, the file says {}; update the xtask or the file",
                    raw.schema.get_ref()
                ),
            ));
        }
        let remotes = self.remotes(raw.remotes)?;
        let mut releases: Vec<(Release, usize)> = Vec::new();
        for raw_release in raw.releases {
            let line = line_of(self.text, raw_release.version.span().start);
            let release = self.release(raw_release)?;
            if let Some((_, first_line)) =
                releases.iter().find(|(r, _)| r.version == release.version)
            {
                return Err(ManifestError {
                    file: self.file.to_owned(),
                    line,
                    field: "version".to_owned(),
                    message: format!(
                        "{} is pinned twice (first at line {first_line}); keep one entry",
                        release.version
                    ),
                });
            }
            releases.push((release, line));
        }
        let mut releases: Vec<Release> = releases.into_iter().map(|(r, _)| r).collect();
        releases.sort_by_key(|r| r.version);
        Ok(Manifest { remotes, releases })
    }

    fn remotes(
        &self,
        raw: BTreeMap<Spanned<String>, Spanned<String>>,
    ) -> Result<BTreeMap<Component, String>, ManifestError> {
        let mut remotes = BTreeMap::new();
        for (key, url) in raw {
            let component = Component::from_key(key.get_ref()).ok_or_else(|| {
                self.error(
                    &key,
                    &format!("remotes.{}", key.get_ref()),
                    format!(
                        "unknown component; expected one of {}",
                        Component::ALL.map(Component::key).join(", ")
                    ),
                )
            })?;
            if url.get_ref().trim().is_empty() {
                return Err(self.error(&url, &format!("remotes.{component}"), "empty URL".into()));
            }
            remotes.insert(component, url.into_inner());
        }
        if let Some(missing) = Component::ALL.iter().find(|c| !remotes.contains_key(c)) {
            return Err(ManifestError {
                file: self.file.to_owned(),
                line: 1,
                field: format!("remotes.{missing}"),
                message: "missing remote URL; add it to the [remotes] table".to_owned(),
            });
        }
        Ok(remotes)
    }

    fn release(&self, raw: RawRelease) -> Result<Release, ManifestError> {
        let version: KubeVersion =
            raw.version
                .get_ref()
                .parse()
                .map_err(|err: crate::version::VersionError| {
                    self.error(&raw.version, "version", err.to_string())
                })?;
        let scope = |field: &str| format!("release {version}: {field}");
        let kubernetes = Pin {
            component: Component::Kubernetes,
            module: Component::Kubernetes.module_path().to_owned(),
            version: version.to_string(),
            commit: self.commit(&raw.commit, &scope("commit"))?,
            module_sum: self.module_sum(raw.module_sum.as_ref(), &scope("module-sum"))?,
            goproxy: None,
        };
        let commit_date =
            OffsetDateTime::parse(raw.commit_date.get_ref(), &Rfc3339).map_err(|err| {
                self.error(
                    &raw.commit_date,
                    &scope("commit-date"),
                    format!("expected an RFC 3339 time like 2022-12-08T10:06:34Z: {err}"),
                )
            })?;
        let go = raw.go.get_ref().parse::<GoVersion>().map_err(|_| {
            self.error(
                &raw.go,
                &scope("go"),
                format!(
                    "expected a Go release like 1.19.4, found `{}`",
                    raw.go.get_ref()
                ),
            )
        })?;
        let build_go = self.build_go(raw.build_go, raw.build_go_reason, &scope("build-go"))?;
        let alpine = self.dotted_release(&raw.alpine, &scope("alpine"))?;
        let alpine_digest = self.digest(&raw.alpine_digest, &scope("alpine-digest"))?;
        if raw
            .cri_tools
            .skew_reason
            .as_ref()
            .is_none_or(|r| r.get_ref().trim().is_empty())
        {
            self.check_cri_tools_minor(
                version,
                &raw.cri_tools.version,
                &scope("cri-tools.version"),
            )?;
        }
        let cri_tools = self.pin(Component::CriTools, raw.cri_tools, &scope("cri-tools"))?;
        Ok(Release {
            version,
            kubernetes,
            cri_tools,
            cni_plugins: self.pin(
                Component::CniPlugins,
                raw.cni_plugins,
                &scope("cni-plugins"),
            )?,
            flannel_plugin: self.pin(
                Component::FlannelPlugin,
                raw.flannel_plugin,
                &scope("flannel-plugin"),
            )?,
            go,
            build_go,
            alpine,
            alpine_digest,
            source_date_epoch: commit_date.unix_timestamp(),
        })
    }

    fn build_go(
        &self,
        version: Option<Spanned<String>>,
        reason: Option<Spanned<String>>,
        field: &str,
    ) -> Result<Option<(GoVersion, String)>, ManifestError> {
        match (version, reason) {
            (None, None) => Ok(None),
            (Some(version), Some(reason)) if !reason.get_ref().trim().is_empty() => {
                let go = version.get_ref().parse::<GoVersion>().map_err(|_| {
                    self.error(
                        &version,
                        field,
                        format!(
                            "expected a Go release like 1.19.4, found `{}`",
                            version.get_ref()
                        ),
                    )
                })?;
                Ok(Some((go, reason.into_inner())))
            }
            (Some(version), _) => Err(self.error(
                &version,
                field,
                "add build-go-reason: say why the build differs from upstream's Go".into(),
            )),
            (None, Some(reason)) => {
                Err(self.error(&reason, field, "build-go-reason without build-go".into()))
            }
        }
    }

    fn pin(&self, component: Component, raw: RawPin, scope: &str) -> Result<Pin, ManifestError> {
        let goproxy = match raw.goproxy {
            Some(sub) => Some(self.substitute(sub, &format!("{scope}.goproxy"))?),
            None => None,
        };
        Ok(Pin {
            component,
            module: raw
                .module
                .map_or_else(|| component.module_path().to_owned(), Spanned::into_inner),
            version: self.tag(&raw.version, &format!("{scope}.version"))?,
            commit: self.commit(&raw.commit, &format!("{scope}.commit"))?,
            module_sum: self.module_sum(raw.module_sum.as_ref(), &format!("{scope}.module-sum"))?,
            goproxy,
        })
    }

    fn substitute(
        &self,
        raw: RawSubstitute,
        scope: &str,
    ) -> Result<GoproxySubstitute, ManifestError> {
        if raw.reason.get_ref().trim().is_empty() {
            return Err(self.error(
                &raw.reason,
                &format!("{scope}.reason"),
                "say why the proxy cannot serve the pinned version".into(),
            ));
        }
        Ok(GoproxySubstitute {
            module: raw.module.into_inner(),
            version: self.tag(&raw.version, &format!("{scope}.version"))?,
            subdir: raw.subdir.map(Spanned::into_inner),
            module_sum: self.module_sum(raw.module_sum.as_ref(), &format!("{scope}.module-sum"))?,
            reason: raw.reason.into_inner(),
        })
    }

    /// cri-tools follows the Kubernetes minor it was released with; a skewed crictl is a pin error.
    fn check_cri_tools_minor(
        &self,
        kubernetes: KubeVersion,
        raw: &Spanned<String>,
        field: &str,
    ) -> Result<(), ManifestError> {
        let cri_minor = raw
            .get_ref()
            .split('-')
            .next()
            .and_then(|core| core.parse::<KubeVersion>().ok())
            .map(KubeVersion::minor_line);
        if cri_minor == Some(kubernetes.minor_line()) {
            return Ok(());
        }
        let (major, minor) = kubernetes.minor_line();
        Err(self.error(
            raw,
            field,
            format!(
                "cri-tools {} does not match Kubernetes {major}.{minor}; pin a cri-tools v{major}.{minor}.x release, or explain the skew in skew-reason",
                raw.get_ref()
            ),
        ))
    }

    fn digest(&self, raw: &Spanned<String>, field: &str) -> Result<String, ManifestError> {
        let digest = raw.get_ref();
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(self.error(
                raw,
                field,
                format!("expected sha256:<64 lowercase hex digits>, found `{digest}`"),
            ));
        }
        Ok(digest.clone())
    }

    fn commit(&self, raw: &Spanned<String>, field: &str) -> Result<String, ManifestError> {
        let commit = raw.get_ref();
        let is_sha1 = commit.len() == COMMIT_HEX_LEN
            && commit
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_sha1 {
            return Err(self.error(
                raw,
                field,
                format!("expected a full commit id of 40 lowercase hex digits, found `{commit}`"),
            ));
        }
        Ok(commit.clone())
    }

    fn module_sum(
        &self,
        raw: Option<&Spanned<String>>,
        field: &str,
    ) -> Result<Option<String>, ManifestError> {
        let Some(raw) = raw else { return Ok(None) };
        let sum = raw.get_ref();
        if !sum.starts_with(MODULE_SUM_PREFIX) || sum.len() != MODULE_SUM_LEN {
            return Err(self.error(
                raw,
                field,
                format!("expected a go.sum hash like h1:<44 base64 characters>, found `{sum}`"),
            ));
        }
        Ok(Some(sum.clone()))
    }

    /// Component tags: `v1.1.1`, or with a suffix as flannel's `v1.7.1-flannel2`.
    fn tag(&self, raw: &Spanned<String>, field: &str) -> Result<String, ManifestError> {
        let tag = raw.get_ref();
        let (core, suffix) = tag.split_once('-').unwrap_or((tag, ""));
        let suffix_ok = suffix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.');
        if core.parse::<KubeVersion>().is_err() || !suffix_ok || tag.ends_with('-') {
            return Err(self.error(
                raw,
                field,
                format!("expected a release tag like v1.2.0 or v1.7.1-flannel1, found `{tag}`"),
            ));
        }
        Ok(tag.clone())
    }

    fn dotted_release(&self, raw: &Spanned<String>, field: &str) -> Result<String, ManifestError> {
        let value = raw.get_ref();
        let parts: Vec<&str> = value.split('.').collect();
        let ok = (2..=3).contains(&parts.len())
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(self.error(
                raw,
                field,
                format!("expected an Alpine release like 3.20.3, found `{value}`"),
            ));
        }
        Ok(value.clone())
    }
}

fn line_of(text: &str, byte_offset: usize) -> usize {
    let end = byte_offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// toml's messages name the field in backticks ("missing field `commit`"); pull it out.
fn field_of_toml_error(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map_or_else(|| "(syntax)".to_owned(), str::to_owned)
}
