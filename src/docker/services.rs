//! A job's services, as the docker executor runs them: on the job's network under every
//! alias it would give them, waited for on their exposed TCP ports from a probe container,
//! and, if one never answers, a warning with its logs while the job goes on.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::naming::{service_aliases, JobNames};
use super::network::is_user_defined;
use super::DockerError;
use crate::joblog::JobLog;
use crate::settings::DockerSettings;

/// Label holding a service's aliases, for the `CI_DEBUG_SERVICES` log prefix.
const LABEL_ALIASES: &str = "com.gitlab-ecs-executor.aliases";
/// At most this many exposed ports are probed, as in the docker executor.
const MAX_PROBED_PORTS: usize = 20;
/// At most this much of a service's log goes into a warning.
const LOG_LIMIT: usize = 64 * 1024;

/// A service to start next to the job.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Image reference.
    pub image: String,
    /// The job's aliases (`"db,pg"`), added to the derived ones.
    pub alias: String,
    /// Entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Whether it runs privileged.
    pub privileged: bool,
    /// `docker: user:`, expanded.
    pub user: Option<String>,
    /// `docker: platform:`, expanded.
    pub platform: Option<String>,
}

/// Where and how a job's services run.
pub struct ServicePlan<'a> {
    /// Names and labels of the job's objects.
    pub names: &'a JobNames,
    /// The job's network.
    pub network: &'a str,
    /// The volumes every container of the job gets.
    pub binds: &'a [String],
    /// The helper image, for the probe containers.
    pub helper_image: &'a str,
}

/// Creates and starts the services, then waits for them (unless settings say not to).
/// Returns `alias:address` for each alias, for the build container's `/etc/hosts`, as the
/// docker executor emulates links: on a network that is not user-defined (`bridge`) that
/// is the only way the job finds its services by name.
pub async fn start_services(
    docker: &Docker,
    plan: &ServicePlan<'_>,
    services: &[ServiceSpec],
    settings: &DockerSettings,
    log: &JobLog,
) -> Result<Vec<String>, DockerError> {
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut started = Vec::new();
    for (index, service) in services.iter().enumerate() {
        let mut aliases = Vec::new();
        for alias in service_aliases(&service.image, &service.alias) {
            if taken.insert(alias.clone()) {
                aliases.push(alias);
            } else {
                log.warn(&format!(
                    "Skipping alias \"{alias}\" for service \"{}\" (services[{index}]): alias is \
                     already in use by another service.",
                    service.image
                ));
            }
        }
        if aliases.is_empty() {
            log.warn(&format!(
                "Service \"{}\" (services[{index}]) is not started: every alias it would get is \
                 already used by another service; give it an `alias:`",
                service.image
            ));
            continue;
        }
        let name = plan.names.service_container(index);
        log.info(&format!(
            "Starting service {} as {name} (reachable as {})",
            service.image,
            aliases.join(", ")
        ));
        create_service(docker, plan, &name, service, &aliases, settings).await?;
        docker
            .start_container(&name, None)
            .await
            .map_err(DockerError::api(format!("start service container {name}")))?;
        started.push((index, name, aliases));
    }
    let mut links = Vec::new();
    for (_, name, aliases) in &started {
        if let Some(address) = address_of(docker, name, plan.network).await {
            links.extend(aliases.iter().map(|a| format!("{a}:{address}")));
        }
    }
    if let (Some(timeout), false) = (settings.service_wait(), started.is_empty()) {
        log.info(&format!(
            "Waiting for services to be up and running (timeout {} seconds)...",
            timeout.as_secs()
        ));
        let probes = started
            .iter()
            .map(|(index, name, _)| wait_for(docker, plan, *index, name, timeout));
        for (name, problem) in futures_util::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
        {
            warn_unhealthy(docker, &name, &problem, log).await;
        }
    }
    Ok(links)
}

/// A container's address on `network` (Docker names the default bridge `bridge`).
async fn address_of(docker: &Docker, container: &str, network: &str) -> Option<String> {
    let inspect = docker.inspect_container(container, None).await.ok()?;
    inspect_address(&inspect, network)
}

fn inspect_address(
    inspect: &bollard::models::ContainerInspectResponse,
    network: &str,
) -> Option<String> {
    inspect
        .network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .get(network)?
        .ip_address
        .clone()
        .filter(|a| !a.is_empty())
}

async fn create_service(
    docker: &Docker,
    plan: &ServicePlan<'_>,
    name: &str,
    service: &ServiceSpec,
    aliases: &[String],
    settings: &DockerSettings,
) -> Result<(), DockerError> {
    let mut labels = plan.names.labels("service");
    labels.insert(LABEL_ALIASES.to_string(), aliases.join("-"));
    let body = ContainerCreateBody {
        image: Some(service.image.clone()),
        entrypoint: super::container::entrypoint_override(&service.entrypoint, settings),
        cmd: service.command.clone(),
        env: Some(service.env.clone()),
        user: service.user.clone().filter(|u| !u.is_empty()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(plan.binds.to_vec()),
            network_mode: Some(plan.network.to_string()),
            privileged: Some(service.privileged),
            // The operator's cap_add/cap_drop are the job container's, as with the docker
            // executor; NET_RAW goes from services too.
            cap_drop: match service.privileged {
                true => None,
                false => super::container::drop_net_raw(&[], settings),
            },
            nano_cpus: (settings.service_cpus > 0.0)
                .then_some((settings.service_cpus * 1e9) as i64),
            memory: settings.service_memory.bytes(),
            shm_size: (settings.shm_size > 0).then_some(settings.shm_size),
            dns: Some(settings.dns.clone()).filter(|d| !d.is_empty()),
            dns_search: Some(settings.dns_search.clone()).filter(|d| !d.is_empty()),
            extra_hosts: Some(settings.extra_hosts.clone()).filter(|d| !d.is_empty()),
            tmpfs: Some(settings.services_tmpfs.clone().into_iter().collect())
                .filter(|t: &HashMap<String, String>| !t.is_empty()),
            ..Default::default()
        }),
        // Docker takes aliases only on user-defined networks.
        networking_config: is_user_defined(plan.network).then(|| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                plan.network.to_string(),
                EndpointSettings {
                    aliases: Some(aliases.to_vec()),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    let mut options = CreateContainerOptionsBuilder::default().name(name);
    if let Some(platform) = &service.platform {
        options = options.platform(platform);
    }
    docker
        .create_container(Some(options.build()), body)
        .await
        .map(|_| ())
        .map_err(DockerError::api(format!("create service container {name}")))
}

/// Why a service was not found listening.
struct Unhealthy {
    error: String,
    probe_logs: Option<String>,
}

/// Probes a service's ports until one answers; the service's name and what went wrong if
/// none did.
async fn wait_for(
    docker: &Docker,
    plan: &ServicePlan<'_>,
    index: usize,
    name: &str,
    timeout: Duration,
) -> Option<(String, Unhealthy)> {
    let unhealthy =
        |error: String, probe_logs| Some((name.to_string(), Unhealthy { error, probe_logs }));
    let inspect = match docker.inspect_container(name, None).await {
        Ok(i) => i,
        Err(e) => return unhealthy(e.to_string(), None),
    };
    let ports = match probed_ports(&inspect) {
        Ok(p) if p.is_empty() => {
            return unhealthy(format!("service \"{name}\" has no exposed ports"), None)
        }
        Ok(p) => p,
        Err(e) => return unhealthy(e, None),
    };
    let Some(address) = inspect_address(&inspect, plan.network) else {
        return unhealthy(
            format!("service \"{name}\" has no address on the job's network"),
            None,
        );
    };
    let probe = plan.names.probe_container(index);
    let ports_text = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "echo \"waiting for TCP connection to {address} on [{ports_text}]...\"; \
         while :; do for p in {ports_text}; do \
           if (exec 3<>/dev/tcp/{address}/$p) 2>/dev/null; then \
             echo \"dial succeeded on {address}:$p. Exiting...\"; exit 0; fi; \
         done; sleep 1; done"
    );
    let body = ContainerCreateBody {
        image: Some(plan.helper_image.to_string()),
        entrypoint: Some(vec!["bash".into(), "-c".into()]),
        cmd: Some(vec![script]),
        labels: Some(plan.names.labels("probe")),
        host_config: Some(HostConfig {
            network_mode: Some(plan.network.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&probe)
                    .build(),
            ),
            body,
        )
        .await;
    if let Err(e) = created {
        return unhealthy(
            format!("cannot create the probe container {probe}: {e}"),
            None,
        );
    }
    let outcome = async {
        docker
            .start_container(&probe, None)
            .await
            .map_err(|e| e.to_string())?;
        let wait = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        match tokio::time::timeout(timeout, docker.wait_container(&probe, Some(wait)).next()).await
        {
            Err(_) => Err(format!("service \"{probe}\" timeout")),
            Ok(Some(Ok(r))) if r.status_code == 0 => Ok(()),
            Ok(Some(Ok(r))) => Err(format!(
                "service \"{probe}\" health check: exit code {}",
                r.status_code
            )),
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => Err(
                format!("service \"{probe}\" health check: exit code {code}"),
            ),
            Ok(Some(Err(e))) => Err(format!("service \"{probe}\" health check: {e}")),
            Ok(None) => Err(format!(
                "service \"{probe}\" health check: the engine ended the wait without an exit code"
            )),
        }
    }
    .await;
    let result = match outcome {
        Ok(()) => None,
        Err(error) => unhealthy(error, Some(container_logs(docker, &probe).await)),
    };
    let remove = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = docker.remove_container(&probe, Some(remove)).await;
    result
}

/// `HEALTHCHECK_TCP_PORT` from the service's environment alone if set, else its exposed TCP
/// ports, lowest first, at most 20.
fn probed_ports(inspect: &bollard::models::ContainerInspectResponse) -> Result<Vec<u16>, String> {
    let config = inspect.config.clone().unwrap_or_default();
    let chosen = config.env.unwrap_or_default().into_iter().find_map(|kv| {
        let (key, value) = kv.split_once('=')?;
        key.eq_ignore_ascii_case("HEALTHCHECK_TCP_PORT")
            .then(|| value.to_string())
    });
    if let Some(port) = chosen {
        return port
            .trim()
            .parse()
            .map(|p| vec![p])
            .map_err(|_| format!("invalid health check tcp port: {port}"));
    }
    let mut ports: Vec<u16> = config
        .exposed_ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
            (proto == "tcp").then(|| port.parse().ok()).flatten()
        })
        .collect();
    ports.sort_unstable();
    ports.truncate(MAX_PROBED_PORTS);
    Ok(ports)
}

/// The docker executor's warning, with the service's logs.
async fn warn_unhealthy(docker: &Docker, name: &str, problem: &Unhealthy, log: &JobLog) {
    let yellow = "\x1b[0;33m";
    let reset = "\x1b[0;m";
    let mut text = format!(
        "\n{yellow}*** WARNING:{reset} Service {name} probably didn't start properly.\n\n\
         Health check error:\n{}\n\n",
        problem.error.trim()
    );
    if let Some(logs) = &problem.probe_logs {
        text.push_str(&format!("Health check container logs:\n{logs}\n\n"));
    }
    text.push_str(&format!(
        "Service container logs:\n{}\n\n{yellow}*********{reset}\n",
        container_logs(docker, name).await
    ));
    log.info(&text);
}

/// A container's output with timestamps, at most 64 KiB, trimmed.
async fn container_logs(docker: &Docker, name: &str) -> String {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .build();
    let mut stream = docker.logs(name, Some(options));
    let mut text = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => text.extend_from_slice(&chunk.into_bytes()),
            Err(e) => return format!("(cannot read the logs: {e})"),
        }
        if text.len() >= LOG_LIMIT {
            text.truncate(LOG_LIMIT);
            break;
        }
    }
    String::from_utf8_lossy(&text).trim().to_string()
}

/// The job's running services: container id and the aliases they answer to.
async fn running_services(docker: &Docker, names: &JobNames) -> Vec<(String, String)> {
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(false)
        .filters(&names.job_filter())
        .build();
    docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| Some((c.id?, c.labels?.get(LABEL_ALIASES)?.clone())))
        .collect()
}

/// Copies a service's log lines into the job log with the docker executor's
/// `CI_DEBUG_SERVICES` prefix until the stream ends.
async fn copy_logs(
    docker: &Docker,
    id: &str,
    aliases: &str,
    since: i64,
    follow: bool,
    log: &JobLog,
) {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(follow)
        .since(i32::try_from(since).unwrap_or(0))
        .build();
    let mut stream = docker.logs(id, Some(options));
    while let Some(Ok(chunk)) = stream.next().await {
        for line in String::from_utf8_lossy(&chunk.into_bytes()).lines() {
            log.info(&format!("\x1b[0;37m[service:{aliases}] {line}\x1b[0;m"));
        }
    }
}

/// Shows everything the job's services printed so far (`CI_DEBUG_SERVICES`): their
/// start-up, which the docker executor streams from the moment they start.
pub async fn show_service_logs(docker: &Docker, names: &JobNames, log: &JobLog) {
    for (id, aliases) in running_services(docker, names).await {
        copy_logs(docker, &id, &aliases, 0, false, log).await;
    }
}

/// Streams every service's new log lines into the job log, prefixed as the docker
/// executor's `CI_DEBUG_SERVICES` does, until the returned guard is dropped. "New" is by
/// the engine's clock, which need not agree with the runner host's.
pub async fn follow_service_logs(docker: &Docker, names: &JobNames, log: &JobLog) -> LogFollowers {
    let since = super::engine_now(docker).await;
    let tasks = running_services(docker, names)
        .await
        .into_iter()
        .map(|(id, aliases)| {
            let (docker, log) = (docker.clone(), log.clone());
            tokio::spawn(async move { copy_logs(&docker, &id, &aliases, since, true, &log).await })
        })
        .collect();
    LogFollowers(tasks)
}

/// Service log followers; stopped when dropped.
pub struct LogFollowers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for LogFollowers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerInspectResponse};

    fn inspect(env: &[&str], exposed: &[&str]) -> ContainerInspectResponse {
        ContainerInspectResponse {
            config: Some(ContainerConfig {
                env: Some(env.iter().map(|s| s.to_string()).collect()),
                exposed_ports: Some(exposed.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_ports_the_docker_executor_probes() {
        assert_eq!(
            probed_ports(&inspect(&[], &["6379/tcp", "53/udp", "80/tcp"])).unwrap(),
            [80, 6379]
        );
        assert_eq!(
            probed_ports(&inspect(&["healthcheck_tcp_port=5433"], &["5432/tcp"])).unwrap(),
            [5433]
        );
        assert!(probed_ports(&inspect(&["HEALTHCHECK_TCP_PORT=x"], &[])).is_err());
        let many: Vec<String> = (1000..1030).map(|p| format!("{p}/tcp")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(probed_ports(&inspect(&[], &many)).unwrap().len(), 20);
    }
}
