//! Pushing the release image with the ECR token, with progress in the job log.

use std::time::{Duration, Instant};

use bollard::query_parameters::PushImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use super::registry::EcrLogin;
use super::stream_message;
use super::ImageError;
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;

/// How often push progress is summarised in the job log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Pushes `image` (its tag, never every tag) with the ECR credentials; returns the digest.
pub async fn push(
    docker: &Docker,
    image: &ImageRef,
    login: &EcrLogin,
    log: &JobLog,
) -> Result<String, ImageError> {
    let options = PushImageOptionsBuilder::default()
        .tag(image.tag().unwrap_or("latest"))
        .build();
    let mut stream = docker.push_image(
        &image.repository(),
        Some(options),
        Some(login.docker_credentials()),
    );
    let mut progress = PushProgress::default();
    let mut last_report = Instant::now();
    let mut digest = None;
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| push_error(&e, &login.registry))?;
        let Some(status) = info.status.as_deref() else {
            continue;
        };
        if let Some(line) = progress.observe(status, info.progress_detail.and_then(|p| p.current)) {
            log.info(&line);
        }
        if let Some(d) = parse_digest(status) {
            digest = Some(d);
        }
        if last_report.elapsed() >= PROGRESS_EVERY && !progress.done() {
            log.info(&progress.summary());
            last_report = Instant::now();
        }
    }
    digest.ok_or_else(|| ImageError::PushFailed {
        registry: login.registry.clone(),
        message: "the engine finished the push without reporting a digest".into(),
    })
}

fn push_error(e: &bollard::errors::Error, registry: &str) -> ImageError {
    let message = stream_message(e);
    let lower = message.to_ascii_lowercase();
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("denied")
    {
        ImageError::RegistryRefused {
            registry: registry.to_string(),
            message,
        }
    } else if lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("i/o timeout")
    {
        ImageError::RegistryUnreachable {
            registry: registry.to_string(),
            message,
        }
    } else {
        ImageError::PushFailed {
            registry: registry.to_string(),
            message,
        }
    }
}

/// `v1.2.3: digest: sha256:… size: 528` → `sha256:…`.
fn parse_digest(status: &str) -> Option<String> {
    let rest = status.split("digest: ").nth(1)?;
    let digest = rest.split_whitespace().next()?;
    digest.starts_with("sha256:").then(|| digest.to_string())
}

/// Layer counts from the engine's push events, which carry no layer ids in this API model:
/// one `Preparing` per layer, then `Pushed` or `Layer already exists`.
#[derive(Debug, Default)]
struct PushProgress {
    layers: usize,
    pushed: usize,
    existing: usize,
    bytes_in_flight: i64,
}

impl PushProgress {
    fn observe(&mut self, status: &str, current: Option<i64>) -> Option<String> {
        match status {
            "Preparing" => self.layers += 1,
            "Pushing" => self.bytes_in_flight = self.bytes_in_flight.max(current.unwrap_or(0)),
            "Pushed" => {
                self.pushed += 1;
                return Some(format!(
                    "layer pushed ({}/{})",
                    self.finished(),
                    self.layers
                ));
            }
            "Layer already exists" => {
                self.existing += 1;
                return Some(format!(
                    "layer already in the registry ({}/{})",
                    self.finished(),
                    self.layers
                ));
            }
            _ => {}
        }
        None
    }

    fn finished(&self) -> usize {
        self.pushed + self.existing
    }

    fn done(&self) -> bool {
        self.layers > 0 && self.finished() == self.layers
    }

    fn summary(&self) -> String {
        format!(
            "pushing: {}/{} layers done, {:.1} MB of the current layer sent",
            self.finished(),
            self.layers,
            self.bytes_in_flight as f64 / 1e6
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_lines() {
        assert_eq!(
            parse_digest("v1.2.3: digest: sha256:abcd size: 528").as_deref(),
            Some("sha256:abcd")
        );
        assert_eq!(parse_digest("Pushed"), None);
    }

    #[test]
    fn progress_counts_layers() {
        let mut p = PushProgress::default();
        for s in ["Preparing", "Preparing", "Waiting"] {
            assert_eq!(p.observe(s, None), None);
        }
        assert_eq!(
            p.observe("Layer already exists", None).as_deref(),
            Some("layer already in the registry (1/2)")
        );
        p.observe("Pushing", Some(2_000_000));
        assert!(!p.done());
        assert!(p.summary().contains("1/2 layers done, 2.0 MB"));
        assert_eq!(
            p.observe("Pushed", None).as_deref(),
            Some("layer pushed (2/2)")
        );
        assert!(p.done());
    }
}
