//! The helper image: where git, caches and artifacts are handled, never on the runner host.
//! By default GitLab's own helper image for the runner's version and the engine's
//! architecture; where that cannot be had (an offline host), a locally built one, as the
//! docker executor falls back to its prebuilt archive.

use bollard::Docker;

use super::image::{ensure_image, Credentials, ImageOrigin};
use super::{is_not_found, DockerError};
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::settings::DockerSettings;

/// GitLab's helper image as GitLab publishes it on Docker Hub (the same image it publishes
/// in its own registry; operators who pull from there name it in `docker.helper_image`).
const GITLAB_HELPER: &str = "gitlab/gitlab-runner-helper";

/// The helper image `.ci/images helper` builds from Debian's packages, for hosts that cannot
/// pull GitLab's.
pub const LOCAL_HELPER_IMAGE: &str = "gitlab-ecs-executor/helper:local";

const SETTING: &str = "docker.helper_image";

/// GitLab's helper image for a runner version (`19.4.0`) and an engine architecture
/// (`x86_64`, `aarch64`), tagged as the docker executor tags it.
pub fn default_helper_image(runner_version: Option<&str>, architecture: &str) -> ImageRef {
    let version = runner_version
        .and_then(|v| {
            let numeric: String = v
                .trim_start_matches('v')
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            (numeric.split('.').filter(|p| !p.is_empty()).count() >= 3).then(|| {
                format!(
                    "v{}",
                    numeric.split('.').take(3).collect::<Vec<_>>().join(".")
                )
            })
        })
        .unwrap_or_else(|| "latest".to_string());
    let arch = match architecture {
        "x86_64" | "amd64" | "" => "x86_64",
        "aarch64" | "arm64" => "arm64",
        "armv6l" | "armv7l" | "arm" => "arm",
        other => other,
    };
    ImageRef::parse(&format!("{GITLAB_HELPER}:{arch}-{version}"))
}

/// Makes sure the helper image is on the host; returns it.
pub async fn ensure_helper(
    docker: &Docker,
    settings: &DockerSettings,
    runner_version: Option<&str>,
    credentials: &Credentials,
    log: &JobLog,
) -> Result<ImageRef, DockerError> {
    let origin = ImageOrigin::Settings(SETTING);
    if !settings.helper_image.trim().is_empty() {
        let image = ImageRef::parse(settings.helper_image.trim());
        ensure_image(
            docker,
            &image,
            origin,
            &settings.pull_policy,
            credentials,
            log,
        )
        .await?;
        return Ok(image);
    }
    let architecture = docker
        .info()
        .await
        .ok()
        .and_then(|i| i.architecture)
        .unwrap_or_default();
    let gitlab = default_helper_image(runner_version, &architecture);
    if image_present(docker, &gitlab.to_string()).await? {
        return Ok(gitlab);
    }
    if image_present(docker, LOCAL_HELPER_IMAGE).await? {
        log.info(&format!(
            "Using the helper image {LOCAL_HELPER_IMAGE} built on this host ({gitlab} is not here)"
        ));
        return Ok(ImageRef::parse(LOCAL_HELPER_IMAGE));
    }
    ensure_image(
        docker,
        &gitlab,
        origin,
        &settings.pull_policy,
        credentials,
        log,
    )
    .await?;
    Ok(gitlab)
}

/// An image already on the host that operator commands can create (never start) containers
/// of to read volumes, without pulling: `docker.helper_image`, else the local helper, else
/// `docker.default_image`.
pub async fn image_on_host(
    docker: &Docker,
    settings: &DockerSettings,
) -> Result<Option<String>, DockerError> {
    for candidate in [
        settings.helper_image.trim(),
        LOCAL_HELPER_IMAGE,
        settings.default_image.trim(),
    ] {
        if !candidate.is_empty() && image_present(docker, candidate).await? {
            return Ok(Some(candidate.to_string()));
        }
    }
    Ok(None)
}

/// Whether `image` is on the host (no pull).
pub async fn image_present(docker: &Docker, image: &str) -> Result<bool, DockerError> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(DockerError::api(format!("inspect image {image}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_helper_tags() {
        assert_eq!(
            default_helper_image(Some("19.4.0"), "x86_64").to_string(),
            format!("{GITLAB_HELPER}:x86_64-v19.4.0")
        );
        assert_eq!(
            default_helper_image(Some("19.4.0~pre.123.g1234"), "aarch64").tag(),
            Some("arm64-v19.4.0")
        );
        assert_eq!(
            default_helper_image(None, "x86_64").tag(),
            Some("x86_64-latest")
        );
        assert_eq!(
            default_helper_image(Some("dev"), "armv7l").tag(),
            Some("arm-latest")
        );
    }
}
