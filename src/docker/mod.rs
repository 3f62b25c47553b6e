//! The Docker job environment, as GitLab's docker executor builds it: per job a helper
//! container (git, caches, artifacts) and a build container (the job's image), each started
//! once per stage with the stage's script on stdin; services on a per-job network; the
//! project's builds and cache volumes, kept between jobs and mounted only into that
//! project's containers. Driven through bollard.

pub(crate) mod archive;
pub(crate) mod auth;
mod cleanup;
mod container;
mod helper_image;
mod image;
mod naming;
mod network;
mod services;
mod stage;
pub(crate) mod volumes;

pub use auth::AuthSource;
pub use cleanup::{remove_job_objects, sweep_orphans, CleanupReport};
pub use container::{
    create_build_container, create_helper_container, helper_shell, BuildOptions, ContainerSpec,
    DETECT_SHELL, STAGE_MARKER,
};
pub use helper_image::{
    default_helper_image, ensure_helper, image_on_host, image_present, LOCAL_HELPER_IMAGE,
};
pub use image::{effective_policies, ensure_image, Credentials, ImageOrigin, PullFault};
pub(crate) use naming::fnv1a;
pub use naming::{
    service_aliases, JobNames, ProjectVolumes, LABEL_JOB, LABEL_MANAGED, LABEL_RUNNER,
};
pub use network::{create_job_network, guard_host};
pub use services::{
    follow_service_logs, show_service_logs, start_services, LogFollowers, ServicePlan, ServiceSpec,
};
pub use stage::{run_stage, Cancel, StageExit};

use std::time::Duration;

use bollard::Docker;

use crate::settings::DockerSettings;

/// Names of a list, each in backticks: `always`, `never`.
fn listed(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Something went wrong in the Docker job environment.

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached at all.
    #[error(
        "cannot reach the Docker engine at {host}: {message}. Check that the daemon runs \
         (`systemctl status docker`), that this user may use its socket, and `docker.host` \
         in the executor settings"
    )]
    Unreachable {
        /// The address tried.
        host: String,
        /// The client's error.
        message: String,
    },
    /// An image could not be had with any of its pull policies.
    #[error("{}", image_unavailable(.image, *.origin, *.fault, .policies, .message))]
    ImageUnavailable {
        /// Image reference.
        image: String,
        /// Who named it.
        origin: ImageOrigin,
        /// What went wrong, by the last policy tried.
        fault: PullFault,
        /// The policies tried.
        policies: Vec<String>,
        /// The engine's message.
        message: String,
    },
    /// The job asked for pull policies the operator does not allow.
    #[error(
        "invalid pull policy for image {image}: pull_policy {} is not one of the \
         allowed_pull_policies {}; change `pull_policy` in .gitlab-ci.yml or ask the runner's \
         operator",
        listed(.requested),
        listed(.allowed)
    )]
    PullPolicyNotAllowed {
        /// The image.
        image: String,
        /// What was asked for.
        requested: Vec<String>,
        /// What settings allow.
        allowed: Vec<String>,
    },
    /// Settings' `docker.allowed_images` does not include the image.
    #[error(
        "image {image} is not allowed on this runner (docker.allowed_images: {}); use an \
         allowed image or ask the runner's operator",
        listed(.allowed)
    )]
    ImageNotAllowed {
        /// The image.
        image: String,
        /// The patterns allowed.
        allowed: Vec<String>,
    },
    /// Settings' `docker.allowed_services` does not include the service.
    #[error(
        "service {image} is not allowed on this runner (docker.allowed_services: {}); use an \
         allowed service or ask the runner's operator",
        listed(.allowed)
    )]
    ServiceNotAllowed {
        /// The image.
        image: String,
        /// The patterns allowed.
        allowed: Vec<String>,
    },
    /// The job asks for more services than `docker.services_limit`.
    #[error(
        "too many services requested: {requested}, only {limit} allowed (docker.services_limit)"
    )]
    TooManyServices {
        /// How many the job asked for.
        requested: usize,
        /// The limit.
        limit: i64,
    },
    /// The job asks to run as a user settings do not allow.
    #[error("user `{user}` is not an allowed user: {} (docker.allowed_users)", listed(.allowed))]
    UserNotAllowed {
        /// The user.
        user: String,
        /// The allowed users.
        allowed: Vec<String>,
    },
    /// A `docker.security_opt` entry cannot be used.
    #[error("docker.security_opt `{option}`: {message}")]
    SecurityOpt {
        /// The entry.
        option: String,
        /// Why.
        message: String,
    },
    /// The host rules that keep job networks from the host and the metadata addresses
    /// could not be installed.
    #[error(
        "cannot install the host firewall rule that keeps jobs from the runner host and the \
         instance metadata address (`iptables {rule}`): {message}. Run gitlab-ecs-executor as \
         root, as gitlab-runner runs it, with iptables installed; or, on a runner that serves a \
         single project, set docker.jobs_may_reach_host = true"
    )]
    HostRules {
        /// The rule.
        rule: String,
        /// Why it failed.
        message: String,
    },
    /// A project volume could not be created or used.
    #[error("cannot {action} volume {name}: {source}")]
    Volume {
        /// What we tried.
        action: &'static str,
        /// The volume.
        name: String,
        /// The engine's error.
        source: bollard::errors::Error,
    },
    /// The image's entrypoint ended the stage without running the script.
    #[error(
        "the entrypoint of image {image} did not run the job's script (it exited {exit_code}). \
         An image whose entrypoint does not run its arguments needs `entrypoint: [\"\"]` in \
         .gitlab-ci.yml"
    )]
    EntrypointSkippedScript {
        /// The image.
        image: String,
        /// The container's exit code.
        exit_code: i64,
    },
    /// A stage's container does not exist.
    #[error(
        "the container {name} does not exist: it was removed after prepare (a cleanup or a \
         daemon restart); retry the job"
    )]
    ContainerMissing {
        /// Container name.
        name: String,
    },
    /// The stream of a running script broke off while the script went on.
    #[error(
        "lost the connection to the Docker engine while the script ran in {name} (did the \
         engine restart?); its result is unknown and cleanup removes the container. Retry the job"
    )]
    ConnectionLost {
        /// Container name.
        name: String,
    },
    /// Any other engine call failed.
    #[error("Docker engine call `{action}` failed: {source}")]
    Api {
        /// What we were doing.
        action: String,
        /// The client's error.
        source: bollard::errors::Error,
    },
}

fn image_unavailable(
    image: &str,
    origin: ImageOrigin,
    fault: PullFault,
    policies: &[String],
    message: &str,
) -> String {
    let what = match fault {
        PullFault::Absent => {
            format!("image {image} is not on this runner host and the pull policy is `never`")
        }
        PullFault::NotFound => format!("image {image} was not found in its registry"),
        PullFault::Denied => format!("the registry refused access to image {image}"),
        PullFault::Unreachable => format!("the registry of image {image} cannot be reached"),
        PullFault::Failed => format!("image {image} could not be pulled"),
    };
    let fix = match (origin, fault) {
        (_, PullFault::Unreachable) => {
            "check the runner host's network and the registry's address".to_string()
        }
        (ImageOrigin::Job, PullFault::Absent) => {
            "load it on the runner host, or let the job pull it (`pull_policy`)".to_string()
        }
        (ImageOrigin::Job, PullFault::Denied) => {
            "check the image name and the job's credentials (DOCKER_AUTH_CONFIG)".to_string()
        }
        (ImageOrigin::Job, _) => "check the image name in .gitlab-ci.yml".to_string(),
        (ImageOrigin::Settings(key), _) => {
            format!("check `{key}` in the executor settings and that the image is on the host")
        }
    };
    // The engine's own words add nothing to "absent" (it was never asked).
    let detail = match fault {
        PullFault::Absent => String::new(),
        _ => format!(
            ": {}",
            message.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    };
    format!(
        "{what} (pull policies tried: {}){detail}. {}",
        policies.join(", "),
        capitalize(&fix)
    )
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl DockerError {
    pub(crate) fn api(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Self {
        let action = action.into();
        move |source| DockerError::Api { action, source }
    }
}

/// Whether an engine error means "no such object".
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Like [`connect`], but keeps trying for `patience` (an engine restarting, a busy socket):
/// for cleanup, which must not leave a job's containers behind over a blip.
pub async fn connect_patiently(
    settings: &DockerSettings,
    patience: Duration,
) -> Result<Docker, DockerError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match connect(settings).await {
            Ok(docker) => return Ok(docker),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Connects to the engine named in settings (else `DOCKER_HOST`, else the local socket) and
/// checks that it answers.
pub async fn connect(settings: &DockerSettings) -> Result<Docker, DockerError> {
    let host = if settings.host.is_empty() {
        // An empty DOCKER_HOST means the default socket, as for the docker CLI.
        std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
    } else {
        settings.host.clone()
    };
    let unreachable = |message: String| DockerError::Unreachable {
        host: host.clone(),
        message,
    };
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(&host, 120, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(unreachable(
            "only unix:// and tcp:// addresses are supported".into(),
        ));
    }
    .map_err(|e| unreachable(e.to_string()))?;
    // Image pulls, builds and pushes stream for minutes; the client timeout only bounds the
    // wait for response headers, but a slow registry can take long even for those.
    let docker = docker.with_timeout(Duration::from_secs(3600));
    tokio::time::timeout(Duration::from_secs(10), docker.ping())
        .await
        .map_err(|_| unreachable("no answer within 10 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(docker)
}

/// The engine's time now (epoch seconds), by the engine's own clock, which need not agree
/// with the runner host's (a remote engine); the host's when the engine does not say.
pub async fn engine_now(docker: &Docker) -> i64 {
    match docker.info().await.ok().and_then(|i| i.system_time) {
        Some(time) => crate::clock::parse_rfc3339(&time).unwrap_or_else(crate::clock::epoch_secs),
        None => crate::clock::epoch_secs(),
    }
}
