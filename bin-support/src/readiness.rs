//! Waiting for a pod's credentials and trust bundles at start-up, the same
//! way in every binary: with `--wait-for-credentials 0` a binary refuses to
//! start on unusable files and says which and why; otherwise it waits up to
//! the given time, saying that it waits.

use std::time::Duration;

use podtls::PodTls;

/// Why the material did not become usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// Not waiting (`--wait-for-credentials 0`) and something is not usable.
    #[error(
        "credentials or trust bundles are not usable (use --wait-for-credentials to wait for them):\n  {}",
        .problems.join("\n  ")
    )]
    Unusable {
        /// One line per store that is not ready: its last error, or
        /// `<store>: not loaded`.
        problems: Vec<String>,
    },
    /// Waited, and it did not become usable in time.
    #[error(transparent)]
    TimedOut(#[from] podtls::Error),
}

/// One line per store of `pod` that is not ready: its last error, or
/// `<store>: not loaded` when it has none yet.
pub fn problems(pod: &PodTls) -> Vec<String> {
    pod.statuses()
        .iter()
        .filter(|s| !s.is_ready())
        .map(|s| match &s.last_error {
            Some(e) => e.to_string(),
            None => format!("{}: not loaded", s.name),
        })
        .collect()
}

/// Returns once `pod` is ready: at once if it is; with `wait` zero, an
/// error listing what is not usable; otherwise after waiting up to `wait`
/// (logged at info).
///
/// # Errors
/// [`NotReady::Unusable`] (not waiting) or [`NotReady::TimedOut`].
pub async fn wait_until_ready(pod: &PodTls, wait: Duration) -> Result<(), NotReady> {
    if pod.is_ready() {
        return Ok(());
    }
    if wait.is_zero() {
        return Err(NotReady::Unusable {
            problems: problems(pod),
        });
    }
    tracing::info!(?wait, "waiting for credentials and trust bundles");
    pod.ready(wait).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn not_waiting_names_every_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let pod = PodTls::builder()
            .credential_bundle(dir.path().join("creds.pem"))
            .roots(dir.path().join("roots.pem"))
            .start()
            .unwrap();
        let err = wait_until_ready(&pod, Duration::ZERO).await.unwrap_err();
        let NotReady::Unusable { problems } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        let text = err.to_string();
        for file in ["creds.pem", "roots.pem"] {
            assert!(text.contains(file), "{file} missing from {text}");
        }
        assert!(text.contains("--wait-for-credentials"), "{text}");
    }

    #[tokio::test]
    async fn waiting_times_out_with_podtls_error() {
        let dir = tempfile::tempdir().unwrap();
        let pod = PodTls::builder()
            .credential_bundle(dir.path().join("creds.pem"))
            .start()
            .unwrap();
        let err = wait_until_ready(&pod, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, NotReady::TimedOut(_)), "{err:?}");
    }
}
