//! Builds whose Dockerfile mounts secrets (`RUN --mount=type=secret,id=NAME`). BuildKit asks
//! the client's session for them, and the engine's `/build` session does not serve secrets:
//! these builds go through the engine's BuildKit solve API (bollard's Moby driver) with the
//! secrets in files of the release's private temp dir (0600, removed after the build). They
//! reach neither a layer nor the log; the build reports no step-by-step progress this way.

use std::path::{Path, PathBuf};

use bollard::grpc::build::{
    ImageBuildFrontendOptions, ImageBuildHostIp, ImageBuildLoadInput, ImageBuildPlatform,
    SecretSource,
};
use bollard::grpc::driver::moby::Moby;
use bollard::grpc::driver::Build;
use bollard::Docker;
use bytes::Bytes;

use super::build::{context_bytes, BuildSpec, ContextSource};
use super::context::ContextStats;
use super::ImageError;
use crate::joblog::JobLog;
use crate::private_file;
use crate::release::inputs::SecretValue;

/// Secret files removed when dropped.
struct SecretFiles(Vec<PathBuf>);

impl Drop for SecretFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn write_secret(dir: &Path, id: &str, value: &SecretValue) -> Result<PathBuf, ImageError> {
    private_file::write(dir, &format!("build-secret-{id}"), value.0.as_bytes()).map_err(|e| {
        ImageError::BuildFailed {
            step: String::new(),
            message: format!("cannot write build secret {id} to the private temp dir: {e}"),
        }
    })
}

/// Builds `source` as `spec` says, with `secrets` mountable by id.
pub async fn build(
    docker: &Docker,
    source: ContextSource,
    spec: &BuildSpec<'_>,
    secrets: &[(String, SecretValue)],
    temp_dir: &Path,
    log: &JobLog,
) -> Result<(String, ContextStats), ImageError> {
    let dockerfile = source.dockerfile_in_tar().to_string();
    let (context, stats) = context_bytes(docker, source).await?;
    let mut files = SecretFiles(Vec::new());
    let mut options = ImageBuildFrontendOptions::builder().dockerfile(Path::new(&dockerfile));
    for (id, value) in secrets {
        let path = write_secret(temp_dir, id, value)?;
        options = options.set_secret(id, &SecretSource::File(path.clone()));
        files.0.push(path);
    }
    for (key, value) in spec.labels {
        options = options.label(key, value);
    }
    for (key, value) in &spec.scoped_args() {
        options = options.buildarg(key, value);
    }
    let (host, address) = spec.owner_host();
    options = options.extrahost(&ImageBuildHostIp { host, ip: address });
    options = options.pull(true);
    if let Some(target) = spec.target {
        options = options.target(target);
    }
    if let Some((os, architecture)) = spec.platform.and_then(|p| p.split_once('/')) {
        options = options.platforms(&ImageBuildPlatform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            variant: None,
        });
    }
    let names: Vec<&str> = secrets.iter().map(|(id, _)| id.as_str()).collect();
    log.info(&format!(
        "Building with BuildKit and the secrets {} (through the engine's BuildKit API: no step-by-step progress)",
        names.join(", ")
    ));
    let tag = spec.local.to_string();
    let registries = spec
        .registries
        .iter()
        .map(|(host, credentials)| (host.as_str(), credentials.clone()))
        .collect();
    Moby::new(docker)
        .docker_build(
            &tag,
            options.build(),
            ImageBuildLoadInput::Upload(Bytes::from(context)),
            Some(registries),
            None,
        )
        .await
        .map_err(|e| ImageError::BuildFailed {
            step: String::new(),
            message: e.to_string(),
        })?;
    drop(files);
    let id = docker
        .inspect_image(&tag)
        .await
        .ok()
        .and_then(|i| i.id)
        .ok_or_else(|| ImageError::BuildFailed {
            step: String::new(),
            message: format!("the build reported success but {tag} is not in the engine"),
        })?;
    Ok((id, stats))
}
