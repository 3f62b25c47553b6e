//! Building the release image with the host engine: its layer cache survives between
//! releases, unlike docker-in-docker.

use std::collections::HashMap;
use std::io::{self, Write};

use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::context::{write_tar, ContextError, ContextPlan, ContextStats, OUTSIDE_DOCKERFILE};
use super::stream_message;
use super::volume_context::{self, StreamReader, VolumePlan};
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::release::ReleaseError;

/// Where the build context comes from.
pub enum ContextSource {
    /// A directory on this host (the operator's `release`).
    Host(ContextPlan),
    /// A job's project volume.
    Volume(VolumePlan),
}

impl ContextSource {
    fn dockerfile_in_tar(&self) -> &str {
        match self {
            ContextSource::Host(plan) => &plan.dockerfile_in_tar,
            ContextSource::Volume(plan) => &plan.dockerfile_in_tar,
        }
    }

    /// Writes the context tar to `out` on a blocking thread.
    fn produce(
        self,
        docker: &Docker,
        out: ChannelWriter,
    ) -> tokio::task::JoinHandle<Result<ContextStats, ContextError>> {
        match self {
            ContextSource::Host(plan) => tokio::task::spawn_blocking(move || write_tar(&plan, out)),
            ContextSource::Volume(plan) => {
                let context = StreamReader::spawn(docker, &plan.container, &plan.context);
                let dockerfile = (plan.dockerfile_in_tar == OUTSIDE_DOCKERFILE)
                    .then(|| StreamReader::spawn(docker, &plan.container, &plan.dockerfile));
                tokio::task::spawn_blocking(move || {
                    volume_context::write_tar(&plan.rules, context, dockerfile, out)
                })
            }
        }
    }
}

/// Builds `source` as `image` with `labels`; returns the image id and context stats.
pub async fn build(
    docker: &Docker,
    source: ContextSource,
    image: &ImageRef,
    labels: &HashMap<String, String>,
    log: &JobLog,
) -> Result<(String, ContextStats), ReleaseError> {
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(source.dockerfile_in_tar())
        .t(&image.to_string())
        .labels(labels)
        .rm(true)
        .forcerm(true)
        .build();
    // The context is produced on a blocking thread and streamed, so a large context costs
    // neither memory nor a delay before the build starts.
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let writer = ChannelWriter {
        tx,
        buf: Vec::with_capacity(CHUNK),
    };
    let producer = source.produce(docker, writer);
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
