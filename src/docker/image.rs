//! Making sure a job, service or helper image is on the host: the job's pull policies,
//! allowed by settings, tried in order as a fallback chain, and a failed pull classed by
//! whose fault it is.

use std::time::Duration;

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::auth::{AuthSource, RegistryAuth};
use super::{is_not_found, DockerError};
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::settings::{DockerSettings, PullPolicy};

/// Who named an image: a missing image is the fault of whoever named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOrigin {
    /// The job (`image:`, `services:`).
    Job,
    /// The runner's settings, under this key.
    Settings(&'static str),
}

/// Why an image could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullFault {
    /// Not on the host, and the policy forbids pulling.
    Absent,
    /// The registry does not have it.
    NotFound,
    /// The registry refused the credentials.
    Denied,
    /// The registry could not be reached.
    Unreachable,
    /// The pull failed otherwise.
    Failed,
}

impl PullFault {
    /// Classifies the engine's message, as gitlab-runner's `ClassifyImagePullFailure` does.
    pub fn classify(message: &str) -> PullFault {
        let m = message.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
        if any(&[
            "dial tcp",
            "connection refused",
            "no such host",
            "i/o timeout",
            "tls handshake",
            "client.timeout exceeded",
            "request canceled",
            "connection reset",
        ]) {
            PullFault::Unreachable
        } else if any(&[
            "pull access denied",
            "access to the resource is denied",
            "no basic auth credentials",
            "repository does not exist or may require",
            "unauthorized",
            "authentication required",
        ]) {
            PullFault::Denied
        } else if any(&["not found", "manifest unknown"]) {
            PullFault::NotFound
        } else {
            PullFault::Failed
        }
    }
}

/// Registry credentials, resolved on the first pull that needs them (credential helpers
/// cost time, and most jobs pull nothing).
pub struct Credentials {
    sources: Vec<AuthSource>,
    resolved: OnceCell<RegistryAuth>,
}

impl Credentials {
    /// Credentials from these sources, in order.
    pub fn new(sources: Vec<AuthSource>) -> Self {
        Credentials {
            sources,
            resolved: OnceCell::new(),
        }
    }

    async fn for_image(
        &self,
        image: &ImageRef,
        log: &JobLog,
    ) -> Option<bollard::auth::DockerCredentials> {
        let auth = self
            .resolved
            .get_or_init(|| async {
                let auth = RegistryAuth::resolve(&self.sources, log).await;
                for secret in auth.secrets() {
                    log.add_secret(&secret);
                }
                auth
            })
            .await;
        let found = auth.for_image(image);
        if let Some(source) = auth.source_for(image) {
            log.info(&format!("Authenticating with credentials from {source}"));
        }
        found
    }
}

/// The policies to try for an image: the job's own (if any) that settings allow, in the
/// job's order, else the settings' own (docker executor's `ComputeEffectivePullPolicies`).
pub fn effective_policies(
    image: &ImageRef,
    job: &[String],
    settings: &DockerSettings,
) -> Result<Vec<PullPolicy>, DockerError> {
    let allowed = settings.allowed_pull_policies();
    let requested: Vec<PullPolicy> = if job.is_empty() {
        settings.pull_policy.clone()
    } else {
        job.iter().filter_map(|p| PullPolicy::parse(p)).collect()
    };
    let effective: Vec<PullPolicy> = requested
        .iter()
        .copied()
        .filter(|p| allowed.contains(p))
        .collect();
    if effective.is_empty() {
        return Err(DockerError::PullPolicyNotAllowed {
            image: image.to_string(),
            requested: if job.is_empty() {
                requested.iter().map(|p| p.as_str().to_string()).collect()
            } else {
                job.to_vec()
            },
            allowed: allowed.iter().map(|p| p.as_str().to_string()).collect(),
        });
    }
    Ok(effective)
}

/// How often a pull that could not reach the registry is tried, and the waits between
/// tries (doubling, at most the second), as the docker executor's pull manager retries.
const PULL_ATTEMPTS: u32 = 3;
const PULL_BACKOFF: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(10));

/// Makes sure `image` is on the host (for `platform`, when the job names one), trying
/// `policies` in order: a failure with one policy falls through to the next, as with the
/// docker executor.
pub async fn ensure_image(
    docker: &Docker,
    image: &ImageRef,
    origin: ImageOrigin,
    policies: &[PullPolicy],
    platform: Option<&str>,
    credentials: &Credentials,
    log: &JobLog,
) -> Result<(), DockerError> {
    let name = image.to_string();
    let mut last = None;
    for (attempt, policy) in policies.iter().enumerate() {
        if attempt > 0 {
            log.info(&format!(
                "Attempt #{}: Trying \"{}\" pull policy",
                attempt + 1,
                policy.as_str()
            ));
        }
        let result = with_policy(docker, image, *policy, platform, credentials, log).await;
        match result {
            Ok(()) => return Ok(()),
            Err((fault, message)) => {
                if policies.len() > 1 {
                    log.warn(&format!(
                        "Failed to pull image with policy \"{}\": {message}",
                        policy.as_str()
                    ));
                }
                last = Some((fault, message));
            }
        }
    }
    let (fault, message) = last.unwrap_or((PullFault::Failed, "no pull policy to try".into()));
    Err(DockerError::ImageUnavailable {
        image: name,
        origin,
        fault,
        policies: policies.iter().map(|p| p.as_str().to_string()).collect(),
        message,
    })
}

async fn with_policy(
    docker: &Docker,
    image: &ImageRef,
    policy: PullPolicy,
    platform: Option<&str>,
    credentials: &Credentials,
    log: &JobLog,
) -> Result<(), (PullFault, String)> {
    let name = image.to_string();
    // An image of another platform than the job asks for is as good as absent.
    let present = match docker.inspect_image(&name).await {
        Ok(found) => platform.is_none_or(|p| is_for_platform(&found, p)),
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err((PullFault::Unreachable, e.to_string())),
    };
    match (policy, present) {
        (PullPolicy::Never, false) => {
            Err((PullFault::Absent, "not on this runner host".to_string()))
        }
        (PullPolicy::Never | PullPolicy::IfNotPresent, true) => {
            log.info(&format!(
                "Using locally found image {name} (pull policy {})",
                policy.as_str()
            ));
            Ok(())
        }
        _ => {
            let mut wait = PULL_BACKOFF.0;
            let mut attempt = 1;
            loop {
                match pull(docker, image, platform, credentials, log).await {
                    Err((PullFault::Unreachable, message)) if attempt < PULL_ATTEMPTS => {
                        log.warn(&format!(
                            "Failed to pull image {name} (attempt #{attempt}), retrying: {message}"
                        ));
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(PULL_BACKOFF.1);
                        attempt += 1;
                    }
                    result => return result,
                }
            }
        }
    }
}

/// Whether an image on the host is the variant for `platform` (`os/arch[/variant]`).
fn is_for_platform(image: &bollard::models::ImageInspect, platform: &str) -> bool {
    let mut parts = platform.split('/');
    let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
    let same = |have: Option<&String>, want: Option<&str>| match want {
        None | Some("") => true,
        Some(w) => have.is_some_and(|h| h.eq_ignore_ascii_case(w)),
    };
    same(image.os.as_ref(), os)
        && same(image.architecture.as_ref(), arch)
        && same(image.variant.as_ref(), variant)
}

async fn pull(
    docker: &Docker,
    image: &ImageRef,
    platform: Option<&str>,
    credentials: &Credentials,
    log: &JobLog,
) -> Result<(), (PullFault, String)> {
    let auth = credentials.for_image(image, log).await;
    match platform {
        Some(platform) => log.info(&format!(
            "Pulling docker image {image} for platform {platform} ..."
        )),
        None => log.info(&format!("Pulling docker image {image} ...")),
    }
    let (repository, tag_or_digest) = image.pull_target();
    let mut options = CreateImageOptionsBuilder::default()
        .from_image(&repository)
        .tag(&tag_or_digest);
    if let Some(platform) = platform {
        options = options.platform(platform);
    }
    let options = options.build();
    let mut stream = docker.create_image(Some(options), None, auth);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| {
            let message = match &e {
                bollard::errors::Error::DockerStreamError { error } => error.trim().to_string(),
                other => other.to_string(),
            };
            (PullFault::classify(&message), message)
        })?;
        // Per-layer progress would flood the log; the overall lines say what happened.
        if let (None, Some(status)) = (&info.id, &info.status) {
            log.info(status);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(policy: &[PullPolicy], allowed: &[PullPolicy]) -> DockerSettings {
        DockerSettings {
            pull_policy: policy.to_vec(),
            allowed_pull_policies: allowed.to_vec(),
            ..DockerSettings::default()
        }
    }

    #[test]
    fn effective_policies_as_the_docker_executor() {
        use PullPolicy::*;
        let img = ImageRef::parse("alpine");
        let job = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // allowed_pull_policies defaults to pull_policy.
        let s = settings(&[Always], &[]);
        assert_eq!(effective_policies(&img, &[], &s).unwrap(), [Always]);
        assert!(effective_policies(&img, &job(&["if-not-present"]), &s).is_err());
        let s = settings(&[IfNotPresent], &[Always, IfNotPresent, Never]);
        assert_eq!(
            effective_policies(&img, &job(&["never", "always"]), &s).unwrap(),
            [Never, Always]
        );
        let s = settings(&[Never], &[Never, IfNotPresent]);
        assert_eq!(
            effective_policies(&img, &job(&["always", "if-not-present"]), &s).unwrap(),
            [IfNotPresent]
        );
    }

    #[test]
    fn pull_failures_are_classified_by_the_engine_message() {
        for (message, fault) in [
            (
                "dial tcp 127.0.0.1:1: connect: connection refused",
                PullFault::Unreachable,
            ),
            (
                "manifest for x:1 not found: manifest unknown",
                PullFault::NotFound,
            ),
            (
                "pull access denied for x, repository does not exist or may require 'docker login'",
                PullFault::Denied,
            ),
            ("unauthorized: authentication required", PullFault::Denied),
            ("invalid reference format", PullFault::Failed),
        ] {
            assert_eq!(PullFault::classify(message), fault, "{message}");
        }
    }
}
