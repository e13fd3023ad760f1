//! Pushing to a registry: retry what a retry can fix (5xx answers, resets, refused or timed-out
//! connections) with backoff, give up at once on what it cannot (authentication), and name the
//! registry and the image either way. Credentials never reach a command line or a message.

use std::time::Duration;

use anyhow::{bail, Result};

/// Attempts in all, the first included.
pub const ATTEMPTS: u32 = 5;
/// The first wait; each later one doubles. `XTASK_RETRY_BASE_MS` shortens it in tests.
const BASE_DELAY: Duration = Duration::from_secs(2);
const BASE_DELAY_ENV: &str = "XTASK_RETRY_BASE_MS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The registry refused who we are: retrying cannot help.
    Auth,
    /// A server error or a network fault: worth another try.
    Transient,
    /// Anything else (a bad reference, a missing image): not retried.
    Permanent,
}

/// Classifies a push's error output. Pure, so each message shape has a test.
pub fn classify(stderr: &str) -> Failure {
    let text = stderr.to_ascii_lowercase();
    const AUTH: [&str; 5] = [
        "unauthorized",
        "authentication required",
        "denied",
        "401",
        "403 forbidden",
    ];
    const TRANSIENT: [&str; 11] = [
        "500 internal server error",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway timeout",
        "connection reset",
        "connection refused",
        "i/o timeout",
        "tls handshake timeout",
        "unexpected eof",
        ": eof",
        "too many requests",
    ];
    if AUTH.iter().any(|needle| text.contains(needle)) {
        Failure::Auth
    } else if TRANSIENT.iter().any(|needle| text.contains(needle)) {
        Failure::Transient
    } else {
        Failure::Permanent
    }
}

fn delay(attempt: u32) -> Duration {
    let base = std::env::var(BASE_DELAY_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(BASE_DELAY, Duration::from_millis);
    base * 2u32.pow(attempt.saturating_sub(1))
}

/// Runs `push` until it succeeds, fails for good, or runs out of attempts. `push` returns the
/// command's error output on failure.
pub fn push_with_retry(
    registry: &str,
    image: &str,
    mut push: impl FnMut() -> Result<(), String>,
) -> Result<()> {
    for attempt in 1..=ATTEMPTS {
        let stderr = match push() {
            Ok(()) => return Ok(()),
            Err(stderr) => stderr,
        };
        let last_line = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error output")
            .trim();
        match classify(&stderr) {
            Failure::Auth => bail!(
                "registry {registry} refused our credentials for {image} ({last_line}); log in with `buildah login {registry}` (or `docker login` for buildx) or check the token's push rights"
            ),
            Failure::Permanent => bail!("cannot push {image} to {registry}: {last_line}"),
            Failure::Transient if attempt == ATTEMPTS => bail!(
                "registry {registry} kept failing for {image} after {ATTEMPTS} attempts ({last_line}); check that it is up and reachable"
            ),
            Failure::Transient => {
                let wait = delay(attempt);
                eprintln!("    {registry} failed ({last_line}); retrying {image} in {} ms", wait.as_millis());
                std::thread::sleep(wait);
            }
        }
    }
    unreachable!("the last attempt returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_registry_answers() {
        assert_eq!(
            classify(
                "Error: writing blob: received unexpected HTTP status: 503 Service Unavailable"
            ),
            Failure::Transient
        );
        assert_eq!(classify("pinging container registry 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused"), Failure::Transient);
        assert_eq!(
            classify("read: connection reset by peer"),
            Failure::Transient
        );
        assert_eq!(
            classify("Error: unauthorized: authentication required"),
            Failure::Auth
        );
        assert_eq!(
            classify("requested access to the resource is denied"),
            Failure::Auth
        );
        assert_eq!(classify("invalid reference format"), Failure::Permanent);
    }

    #[test]
    fn retries_transient_failures_then_names_registry_and_image() {
        std::env::set_var(BASE_DELAY_ENV, "1");
        let mut calls = 0;
        let error = push_with_retry("127.0.0.1:1", "kubelet:v1", || {
            calls += 1;
            Err("dial tcp: connection refused".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(calls, ATTEMPTS);
        assert!(
            error.contains("127.0.0.1:1") && error.contains("kubelet:v1"),
            "{error}"
        );

        let mut calls = 0;
        push_with_retry("r", "i", || {
            calls += 1;
            if calls < 3 {
                Err("502 Bad Gateway".to_owned())
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(calls, 3);
    }

    #[test]
    fn gives_up_at_once_on_authentication() {
        let mut calls = 0;
        let error = push_with_retry("ghcr.io/me", "kubelet:v1", || {
            calls += 1;
            Err("Error: unauthorized: authentication required".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(calls, 1);
        assert!(error.contains("buildah login ghcr.io/me"), "{error}");
    }
}
