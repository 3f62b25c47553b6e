//! Making sure a job or service image is on the host, per pull policy.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use super::{is_not_found, DockerError};
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::settings::PullPolicy;

/// Pulls `image` if the policy requires it; fails if it must be present and is not.
pub async fn ensure_image(
    docker: &Docker,
    image: &ImageRef,
    policy: PullPolicy,
    credentials: Option<DockerCredentials>,
    log: &JobLog,
) -> Result<(), DockerError> {
    let name = image.to_string();
    let present = match docker.inspect_image(&name).await {
        Ok(_) => true,
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(DockerError::api(format!("inspect image {image}"))(e)),
    };
    match (policy, present) {
        (PullPolicy::Never, false) => Err(DockerError::ImageMissing { image: name }),
        (PullPolicy::Never | PullPolicy::IfNotPresent, true) => {
            log.info(&format!("Using locally found image {image}"));
            Ok(())
        }
        _ => pull(docker, image, credentials, log).await,
    }
}

async fn pull(
    docker: &Docker,
    image: &ImageRef,
    credentials: Option<DockerCredentials>,
    log: &JobLog,
) -> Result<(), DockerError> {
    log.info(&format!("Pulling image {image} ..."));
    let (repository, tag_or_digest) = image.pull_target();
    let options = CreateImageOptionsBuilder::default()
        .from_image(&repository)
        .tag(&tag_or_digest)
        .build();
    let mut stream = docker.create_image(Some(options), None, credentials);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| DockerError::PullFailed {
            image: image.to_string(),
            message: e.to_string(),
        })?;
        // Per-layer progress would flood the log; the overall lines say what happened.
        if let (None, Some(status)) = (&info.id, &info.status) {
            log.info(status);
        }
    }
    Ok(())
}
