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

/// Phrases registries and their clients use for a refused identity. Matched as phrases, never
/// as bare numbers: "401" also occurs in digests, ports and addresses.
const AUTH_PHRASES: [&str; 5] = [
    "unauthorized",
    "authentication required",
    "requested access to the resource is denied",
    "denied: ",
    "incorrect username or password",
];
/// Network faults worth another try.
const TRANSIENT_PHRASES: [&str; 8] = [
    "too many requests",
    "connection reset",
    "connection refused",
    "i/o timeout",
    "tls handshake timeout",
    "unexpected eof",
    ": eof",
    "no route to host",
];
/// HTTP statuses that say who we are was refused, and those a later try can get past.
const AUTH_STATUSES: [u16; 2] = [401, 403];
const TRANSIENT_STATUSES: [u16; 5] = [429, 500, 502, 503, 504];
/// The words after which registry clients print an HTTP status code.
const STATUS_MARKERS: [&str; 4] = [
    "status code from registry ",
    "status code ",
    "status: ",
    "status ",
];

/// Classifies a push's error output. Pure, so each message shape has a test.
pub fn classify(stderr: &str) -> Failure {
    let text = stderr.to_ascii_lowercase();
    let statuses = http_statuses(&text);
    if statuses.iter().any(|s| AUTH_STATUSES.contains(s))
        || AUTH_PHRASES.iter().any(|phrase| text.contains(phrase))
    {
        Failure::Auth
    } else if statuses.iter().any(|s| TRANSIENT_STATUSES.contains(s))
        || TRANSIENT_PHRASES.iter().any(|phrase| text.contains(phrase))
    {
        Failure::Transient
    } else {
        Failure::Permanent
    }
}

/// The HTTP status codes a message reports: a three-digit number right after one of the
/// `STATUS_MARKERS`, or followed by its standard reason phrase ("503 Service Unavailable").
pub fn http_statuses(text: &str) -> Vec<u16> {
    let text = text.to_ascii_lowercase();
    let mut found = Vec::new();
    for marker in STATUS_MARKERS {
        for (at, _) in text.match_indices(marker) {
            if let Some(code) = leading_status(&text[at + marker.len()..]) {
                found.push(code);
            }
        }
    }
    for (code, reason) in REASONS {
        // "503 Service Unavailable", or "503 (Service Unavailable)" as containers/image says.
        for phrase in [format!("{code} {reason}"), format!("{code} ({reason})")] {
            let standalone = text.match_indices(&phrase).any(|(at, _)| {
                !text[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
            });
            if standalone {
                found.push(code);
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Reason phrases of the statuses a registry push can meet (RFC 9110, RFC 6585).
pub const REASONS: [(u16, &str); 8] = [
    (401, "unauthorized"),
    (403, "forbidden"),
    (429, "too many requests"),
    (500, "internal server error"),
    (502, "bad gateway"),
    (503, "service unavailable"),
    (504, "gateway timeout"),
    (404, "not found"),
];

/// A status code at the start of `rest`: exactly three digits, not part of a longer number.
fn leading_status(rest: &str) -> Option<u16> {
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (digits.len() == 3).then(|| digits.parse().ok()).flatten()
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
                "registry {registry} refused our credentials for {image} ({last_line}); log in with `skopeo login {registry}` (a `buildah login` or `docker login` works too) or check the token's push rights"
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
        assert_eq!(
            classify("Ping http://127.0.0.1:5002/v2/ status 503"),
            Failure::Transient
        );
        assert_eq!(
            classify("received unexpected HTTP status: 401 Unauthorized"),
            Failure::Auth
        );
        assert_eq!(classify("status code 429"), Failure::Transient);
        // What skopeo printed here for a registry behind a front answering 503.
        assert_eq!(
            classify("pinging container registry 127.0.0.1:39391: invalid status code from registry 503 (Service Unavailable)"),
            Failure::Transient
        );
        assert_eq!(
            classify("invalid status code from registry 401 (Unauthorized)"),
            Failure::Auth
        );
    }

    #[test]
    fn numbers_in_digests_ports_and_addresses_are_not_statuses() {
        // Each of these contains "401" or "403" outside any HTTP status.
        assert_eq!(
            classify("dial tcp 127.0.0.1:4013: connect: connection refused"),
            Failure::Transient
        );
        assert_eq!(
            classify("manifest unknown: sha256:9401c2e1f0a4031b0c"),
            Failure::Permanent
        );
        assert_eq!(
            classify("reading blob sha256:04012: 4010 bytes short"),
            Failure::Permanent
        );
        assert_eq!(http_statuses("port 54013 status 5031"), Vec::<u16>::new());
        // A local file's permission error is not the registry refusing us.
        assert_eq!(
            classify("open /root/.config/containers/auth.json: permission denied"),
            Failure::Permanent
        );
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
        assert!(error.contains("skopeo login ghcr.io/me"), "{error}");
    }
}
