//! Creating a job's helper and build containers (created in `prepare`, started once per
//! stage by [`super::run_stage`]), with the host configuration settings give them.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HostConfig, NetworkingConfig,
    ResourcesUlimits,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use bollard::Docker;

use super::network::is_user_defined;
use super::DockerError;
use crate::settings::{parse_device, parse_ulimit, DockerSettings};

/// The file in `builds_dir` where a user stage records that the container's command ran:
/// an entrypoint that does not run its arguments leaves it untouched. The builds volume is
/// writable by any user, unlike an image's own directories.
pub const STAGE_MARKER: &str = ".gitlab-ecs-executor-stage";

/// The first shell an image has, bash preferred, as gitlab-runner's `BashDetectShellScript`
/// picks it; it then reads the stage script on stdin.
pub const DETECT_SHELL: &str = "if [ -x /usr/local/bin/bash ]; then exec /usr/local/bin/bash; \
elif [ -x /usr/bin/bash ]; then exec /usr/bin/bash; \
elif [ -x /bin/bash ]; then exec /bin/bash; \
elif [ -x /usr/local/bin/sh ]; then exec /usr/local/bin/sh; \
elif [ -x /usr/bin/sh ]; then exec /usr/bin/sh; \
elif [ -x /bin/sh ]; then exec /bin/sh; \
elif [ -x /busybox/sh ]; then exec /busybox/sh; \
else echo shell not found; exit 1; fi";

/// One container of a job, before it is created.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// `KEY=value` environment: the job's variables.
    pub env: Vec<String>,
    /// The project's volumes and the settings' volumes.
    pub binds: Vec<String>,
    /// Host name.
    pub hostname: String,
    /// The job's network, if it has one.
    pub network: Option<String>,
    /// `alias:address` of the job's services, for `/etc/hosts`.
    pub links: Vec<String>,
}

impl ContainerSpec {
    fn networking(&self) -> Option<NetworkingConfig> {
        let network = self.network.as_ref().filter(|n| is_user_defined(n))?;
        Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.clone(),
                EndpointSettings {
                    aliases: Some(vec!["build".to_string(), self.name.clone()]),
                    ..Default::default()
                },
            )])),
        })
    }

    /// The settings' `extra_hosts` and the services' links.
    fn extra_hosts(&self, settings: &DockerSettings) -> Option<Vec<String>> {
        let all: Vec<String> = settings
            .extra_hosts
            .iter()
            .chain(&self.links)
            .cloned()
            .collect();
        non_empty(&all)
    }
}

/// The entrypoint a job or service asks for, as the docker executor's
/// `overwriteEntrypoint` takes it: an empty list keeps the image's (`[""]` clears it), and
/// `disable_entrypoint_overwrite` keeps it always.
pub(super) fn entrypoint_override(
    asked: &Option<Vec<String>>,
    settings: &DockerSettings,
) -> Option<Vec<String>> {
    asked
        .clone()
        .filter(|e| !e.is_empty() && !settings.disable_entrypoint_overwrite)
}

/// What the helper runs for each stage: the builds and cache dirs writable by any image
/// user, the stage marker made (older than any stage), `gitlab-runner` on the PATH when the
/// image has GitLab's `gitlab-runner-helper`, umask 0000, then the first shell reading the
/// script. The ECS job environment's helper container runs the same.
pub fn helper_shell(builds_dir: &str, cache_dir: &str) -> String {
    let roots = [shell_word(builds_dir), shell_word(cache_dir)].join(" ");
    // Any image user must be able to touch the stage marker, whoever made it first; made
    // here, it must look older than any stage, or it would pass for a script that ran.
    let marker = shell_word(&format!("{builds_dir}/{STAGE_MARKER}"));
    // The runner's scripts call `gitlab-runner` for caches and artifacts; GitLab's helper
    // image ships `gitlab-runner-helper`, which answers the same commands.
    format!(
        "for d in {roots}; do chmod 0777 \"$d\" 2>/dev/null; done; \
         {{ [ -e {marker} ] || touch -t 197001010000 {marker}; chmod 0666 {marker}; }} 2>/dev/null; \
         if ! command -v gitlab-runner >/dev/null 2>&1; then \
           h=$(command -v gitlab-runner-helper 2>/dev/null); \
           if [ -n \"$h\" ] && mkdir -p /tmp/.gitlab-ecs-executor/bin && ln -sf \"$h\" /tmp/.gitlab-ecs-executor/bin/gitlab-runner; then \
             PATH=\"/tmp/.gitlab-ecs-executor/bin:$PATH\"; export PATH; \
           fi; \
         fi; \
         if command -v gitlab-runner-build >/dev/null 2>&1; then exec gitlab-runner-build; fi; \
         umask 0000; {DETECT_SHELL}"
    )
}

/// Creates the helper container: GitLab's helper image (or another that settings name)
/// running git, caches and artifacts with umask 0000, as the docker executor does. It is
/// never privileged, gets no Docker socket and no host path settings do not name.
pub async fn create_helper_container(
    docker: &Docker,
    spec: &ContainerSpec,
    settings: &DockerSettings,
    builds_dir: &str,
    cache_dir: &str,
) -> Result<(), DockerError> {
    let command = helper_shell(builds_dir, cache_dir);
    // The helper runs the project's `hooks:` and git: the operator's hardening and limits
    // apply to it as to the job's own container, but none of the job's extra capabilities.
    let host_config = HostConfig {
        binds: Some(spec.binds.clone()),
        network_mode: spec.network.clone(),
        cap_drop: dropped_capabilities(settings),
        security_opt: security_options(&settings.security_opt)?,
        dns: non_empty(&settings.dns),
        dns_search: non_empty(&settings.dns_search),
        extra_hosts: spec.extra_hosts(settings),
        ..resources(settings)
    };
    let run = Run {
        entrypoint: None,
        cmd: vec!["sh".into(), "-c".into(), command],
        user: None,
        platform: None,
    };
    create(docker, spec, run, host_config).await
}

/// How the build container runs: what the job and settings ask of it.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Where the builds volume is mounted (`builds_dir`).
    pub builds_dir: String,
    /// The job's `image: entrypoint:` (`[""]` clears the image's, `[]` keeps it).
    pub entrypoint: Option<Vec<String>>,
    /// The user to run as.
    pub user: Option<String>,
    /// Whether it runs privileged.
    pub privileged: bool,
    /// The platform to create it for (`image: docker: platform:`).
    pub platform: Option<String>,
}

/// Creates the build container: the job's image, its entrypoint (unless the job or settings
/// override it) receiving a shell that reads each stage's script.
pub async fn create_build_container(
    docker: &Docker,
    spec: &ContainerSpec,
    settings: &DockerSettings,
    options: &BuildOptions,
) -> Result<(), DockerError> {
    let marker = shell_word(&format!("{}/{STAGE_MARKER}", options.builds_dir));
    // `true`, not `:`: a failed redirection of a special built-in ends a POSIX shell.
    let command = format!("{{ true > {marker}; }} 2>/dev/null; {DETECT_SHELL}");
    let entrypoint = entrypoint_override(&options.entrypoint, settings);
    let host_config = HostConfig {
        binds: Some(spec.binds.clone()),
        network_mode: spec.network.clone(),
        privileged: Some(options.privileged),
        cap_add: non_empty(&settings.cap_add),
        // A privileged container is given everything on purpose (docker:dind).
        cap_drop: match options.privileged {
            true => non_empty(&settings.cap_drop),
            false => dropped_capabilities(settings),
        },
        security_opt: security_options(&settings.security_opt)?,
        devices: devices(&settings.devices),
        dns: non_empty(&settings.dns),
        dns_search: non_empty(&settings.dns_search),
        extra_hosts: spec.extra_hosts(settings),
        shm_size: (settings.shm_size > 0).then_some(settings.shm_size),
        tmpfs: Some(settings.tmpfs.clone().into_iter().collect())
            .filter(|t: &HashMap<_, _>| !t.is_empty()),
        ulimits: ulimits(&settings.ulimit),
        sysctls: Some(settings.sysctls.clone().into_iter().collect())
            .filter(|s: &HashMap<_, _>| !s.is_empty()),
        ..resources(settings)
    };
    let run = Run {
        entrypoint,
        cmd: vec!["sh".into(), "-c".into(), command],
        user: options.user.clone().filter(|u| !u.is_empty()),
        platform: options.platform.clone(),
    };
    create(docker, spec, run, host_config).await
}

/// What a container runs.
struct Run {
    entrypoint: Option<Vec<String>>,
    cmd: Vec<String>,
    user: Option<String>,
    platform: Option<String>,
}

async fn create(
    docker: &Docker,
    spec: &ContainerSpec,
    run: Run,
    host_config: HostConfig,
) -> Result<(), DockerError> {
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: run.entrypoint,
        cmd: Some(run.cmd),
        env: Some(spec.env.clone()),
        user: run.user,
        hostname: Some(spec.hostname.clone()),
        labels: Some(spec.labels.clone()),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        host_config: Some(host_config),
        networking_config: spec.networking(),
        ..Default::default()
    };
    let mut options = CreateContainerOptionsBuilder::default().name(&spec.name);
    if let Some(platform) = &run.platform {
        options = options.platform(platform);
    }
    let options = options.build();
    docker
        .create_container(Some(options), body)
        .await
        .map(|_| ())
        .map_err(DockerError::api(format!("create container {}", spec.name)))
}

/// The CPU and memory limits of a job's helper and build containers.
fn resources(settings: &DockerSettings) -> HostConfig {
    HostConfig {
        nano_cpus: (settings.cpus > 0.0).then_some((settings.cpus * 1e9) as i64),
        cpuset_cpus: Some(settings.cpuset_cpus.clone()).filter(|c| !c.is_empty()),
        memory: settings.memory.bytes(),
        memory_swap: settings.memory_swap.bytes(),
        memory_reservation: settings.memory_reservation.bytes(),
        oom_kill_disable: Some(settings.oom_kill_disable),
        ..Default::default()
    }
}

/// `docker.cap_drop` and `NET_RAW` for the job's own containers.
fn dropped_capabilities(settings: &DockerSettings) -> Option<Vec<String>> {
    drop_net_raw(&settings.cap_drop, settings)
}

/// `dropped` and `NET_RAW`, which Docker grants by default and which lets a job forge
/// packets on its network (ARP, raw sockets), unless `docker.cap_add` asks for it back, as
/// Docker's hardening guides advise.
pub(super) fn drop_net_raw(dropped: &[String], settings: &DockerSettings) -> Option<Vec<String>> {
    let named = |list: &[String], cap: &str| {
        list.iter().any(|c| {
            let c = c.to_ascii_uppercase();
            c == cap || c.strip_prefix("CAP_") == Some(cap) || c == "ALL"
        })
    };
    let mut dropped = dropped.to_vec();
    if !named(&settings.cap_add, "NET_RAW") && !named(&dropped, "NET_RAW") {
        dropped.push("NET_RAW".into());
    }
    non_empty(&dropped)
}

fn non_empty(list: &[String]) -> Option<Vec<String>> {
    Some(list.to_vec()).filter(|l| !l.is_empty())
}

/// `seccomp=<file>` is read on the runner host and sent inline, as the docker executor does.
fn security_options(options: &[String]) -> Result<Option<Vec<String>>, DockerError> {
    let mut resolved = Vec::with_capacity(options.len());
    for option in options {
        match option.split_once('=') {
            Some(("seccomp", value))
                if value != "unconfined"
                    && value != "builtin"
                    && !value.trim_start().starts_with('{') =>
            {
                let profile =
                    std::fs::read_to_string(value).map_err(|e| DockerError::SecurityOpt {
                        option: option.clone(),
                        message: format!("cannot read the seccomp profile on the runner host: {e}"),
                    })?;
                serde_json::from_str::<serde_json::Value>(&profile).map_err(|e| {
                    DockerError::SecurityOpt {
                        option: option.clone(),
                        message: format!("the seccomp profile is not JSON: {e}"),
                    }
                })?;
                resolved.push(format!("seccomp={profile}"));
            }
            _ => resolved.push(option.clone()),
        }
    }
    Ok(Some(resolved).filter(|r| !r.is_empty()))
}

fn devices(devices: &[String]) -> Option<Vec<DeviceMapping>> {
    let mapped: Vec<DeviceMapping> = devices
        .iter()
        // Validated when settings were read.
        .filter_map(|d| parse_device(d).ok())
        .map(|(host, container, perms)| DeviceMapping {
            path_on_host: Some(host),
            path_in_container: Some(container),
            cgroup_permissions: Some(perms),
        })
        .collect();
    Some(mapped).filter(|m| !m.is_empty())
}

fn ulimits(limits: &std::collections::BTreeMap<String, String>) -> Option<Vec<ResourcesUlimits>> {
    let mapped: Vec<ResourcesUlimits> = limits
        .iter()
        .filter_map(|(name, value)| {
            let (soft, hard) = parse_ulimit(value)?;
            Some(ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(soft),
                hard: Some(hard),
            })
        })
        .collect();
    Some(mapped).filter(|m| !m.is_empty())
}

/// `text` as one word for `sh`.
pub fn shell_word(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
