//! Making sure a job or service image is on the host, per pull policy.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use super::{is_not_found, DockerError};
use crate::joblog::JobLog;
use crate::settings::PullPolicy;

/// Pulls `image` if the policy requires it; fails if it must be present and is not.
pub async fn ensure_image(
    docker: &Docker,
    image: &str,
    policy: PullPolicy,
    credentials: Option<DockerCredentials>,
    log: &JobLog,
) -> Result<(), DockerError> {
    let present = match docker.inspect_image(image).await {
        Ok(_) => true,
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(DockerError::api(format!("inspect image {image}"))(e)),
    };
    match (policy, present) {
        (PullPolicy::Never, false) => Err(DockerError::ImageMissing {
            image: image.to_string(),
        }),
        (PullPolicy::Never | PullPolicy::IfNotPresent, true) => {
            log.info(&format!("Using locally found image {image}"));
            Ok(())
        }
        _ => pull(docker, image, credentials, log).await,
    }
}

async fn pull(
    docker: &Docker,
    image: &str,
    credentials: Option<DockerCredentials>,
    log: &JobLog,
) -> Result<(), DockerError> {
    log.info(&format!("Pulling image {image} ..."));
    let (from_image, tag) = split_reference(image);
    let mut options = CreateImageOptionsBuilder::default().from_image(from_image);
    // Without a tag the engine pulls every tag of the repository.
    if let Some(tag) = tag {
        options = options.tag(tag);
    }
    let mut stream = docker.create_image(Some(options.build()), None, credentials);
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

/// Splits `repo:tag` for the pull API; digests stay in the repository part, and an
/// untagged reference means `latest`, as with `docker pull`.
fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => (
            &image[..last_slash + colon],
            Some(&image[last_slash + colon + 1..]),
        ),
        None => (image, Some("latest")),
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references() {
        assert_eq!(split_reference("alpine"), ("alpine", Some("latest")));
        assert_eq!(split_reference("alpine:3.20"), ("alpine", Some("3.20")));
        assert_eq!(
            split_reference("127.0.0.1:5000/g/app:v1"),
            ("127.0.0.1:5000/g/app", Some("v1"))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", Some("latest"))
        );
        assert_eq!(split_reference("app@sha256:ab"), ("app@sha256:ab", None));
    }
}
