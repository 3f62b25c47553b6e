//! Building the release image with the host engine (its layer cache survives between
//! releases, unlike docker-in-docker) and pushing it with the ECR token.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use bollard::query_parameters::{BuildImageOptionsBuilder, PushImageOptionsBuilder};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::context::{write_tar, ContextPlan, ContextStats};
use super::registry::EcrLogin;
use super::ReleaseError;
use crate::joblog::JobLog;

/// How often push progress is summarised in the job log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Builds `plan` as `image_ref` with `labels`; returns the image id and context stats.
pub async fn build(
    docker: &Docker,
    plan: &ContextPlan,
    image_ref: &str,
    labels: &HashMap<String, String>,
    log: &JobLog,
) -> Result<(String, ContextStats), ReleaseError> {
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(&plan.dockerfile_in_tar)
        .t(image_ref)
        .labels(labels)
        .rm(true)
        .forcerm(true)
        .build();
    // The context is produced on a blocking thread and streamed, so a large context costs
    // neither memory nor a delay before the build starts.
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let tar_plan = plan.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write_tar(&tar_plan, writer);
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
        result
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut stream = docker.build_image(options, None, Some(bollard::body_try_stream(body)));

    let mut last_step = String::new();
    let mut image_id = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = &info.stream {
                    if let Some(step) = text.lines().find(|l| l.starts_with("Step ")) {
                        last_step = step.trim().to_string();
                    }
                    log.raw(text.as_bytes());
                }
                if let Some(id) = info.aux.and_then(|aux| aux.id) {
                    image_id = Some(id);
                }
            }
            Err(e) => {
                log.end_raw();
                let stats = producer.await.ok().and_then(Result::err);
                if let Some(context_error) = stats {
                    return Err(ReleaseError::Context(context_error));
                }
                return Err(ReleaseError::BuildFailed {
                    step: last_step,
                    message: stream_message(&e),
                });
            }
        }
    }
    log.end_raw();
    let stats = producer
        .await
        .map_err(|e| ReleaseError::BuildFailed {
            step: last_step.clone(),
            message: format!("the build context producer stopped: {e}"),
        })?
        .map_err(ReleaseError::Context)?;
    let id = image_id.ok_or_else(|| ReleaseError::BuildFailed {
        step: last_step,
        message: "the engine finished without reporting an image id".into(),
    })?;
    Ok((id, stats))
}

const CHUNK: usize = 256 * 1024;

/// Adapts the tar writer to the channel feeding the build request.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the build context",
            )
        })
    }
}

/// Pushes `repo:tag` with the ECR credentials and returns the pushed digest.
pub async fn push(
    docker: &Docker,
    repo: &str,
    tag: &str,
    login: &EcrLogin,
    log: &JobLog,
) -> Result<String, ReleaseError> {
    let options = PushImageOptionsBuilder::default().tag(tag).build();
    let mut stream = docker.push_image(repo, Some(options), Some(login.docker_credentials()));
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
    digest.ok_or_else(|| ReleaseError::PushFailed {
        registry: login.registry.clone(),
        message: "the engine finished the push without reporting a digest".into(),
    })
}

fn push_error(e: &bollard::errors::Error, registry: &str) -> ReleaseError {
    let message = stream_message(e);
    let lower = message.to_ascii_lowercase();
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("denied")
    {
        ReleaseError::RegistryRefused {
            registry: registry.to_string(),
            message,
        }
    } else if lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("i/o timeout")
    {
        ReleaseError::RegistryUnreachable {
            registry: registry.to_string(),
            message,
        }
    } else {
        ReleaseError::PushFailed {
            registry: registry.to_string(),
            message,
        }
    }
}

fn stream_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
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
