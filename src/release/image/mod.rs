//! The release image: found in the registry (release tags are immutable, so it is neither
//! rebuilt nor overwritten), or built from the project with the host engine and pushed with
//! the ECR token.

mod build;
pub mod context;
mod push;
pub mod registry;
pub mod volume_context;

use std::collections::HashMap;
use std::time::Instant;

use bollard::Docker;

use super::request::{ProjectSource, Provenance, ReleaseRequest};
use super::ReleaseError;
use crate::clock;
use crate::joblog::JobLog;
use build::ContextSource;

/// What became of the release image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageOutcome {
    /// The tag was in the registry already.
    Existing {
        /// Its digest.
        digest: String,
    },
    /// Built and pushed now.
    Pushed {
        /// The pushed digest.
        digest: String,
    },
    /// Built, not pushed: a dry run.
    BuiltOnly {
        /// The local image id.
        id: String,
    },
}

impl ImageOutcome {
    /// The registry digest, or what stands in for it in a dry run.
    pub fn digest(&self) -> String {
        match self {
            ImageOutcome::Existing { digest } | ImageOutcome::Pushed { digest } => digest.clone(),
            ImageOutcome::BuiltOnly { id } => format!("(not pushed: {id})"),
        }
    }
}

/// Makes sure the release image is in the registry (unless `req.dry_run`).
pub(crate) async fn release_image(
    docker: &Docker,
    req: &ReleaseRequest,
    config: &aws_config::SdkConfig,
    log: &JobLog,
) -> Result<ImageOutcome, ReleaseError> {
    let image = &req.inputs.image;
    let _section = log.section("release_image", &format!("Release: image {image}"));
    let ecr = aws_sdk_ecr::Client::new(config);
    let login = registry::ecr_login(&ecr, image.registry()).await?;
    log.add_secret(login.secret());
    if let Some(digest) = registry::existing_digest(docker, image, &login).await? {
        log.info(&format!(
            "{image} is already in the registry as {digest}: not rebuilt, not pushed (release tags are immutable)"
        ));
        return Ok(ImageOutcome::Existing { digest });
    }
    let (inputs, source) = (&req.inputs, &req.source);
    let source = match source {
        ProjectSource::Directory(dir) => {
            let plan = context::plan(dir, &inputs.build_context, &inputs.dockerfile)?;
            log.info(&format!(
                "Building {image} from {} (Dockerfile {})",
                plan.root.display(),
                plan.dockerfile.display()
            ));
            ContextSource::Host(plan)
        }
        ProjectSource::Volume {
            container,
            project_dir,
        } => {
            let plan = volume_context::plan(
                docker,
                container,
                project_dir,
                &inputs.build_context,
                &inputs.dockerfile,
            )
            .await?;
            log.info(&format!(
                "Building {image} from {} in the project's volume (Dockerfile {})",
                plan.context, plan.dockerfile
            ));
            ContextSource::Volume(plan)
        }
    };
    let build_started = Instant::now();
    let labels = oci_labels(&req.provenance, req.inputs.tag());
    let (id, stats) = build::build(docker, source, image, &labels, log).await?;
    log.info(&format!(
        "Built {id} in {:.1} s (context: {} files, {:.1} MB, {} ignored)",
        build_started.elapsed().as_secs_f64(),
        stats.files,
        stats.bytes as f64 / 1e6,
        stats.ignored
    ));
    if req.dry_run {
        log.info(&format!("Dry run: {image} was built but not pushed"));
        return Ok(ImageOutcome::BuiltOnly { id });
    }
    let push_started = Instant::now();
    let digest = push::push(docker, image, &login, log).await?;
    log.info(&format!(
        "Pushed {image} as {digest} in {:.1} s",
        push_started.elapsed().as_secs_f64()
    ));
    Ok(ImageOutcome::Pushed { digest })
}

/// OCI annotations tying the image to its source.
fn oci_labels(provenance: &Provenance, tag: &str) -> HashMap<String, String> {
    // The commit's time rather than the build's: the engine applies labels as sorted build
    // steps, so a label that changes on every build would rebuild every label after it and
    // keep re-releases of one commit from reusing the cache.
    let created = Some(provenance.commit_time.clone())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(clock::rfc3339_now);
    let mut labels = HashMap::from([
        (
            "org.opencontainers.image.version".to_string(),
            tag.to_string(),
        ),
        ("org.opencontainers.image.created".to_string(), created),
    ]);
    for (key, value) in [
        ("org.opencontainers.image.revision", &provenance.commit_sha),
        ("org.opencontainers.image.source", &provenance.project_url),
    ] {
        if !value.is_empty() {
            labels.insert(key.to_string(), value.clone());
        }
    }
    labels
}

fn stream_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}
