//! The release image: found in the registry (release tags are immutable, so it is neither
//! rebuilt nor overwritten), or built from the project with the host engine and pushed with
//! the ECR token.

mod base_platform;
mod build;
mod buildkit_progress;
pub mod context;
mod error;
pub(crate) mod frontend;
mod push;
pub(crate) mod registry;
mod secrets;
pub(crate) mod volume_context;

use std::collections::HashMap;
use std::time::Instant;

use bollard::auth::DockerCredentials;
use bollard::Docker;

use super::platform::Platform;
use super::request::{ProjectSource, Provenance, ReleaseRequest};
use crate::clock;
use crate::docker::auth::RegistryAuth;
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::settings::Settings;
use build::ContextSource;
pub use error::ImageError;

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
    /// The digest in the registry; `None` in a dry run.
    pub fn registry_digest(&self) -> Option<&str> {
        match self {
            ImageOutcome::Existing { digest } | ImageOutcome::Pushed { digest } => Some(digest),
            ImageOutcome::BuiltOnly { .. } => None,
        }
    }

    /// The registry digest, or what stands in for it in a dry run.
    pub fn digest(&self) -> String {
        match self {
            ImageOutcome::Existing { digest } | ImageOutcome::Pushed { digest } => digest.clone(),
            ImageOutcome::BuiltOnly { id } => format!("(not pushed: {id})"),
        }
    }
}

/// Makes sure the release image is in the registry (unless `req.dry_run`), for
/// `platform` when the task definition names one.
pub(crate) async fn release_image(
    docker: &Docker,
    req: &ReleaseRequest,
    config: &aws_config::SdkConfig,
    platform: Option<&Platform>,
    settings: &Settings,
    log: &JobLog,
) -> Result<ImageOutcome, ImageError> {
    let image = &req.inputs.image;
    let _section = log.section("release_image", &format!("Release: image {image}"));
    let ecr = aws_sdk_ecr::Client::new(config);
    let policy = registry::TokenPolicy {
        region: &req.inputs.region,
        configured: &settings.aws.ecr_token_registries,
    };
    let login = registry::ecr_login(&ecr, image.registry(), policy).await?;
    log.add_secret(login.secret());
    if let Some(found) = registry::existing(docker, image, &login).await? {
        check_platform(image, &found, platform)?;
        log.info(&format!(
            "{image} is already in the registry as {}: not rebuilt, not pushed (release tags are immutable)",
            found.digest
        ));
        return Ok(ImageOutcome::Existing {
            digest: found.digest,
        });
    }
    let build_inputs = &req.inputs.build;
    for (_, value) in build_inputs.args.iter().chain(&build_inputs.secrets) {
        log.add_secret(&value.0);
    }
    let (inputs, source) = (&req.inputs, &req.source);
    let (source, dockerfile) = match source {
        ProjectSource::Directory { build, .. } => {
            let plan = context::plan(build, &inputs.build_context, &inputs.dockerfile)?;
            log.info(&format!(
                "Building {image} from {} (Dockerfile {})",
                plan.root.display(),
                plan.dockerfile.display()
            ));
            let text = std::fs::read(&plan.dockerfile).unwrap_or_default();
            (ContextSource::Host(plan), text)
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
            let text = crate::docker::archive::read(docker, container, &plan.dockerfile)
                .await?
                .unwrap_or_default();
            (ContextSource::Volume(plan), text)
        }
    };
    frontend::check(
        &String::from_utf8_lossy(&dockerfile),
        &settings.release.dockerfile_frontends,
    )?;
    // The build's `RUN` steps run on the engine's default bridge: the host rules keep them
    // from the metadata addresses, whichever adapter asked for the release.
    if !settings.docker.jobs_may_reach_host {
        crate::docker::guard_host().await?;
    }
    let build_started = Instant::now();
    let labels = oci_labels(&req.provenance, req.inputs.tag());
    let build_args = build_inputs
        .args
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    let platform_name = platform.map(Platform::to_string);
    let registries = build_registries(req, &login, log).await;
    if let Some(platform) = platform {
        base_platform::check(
            docker,
            &String::from_utf8_lossy(&dockerfile),
            platform,
            &registries,
        )
        .await?;
    }
    let spec = build::BuildSpec {
        local: &ImageRef::parse(&format!("{}:{}", req.build.local_name, req.inputs.tag())),
        owner: &req.build.owner,
        registries: &registries,
        labels: &labels,
        build_args: &build_args,
        target: build_inputs.target.as_deref(),
        platform: platform_name.as_deref(),
        builder: build::builder(docker, log).await,
    };
    if let Some(platform) = &platform_name {
        log.info(&format!(
            "Building for {platform}, the task definition's platform"
        ));
    }
    let (id, stats) = if build_inputs.secrets.is_empty() {
        build::build(docker, source, &spec, log).await?
    } else {
        secrets::build(
            docker,
            source,
            &spec,
            &build_inputs.secrets,
            &req.temp_dir,
            log,
        )
        .await?
    };
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
    tag(docker, spec.local, image).await?;
    let digest = push::push(docker, image, &login, log).await?;
    log.info(&format!(
        "Pushed {image} as {digest} in {:.1} s",
        push_started.elapsed().as_secs_f64()
    ));
    Ok(ImageOutcome::Pushed { digest })
}

/// The credentials a build's base images are pulled with: the owner's own registry
/// credentials, and the ECR token for the release's registry.
async fn build_registries(
    req: &ReleaseRequest,
    login: &registry::EcrLogin,
    log: &JobLog,
) -> HashMap<String, DockerCredentials> {
    let auth = RegistryAuth::resolve(&req.build.registry_auth, log).await;
    for secret in auth.secrets() {
        log.add_secret(&secret);
    }
    let mut registries = auth.by_host();
    registries.insert(login.registry.clone(), login.docker_credentials());
    registries
}

/// Gives the build the registry's name, for the push alone.
async fn tag(docker: &Docker, local: &ImageRef, image: &ImageRef) -> Result<(), ImageError> {
    let options = bollard::query_parameters::TagImageOptionsBuilder::default()
        .repo(&image.repository())
        .tag(image.tag().unwrap_or("latest"))
        .build();
    docker
        .tag_image(&local.to_string(), Some(options))
        .await
        .map_err(|e| ImageError::PushFailed {
            registry: image.registry().to_string(),
            message: format!("cannot name the built image {image}: {e}"),
        })
}

/// Removes the names the engine holds a release's build under — its own and the registry's
/// it was given for the push (`pushed`; when a cleanup finds a killed release's build, any
/// name of the image with the release's tag) — so no later job on the host finds the image
/// without asking the registry. The build cache stays. Returns what went wrong.
pub async fn forget(docker: &Docker, local_name: &str, pushed: Option<&ImageRef>) -> Vec<String> {
    let mut problems = Vec::new();
    let filters = HashMap::from([("reference".to_string(), vec![format!("{local_name}:*")])]);
    let options = bollard::query_parameters::ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let images = match docker.list_images(Some(options)).await {
        Ok(images) => images,
        Err(e) => return vec![format!("list the images of {local_name}: {e}")],
    };
    let pushed = pushed.map(ImageRef::to_string);
    for image in images {
        // The listing shows only the names that match the filter; the image has them all.
        let names = match docker.inspect_image(&image.id).await {
            Ok(inspected) => inspected.repo_tags.unwrap_or_default(),
            Err(e) if crate::docker::is_not_found(&e) => continue,
            Err(e) => {
                problems.push(format!("inspect the image of {local_name}: {e}"));
                continue;
            }
        };
        let prefix = format!("{local_name}:");
        let tags: Vec<String> = names
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix))
            .map(|tag| format!(":{tag}"))
            .collect();
        let ours = |name: &String| {
            name.starts_with(&prefix)
                || match &pushed {
                    Some(pushed) => pushed == name,
                    None => tags.iter().any(|tag| name.ends_with(tag.as_str())),
                }
        };
        for name in names.into_iter().filter(ours) {
            let options = bollard::query_parameters::RemoveImageOptionsBuilder::default()
                .noprune(true)
                .build();
            match docker.remove_image(&name, Some(options), None).await {
                Ok(_) => {}
                Err(e) if crate::docker::is_not_found(&e) => {}
                Err(e) => problems.push(format!("remove the image name {name}: {e}")),
            }
        }
    }
    problems
}

/// Refuses an image in the registry that does not run on the task definition's platform.
fn check_platform(
    image: &ImageRef,
    found: &registry::Existing,
    platform: Option<&Platform>,
) -> Result<(), ImageError> {
    let Some(platform) = platform else {
        return Ok(());
    };
    match platform.missing_from(&found.platforms) {
        None => Ok(()),
        Some(has) => Err(ImageError::WrongPlatform {
            image: image.to_string(),
            has,
            wants: platform.to_string(),
        }),
    }
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
