//! Creating a job's network, service containers and long-lived job container.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointSettings, HealthStatusEnum, HostConfig,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

use super::exec::{run_script, Cancel, ScriptShell};
use super::naming::{service_aliases, JobNames};
use super::{remove_job_objects, DockerError};
use crate::joblog::JobLog;

/// PID 1 of the job container: idles until the container is removed. A loop rather than a
/// single `sleep`, so that killing every process of a cancelled script (`kill -1`) cannot
/// stop the container that `after_script` still needs.
const KEEPER: [&str; 3] = ["sh", "-c", "while :; do sleep 3600; done"];
/// How long a service may take to become healthy before the job starts anyway.
const SERVICE_HEALTH_WAIT: Duration = Duration::from_secs(60);

/// A service container to start next to the job container.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Image reference.
    pub image: String,
    /// Network aliases; empty: derived from the image name like the docker executor.
    pub alias: String,
    /// Entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
}

/// Everything needed to start one job's environment.
#[derive(Debug, Clone)]
pub struct JobEnvironmentSpec {
    /// Names and labels of the job's objects.
    pub names: JobNames,
    /// Job image.
    pub image: String,
    /// Entrypoint override from the job's `image:`.
    pub entrypoint: Option<Vec<String>>,
    /// Host binds (`/host:/container[:mode]`).
    pub binds: Vec<String>,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Services.
    pub services: Vec<ServiceSpec>,
}

/// Starts the network, the services and the job container; on any failure removes what
/// it created, so a failed prepare leaves nothing behind even if cleanup never comes.
pub async fn start_job_environment(
    docker: &Docker,
    spec: &JobEnvironmentSpec,
    log: &JobLog,
) -> Result<(), DockerError> {
    // Leftovers of an earlier attempt of this same job would collide by name.
    remove_job_objects(docker, &spec.names).await;
    let result = start_all(docker, spec, log).await;
    if result.is_err() {
        remove_job_objects(docker, &spec.names).await;
    }
    result
}

async fn start_all(
    docker: &Docker,
    spec: &JobEnvironmentSpec,
    log: &JobLog,
) -> Result<(), DockerError> {
    // A job without services needs no network of its own: the default bridge is enough, and
    // creating and removing a network costs more than the rest of a small job.
    let network = if spec.services.is_empty() {
        None
    } else {
        let name = spec.names.network();
        docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                labels: Some(spec.names.labels("network")),
                ..Default::default()
            })
            .await
            .map_err(DockerError::api(format!("create network {name}")))?;
        Some(name)
    };

    for (index, service) in spec.services.iter().enumerate() {
        let name = spec.names.service_container(index);
        let aliases = service_aliases(&service.image, &service.alias);
        log.info(&format!(
            "Starting service {} as {} (reachable as {})",
            service.image,
            name,
            aliases.join(", ")
        ));
        let body = ContainerCreateBody {
            image: Some(service.image.clone()),
            entrypoint: service.entrypoint.clone(),
            cmd: service.command.clone(),
            env: Some(service.env.clone()),
            labels: Some(spec.names.labels("service")),
            host_config: Some(HostConfig {
                network_mode: network.clone(),
                ..Default::default()
            }),
            networking_config: network.as_ref().map(|network| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings {
                        aliases: Some(aliases),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        create_and_start(docker, &name, body).await?;
    }

    let job = spec.names.job_container();
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: Some(KEEPER.iter().map(|s| s.to_string()).collect()),
        labels: Some(spec.names.labels("job")),
        host_config: Some(HostConfig {
            binds: Some(spec.binds.clone()),
            network_mode: network.clone(),
            nano_cpus: spec.nano_cpus,
            memory: spec.memory,
            ..Default::default()
        }),
        ..Default::default()
    };
    create_and_start(docker, &job, body).await?;

    for index in 0..spec.services.len() {
        let name = spec.names.service_container(index);
        wait_for_service(
            docker,
            &name,
            &format!("service {}", spec.services[index].image),
            log,
        )
        .await?;
    }
    probe(docker, &job).await
}

/// Runs `exit 0` in the job container: proves the container is still up (an entrypoint that
/// does not run its arguments has exited by now) and that the image has a shell.
async fn probe(docker: &Docker, job: &str) -> Result<(), DockerError> {
    let quiet = JobLog::new(Box::new(std::io::sink()), Vec::<String>::new());
    let never: Cancel = Box::pin(std::future::pending());
    let result = run_script(
        docker,
        job,
        ScriptShell::Sh,
        b"exit 0\n".to_vec(),
        Duration::from_secs(1),
        &quiet,
        never,
    )
    .await;
    match result {
        Ok(exit) if exit.code == 0 => Ok(()),
        other => {
            ensure_running(docker, job, "job").await?;
            Err(DockerError::ContainerDied {
                role: "job".into(),
                name: job.to_string(),
                detail: match other {
                    Ok(exit) => format!(
                        "`sh` exits {} in the image: a job image needs a shell",
                        exit.code
                    ),
                    Err(e) => e.to_string(),
                },
            })
        }
    }
}

async fn create_and_start(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<(), DockerError> {
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    docker
        .create_container(Some(options), body)
        .await
        .map_err(DockerError::api(format!("create container {name}")))?;
    docker
        .start_container(name, None)
        .await
        .map_err(DockerError::api(format!("start container {name}")))
}

/// Waits until a service is healthy (if its image defines a health check) or at least
/// running; a service that never gets healthy is a warning, as in the docker executor.
async fn wait_for_service(
    docker: &Docker,
    name: &str,
    role: &str,
    log: &JobLog,
) -> Result<(), DockerError> {
    let deadline = tokio::time::Instant::now() + SERVICE_HEALTH_WAIT;
    loop {
        let state = ensure_running(docker, name, role).await?;
        match state.health.and_then(|h| h.status) {
            None | Some(HealthStatusEnum::HEALTHY) | Some(HealthStatusEnum::NONE) => return Ok(()),
            Some(_) if tokio::time::Instant::now() >= deadline => {
                log.warn(&format!(
                    "{role} is not healthy after {} s; the job starts anyway",
                    SERVICE_HEALTH_WAIT.as_secs()
                ));
                return Ok(());
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The container's state if it is running (or about to); otherwise why it stopped.
async fn ensure_running(
    docker: &Docker,
    name: &str,
    role: &str,
) -> Result<bollard::models::ContainerState, DockerError> {
    let state = docker
        .inspect_container(name, None)
        .await
        .map_err(DockerError::api(format!("inspect container {name}")))?
        .state
        .unwrap_or_default();
    if matches!(
        state.status,
        Some(ContainerStateStatusEnum::RUNNING) | Some(ContainerStateStatusEnum::CREATED)
    ) {
        return Ok(state);
    }
    let exit_code = state.exit_code.unwrap_or_default();
    let tail = last_log_lines(docker, name).await;
    Err(DockerError::ContainerDied {
        role: role.to_string(),
        name: name.to_string(),
        detail: if tail.is_empty() {
            format!("exit code {exit_code}")
        } else {
            format!("exit code {exit_code}, last output: {tail}")
        },
    })
}

async fn last_log_lines(docker: &Docker, name: &str) -> String {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail("5")
        .build();
    let mut stream = docker.logs(name, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
