//! Pushing to a registry that fails: 5xx answers are retried with backoff until the push lands,
//! and a refused login fails at once, in one error line that names the registry and the image
//! and never shows the credentials.

mod support;

use std::process::{Command, Output};

use base64::Engine;

fn push_base(registry_prefix: &str, env: &[(&str, &std::path::Path)]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["base", "--minirootfs"])
        .arg(support::minirootfs_dir())
        .args(["--registry", registry_prefix])
        .env("XTASK_CACHE_DIR", cache.path())
        .env("XTASK_RETRY_BASE_MS", "10");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
#[ignore = "end-to-end: needs buildah, skopeo and docker-registry; run with -- --include-ignored (.ci/run installs them)"]
fn server_errors_are_retried_until_the_push_lands() {
    support::require_tools("registry_5xx", &["buildah", "skopeo", "docker-registry"]);
    support::require_minirootfs("registry_5xx");
    let registry = support::Registry::start();
    // Each push attempt pings the registry twice (/v2/, then /v1/_ping) before it gives up.
    let front = support::FlakyFront::start(&registry.address, 3);
    let output = push_base(&format!("{}/ck", front.address), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(front.failures_served(), 3, "{stderr}");
    assert_eq!(
        stderr.matches("retrying alpine:3.20.3").count(),
        2,
        "{stderr}"
    );
    // skopeo, which publishes, words it as containers/image does.
    assert!(stderr.contains("503 (Service Unavailable)"), "{stderr}");
    // The image is really there, read past the flaky front.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/ck/alpine:3.20.3", registry.address))
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let index: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3);
}

#[test]
#[ignore = "end-to-end: needs buildah and docker-registry; run with -- --include-ignored (.ci/run installs them)"]
fn a_refused_login_fails_at_once_without_showing_credentials() {
    support::require_tools("registry_auth", &["buildah", "docker-registry"]);
    support::require_minirootfs("registry_auth");
    const SECRET: &str = "not-the-password-4f1c";
    let registry = support::Registry::start_with_auth(Some(("ci", "right-password")));
    let auth = tempfile::tempdir().unwrap();
    let auth_file = auth.path().join("auth.json");
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ci:{SECRET}"));
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{encoded}"}}}}}}"#,
            registry.address
        ),
    )
    .unwrap();
    let prefix = format!("{}/ck", registry.address);
    let output = push_base(&prefix, &[("REGISTRY_AUTH_FILE", &auth_file)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let errors = support::error_lines(&output);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("refused our credentials"), "{stderr}");
    assert!(
        errors[0].contains(&prefix) && errors[0].contains("alpine:3.20.3"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("retrying"),
        "an auth failure is not retried: {stderr}"
    );
    assert!(
        !stderr.contains(SECRET) && !stderr.contains(&encoded),
        "{stderr}"
    );
}
