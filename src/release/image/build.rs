//! Building the release image with the host engine — BuildKit where the engine has it —
//! so its build cache survives between releases, unlike docker-in-docker.

use std::collections::HashMap;
use std::io::{self, Write};

use bollard::auth::DockerCredentials;
use bollard::models::BuildInfoAux;
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::buildkit_progress::BuildKitProgress;
use super::context::{write_tar, ContextError, ContextPlan, ContextStats, OUTSIDE_DOCKERFILE};
use super::stream_message;
use super::volume_context::{self, StreamReader, VolumePlan};
use super::ImageError;
use crate::clock;
use crate::docker::fnv1a;
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;

/// Where the build context comes from.
pub enum ContextSource {
    /// A directory on this host (the operator's `release`).
    Host(ContextPlan),
    /// A job's project volume.
    Volume(VolumePlan),
}

impl ContextSource {
    /// The Dockerfile's path inside the context tar.
    pub(super) fn dockerfile_in_tar(&self) -> &str {
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

/// Which of the engine's builders a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    /// BuildKit (the engine's default since Docker 23): `RUN --mount`, labels without steps,
    /// a build cache of its own.
    BuildKit,
    /// The legacy builder, for engines without BuildKit.
    Legacy,
}

/// The engine's BuildKit came with API 1.39 (Docker 18.09).
const BUILDKIT_API: (u32, u32) = (1, 39);

/// BuildKit when the engine has it, else the legacy builder (saying so once).
pub async fn builder(docker: &Docker, log: &JobLog) -> Builder {
    let version = docker.version().await.ok();
    let api = version
        .as_ref()
        .and_then(|v| v.api_version.as_deref())
        .and_then(|v| {
            let (major, minor) = v.split_once('.')?;
            Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
        });
    let linux = version
        .as_ref()
        .and_then(|v| v.os.as_deref())
        .is_none_or(|os| os == "linux");
    if api.is_some_and(|api| api >= BUILDKIT_API) && linux {
        Builder::BuildKit
    } else {
        log.warn("the Docker engine has no BuildKit (API 1.39, Linux): building with the legacy builder, which refuses BuildKit-only Dockerfile syntax such as RUN --mount");
        Builder::Legacy
    }
}

/// What to build and how.
pub struct BuildSpec<'a> {
    /// The engine's name for the build: the owner's own, no registry's.
    pub local: &'a ImageRef,
    /// Whose build cache the build uses (`project-42`).
    pub owner: &'a str,
    /// Credentials for the base images, by registry host.
    pub registries: &'a HashMap<String, DockerCredentials>,
    /// OCI labels.
    pub labels: &'a HashMap<String, String>,
    /// `--build-arg`s.
    pub build_args: &'a HashMap<String, String>,
    /// The stage to build (`--target`).
    pub target: Option<&'a str>,
    /// The platform (`linux/arm64`), else the engine's own.
    pub platform: Option<&'a str>,
    /// The builder.
    pub builder: Builder,
}

impl BuildSpec<'_> {
    /// The build arguments with the owner's namespace for `RUN --mount=type=cache` (the
    /// Dockerfile frontend prefixes every cache id with it, `ONBUILD` steps' too).
    pub(super) fn scoped_args(&self) -> HashMap<String, String> {
        let mut args = self.build_args.clone();
        args.insert(
            "BUILDKIT_CACHE_MOUNT_NS".into(),
            format!("gitlab-ecs-executor/{}", self.owner),
        );
        args
    }

    /// An `/etc/hosts` entry of every `RUN` step, named for the owner: BuildKit keys a step's
    /// cache by the names of its extra hosts, so no owner's step ever reuses another's
    /// result (one made with that owner's secrets, say).
    pub(super) fn owner_host(&self) -> (String, std::net::IpAddr) {
        (
            format!("gitlab-ecs-executor-cache-{:016x}", fnv1a(self.owner)),
            std::net::Ipv4Addr::LOCALHOST.into(),
        )
    }
}

/// Builds `source` as `spec` says; returns the image id and context stats.
pub async fn build(
    docker: &Docker,
    source: ContextSource,
    spec: &BuildSpec<'_>,
    log: &JobLog,
) -> Result<(String, ContextStats), ImageError> {
    let tag = spec.local.to_string();
    let (host, address) = spec.owner_host();
    let mut options = BuildImageOptionsBuilder::default()
        .dockerfile(source.dockerfile_in_tar())
        .t(&tag)
        .labels(spec.labels)
        .buildargs(&spec.scoped_args())
        .extrahosts(&format!("{host}:{address}"))
        // Base images are resolved with the registry, with the owner's credentials, never
        // taken from what another project pulled onto the host.
        .pull("1")
        .rm(true)
        .forcerm(true);
    if let Some(target) = spec.target {
        options = options.target(target);
    }
    if let Some(platform) = spec.platform {
        options = options.platform(platform);
    }
    let session = format!(
        "gitlab-ecs-executor-{}-{}",
        std::process::id(),
        clock::epoch_secs()
    );
    match spec.builder {
        Builder::BuildKit => {
            options = options
                .version(BuilderVersion::BuilderBuildKit)
                .session(&session);
        }
        // The legacy builder's cache knows no owners: it builds every step afresh.
        Builder::Legacy => options = options.nocache(true),
    }
    // The context is produced on a blocking thread and streamed, so a large context costs
    // neither memory nor a delay before the build starts.
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let writer = ChannelWriter {
        tx,
        buf: Vec::with_capacity(CHUNK),
    };
    let producer = source.produce(docker, writer);
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut stream = docker.build_image(
        options.build(),
        Some(spec.registries.clone()),
        Some(bollard::body_try_stream(body)),
    );

    let mut last_step = String::new();
    let mut progress = BuildKitProgress::default();
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
                match info.aux {
                    Some(BuildInfoAux::Default(image)) => image_id = image.id.or(image_id),
                    Some(BuildInfoAux::BuildKit(status)) => {
                        for line in progress.lines(&status) {
                            log.info(&line);
                        }
                    }
                    None => {}
                }
            }
            Err(e) => {
                log.end_raw();
                let stats = producer.await.ok().and_then(Result::err);
                if let Some(context_error) = stats {
                    return Err(ImageError::Context(context_error));
                }
                let step = progress
                    .failed_step()
                    .map(str::to_string)
                    .unwrap_or(last_step);
                return Err(ImageError::BuildFailed {
                    step,
                    message: build_message(&e, spec.platform),
                });
            }
        }
    }
    log.end_raw();
    let stats = producer
        .await
        .map_err(|e| ImageError::BuildFailed {
            step: last_step.clone(),
            message: format!("the build context producer stopped: {e}"),
        })?
        .map_err(ImageError::Context)?;
    let id = match image_id {
        Some(id) => id,
        // BuildKit's moby exporter names the image; its id is the tag's.
        None => docker
            .inspect_image(&tag)
            .await
            .ok()
            .and_then(|i| i.id)
            .ok_or_else(|| ImageError::BuildFailed {
                step: last_step,
                message: "the engine finished without reporting an image".into(),
            })?,
    };
    Ok((id, stats))
}

/// The engine's message, with what to do when a foreign platform cannot run here.
fn build_message(e: &bollard::errors::Error, platform: Option<&str>) -> String {
    let message = stream_message(e);
    match platform {
        Some(platform) if message.contains("load metadata") => format!(
            "{message}. The base image has no {platform} variant on this host and its registry \
             cannot be reached for one: pull the {platform} variant onto the runner host, or \
             check the task definition's runtimePlatform"
        ),
        Some(platform) if message.contains("exec format error") => format!(
            "{message}. The engine cannot run {platform} programs: enable emulation on the \
             runner host (binfmt_misc with QEMU, e.g. the qemu-user-static package) or build on a \
             {platform} runner"
        ),
        _ => message,
    }
}

/// The whole context tar in memory, for builders that take it in one piece.
pub(super) async fn context_bytes(
    docker: &Docker,
    source: ContextSource,
) -> Result<(Vec<u8>, ContextStats), ImageError> {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let writer = ChannelWriter {
        tx,
        buf: Vec::with_capacity(CHUNK),
    };
    let producer = source.produce(docker, writer);
    let mut bytes = Vec::new();
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(e) => {
                return Err(ImageError::BuildFailed {
                    step: String::new(),
                    message: format!("reading the build context: {e}"),
                })
            }
        }
    }
    let stats = producer
        .await
        .map_err(|e| ImageError::BuildFailed {
            step: String::new(),
            message: format!("the build context producer stopped: {e}"),
        })?
        .map_err(ImageError::Context)?;
    Ok((bytes, stats))
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
