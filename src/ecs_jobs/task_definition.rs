//! The task definition a CI job runs as: the job's `image:` as the build container, a
//! helper container, each `services:` entry as a container of the same task (reached on
//! localhost under its aliases, which the agent writes into `/etc/hosts`), and an init
//! container that copies the agent into a task volume both agents start from. Content-
//! addressed: everything that shapes it is a [`JobShape`], whose hash names the family, so
//! jobs of one shape share one revision and a changed shape never reuses another's. The
//! job's secret is not in it: that goes in `RunTask`'s overrides, per job.

use aws_lc_rs::digest::{digest, SHA256};
use aws_sdk_ecs::error::BuildError;
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::{
    Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency, KeyValuePair,
    LinuxParameters, LogConfiguration, LogDriver, MountPoint, NetworkMode, RepositoryCredentials,
    Tag, Volume,
};
use serde::Serialize;

use crate::agent::INSTALLED_NAME;
use crate::image_ref::ImageRef;
pub use crate::settings::Capacity;

/// Every job task definition's family starts so: what `prune` may deregister.
pub const FAMILY_PREFIX: &str = "gitlab-ci-";
/// The init container, which installs the agent.
pub const INIT: &str = "agent-init";
/// The build container: the job's image.
pub const BUILD: &str = "build";
/// The helper container: git, caches, artifacts.
pub const HELPER: &str = "helper";
/// The build container's agent port.
pub const BUILD_PORT: u16 = 8473;
/// The helper container's agent port (the task's containers share one network).
pub const HELPER_PORT: u16 = 8474;
/// Where the agent volume is mounted.
pub const AGENT_DIR: &str = "/gitlab-ecs-agent";
/// Bumped whenever what this file makes of a shape changes, so no family is reused for a
/// different definition.
const SYNTHESIS: u32 = 1;

/// The image the init container runs and where the executor's binary is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentImage {
    /// The image.
    pub image: String,
    /// The executor's (static) binary in it.
    pub binary: String,
}

/// One `services:` entry as the task runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceContainer {
    /// Its image.
    pub image: String,
    /// The names it answers to on localhost.
    pub aliases: Vec<String>,
    /// Its entrypoint, when the job overrides the image's.
    pub entrypoint: Option<Vec<String>>,
    /// Its command, when the job overrides the image's.
    pub command: Option<Vec<String>>,
    /// The variables its `services:` entry sets. Per-job values (`CI_JOB_ID` and the like)
    /// belong in `RunTask`'s overrides: here they would make a family per job and stay
    /// readable in the definition.
    pub variables: Vec<(String, String)>,
}

/// Where the containers' output goes: the awslogs driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Logs {
    /// The log group.
    pub group: String,
    /// Its region.
    pub region: String,
    /// The stream prefix.
    pub prefix: String,
}

/// Everything that shapes a job's task definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobShape {
    /// The job's `image:`.
    pub build_image: String,
    /// The helper image.
    pub helper_image: String,
    /// The agent's image.
    pub agent: AgentImage,
    /// The job's `services:`, in order.
    pub services: Vec<ServiceContainer>,
    /// Where the build and helper containers share the builds volume (`builds_dir`).
    pub builds_dir: String,
    /// Fargate or EC2.
    pub capacity: Capacity,
    /// Task CPU units, as ECS takes them ("1024").
    pub cpu: String,
    /// Task memory in MiB, as ECS takes it ("2048").
    pub memory: String,
    /// The role ECS pulls images and writes logs with.
    pub execution_role: Option<String>,
    /// The role the job's containers get.
    pub task_role: Option<String>,
    /// Where the containers log.
    pub logs: Option<Logs>,
    /// Registry host → the Secrets Manager secret ECS pulls its images with
    /// (`repositoryCredentials`), for private registries other than ECR.
    pub registry_credentials: Vec<(String, String)>,
}

/// The container name of the `index`th service.
pub fn service_name(index: usize) -> String {
    format!("svc-{index}")
}

/// `gitlab-ci-` and the first 20 hex digits of the shape's SHA-256.
pub fn family(shape: &JobShape) -> String {
    // A struct of strings and options serializes the same way every time. Beside the shape:
    // what this file and the agent put into every definition, and the binary's version, so
    // two executors that would register different definitions never share a family.
    let fixed = (
        SYNTHESIS,
        env!("CARGO_PKG_VERSION"),
        AGENT_DIR,
        INSTALLED_NAME,
        BUILD_PORT,
        HELPER_PORT,
    );
    let canonical = serde_json::to_vec(&(fixed, shape)).unwrap_or_default();
    let hash: String = digest(&SHA256, &canonical)
        .as_ref()
        .iter()
        .take(10)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{FAMILY_PREFIX}{hash}")
}

fn mount(volume: &str, path: &str, read_only: bool) -> MountPoint {
    MountPoint::builder()
        .source_volume(volume)
        .container_path(path)
        .read_only(read_only)
        .build()
}

fn after(
    container: &str,
    condition: ContainerCondition,
) -> Result<ContainerDependency, BuildError> {
    ContainerDependency::builder()
        .container_name(container)
        .condition(condition)
        .build()
}

fn log_configuration(logs: &Logs, container: &str) -> Result<LogConfiguration, BuildError> {
    LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", &logs.group)
        .options("awslogs-region", &logs.region)
        .options(
            "awslogs-stream-prefix",
            format!("{}/{container}", logs.prefix),
        )
        .build()
}

/// The secret ECS pulls `image` with, when its registry has one in the shape.
fn credentials_for(shape: &JobShape, image: &str) -> Option<RepositoryCredentials> {
    let registry = ImageRef::parse(image).registry().to_string();
    shape
        .registry_credentials
        .iter()
        .find(|(host, _)| *host == registry)
        .and_then(|(_, secret)| {
            RepositoryCredentials::builder()
                .credentials_parameter(secret)
                .build()
                .ok()
        })
}

/// An agent-served container: the agent, from the task volume, is its entrypoint.
fn agent_container(
    shape: &JobShape,
    name: &str,
    image: &str,
    port: u16,
) -> Result<ContainerDefinition, BuildError> {
    let mut entry = vec![
        format!("{AGENT_DIR}/{INSTALLED_NAME}"),
        "agent".to_string(),
        "serve".to_string(),
        "--listen".to_string(),
        format!("0.0.0.0:{port}"),
    ];
    for alias in shape.services.iter().flat_map(|s| &s.aliases) {
        entry.extend(["--alias".to_string(), alias.clone()]);
    }
    let mut container = ContainerDefinition::builder()
        .name(name)
        .image(image)
        .set_repository_credentials(credentials_for(shape, image))
        .essential(true)
        .set_entry_point(Some(entry))
        .mount_points(mount("agent", AGENT_DIR, true))
        .mount_points(mount("builds", &shape.builds_dir, false))
        .depends_on(after(INIT, ContainerCondition::Success)?)
        // An init process as PID 1 reaps what the stages orphan.
        .linux_parameters(
            LinuxParameters::builder()
                .init_process_enabled(true)
                .build(),
        );
    if name == BUILD {
        // As the docker executor, services are started before the job's own container.
        for index in 0..shape.services.len() {
            container =
                container.depends_on(after(&service_name(index), ContainerCondition::Start)?);
        }
    }
    if let Some(logs) = &shape.logs {
        container = container.log_configuration(log_configuration(logs, name)?);
    }
    Ok(container.build())
}

/// The registration for `shape`'s task definition.
pub fn task_definition(shape: &JobShape) -> Result<RegisterTaskDefinitionInput, BuildError> {
    let mut init = ContainerDefinition::builder()
        .name(INIT)
        .image(&shape.agent.image)
        .set_repository_credentials(credentials_for(shape, &shape.agent.image))
        .essential(false)
        .set_entry_point(Some(vec![
            shape.agent.binary.clone(),
            "agent".into(),
            "install".into(),
            AGENT_DIR.into(),
        ]))
        .mount_points(mount("agent", AGENT_DIR, false));
    if let Some(logs) = &shape.logs {
        init = init.log_configuration(log_configuration(logs, INIT)?);
    }
    let mut input = RegisterTaskDefinitionInput::builder()
        .family(family(shape))
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(match shape.capacity {
            Capacity::Fargate => Compatibility::Fargate,
            Capacity::Ec2 => Compatibility::Ec2,
        })
        .cpu(&shape.cpu)
        .memory(&shape.memory)
        .set_execution_role_arn(shape.execution_role.clone())
        .set_task_role_arn(shape.task_role.clone())
        .volumes(Volume::builder().name("agent").build())
        .volumes(Volume::builder().name("builds").build())
        .container_definitions(init.build())
        .container_definitions(agent_container(
            shape,
            BUILD,
            &shape.build_image,
            BUILD_PORT,
        )?)
        .container_definitions(agent_container(
            shape,
            HELPER,
            &shape.helper_image,
            HELPER_PORT,
        )?)
        .tags(
            Tag::builder()
                .key("gitlab-ecs-executor:job-environment")
                .value("ecs")
                .build(),
        )
        .tags(
            Tag::builder()
                .key("gitlab-ecs-executor:synthesis")
                .value(SYNTHESIS.to_string())
                .build(),
        );
    for (index, service) in shape.services.iter().enumerate() {
        let name = service_name(index);
        let mut container = ContainerDefinition::builder()
            .name(&name)
            .image(&service.image)
            .set_repository_credentials(credentials_for(shape, &service.image))
            .essential(false)
            .set_entry_point(service.entrypoint.clone())
            .set_command(service.command.clone())
            .set_environment(Some(
                service
                    .variables
                    .iter()
                    .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                    .collect(),
            ));
        if let Some(logs) = &shape.logs {
            container = container.log_configuration(log_configuration(logs, &name)?);
        }
        input = input.container_definitions(container.build());
    }
    input.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> JobShape {
        JobShape {
            build_image: "ruby:3.3".into(),
            helper_image:
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gitlab-runner-helper:x86_64-v17.5.0"
                    .into(),
            agent: AgentImage {
                image: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gitlab-ecs-executor:0.1.0"
                    .into(),
                binary: "/gitlab-ecs-executor".into(),
            },
            services: vec![
                ServiceContainer {
                    image: "postgres:15".into(),
                    aliases: vec!["postgres".into(), "db".into()],
                    entrypoint: None,
                    command: None,
                    variables: vec![("POSTGRES_PASSWORD".into(), "ci".into())],
                },
                ServiceContainer {
                    image: "redis:7".into(),
                    aliases: vec!["redis".into()],
                    entrypoint: None,
                    command: Some(vec!["redis-server".into(), "--save".into(), String::new()]),
                    variables: Vec::new(),
                },
            ],
            builds_dir: "/builds".into(),
            capacity: Capacity::Fargate,
            cpu: "1024".into(),
            memory: "2048".into(),
            execution_role: Some("arn:aws:iam::123456789012:role/ci-execution".into()),
            task_role: Some("arn:aws:iam::123456789012:role/ci-job-group-app".into()),
            logs: Some(Logs {
                group: "/gitlab-ci/jobs".into(),
                region: "eu-west-1".into(),
                prefix: "job".into(),
            }),
            registry_credentials: vec![(
                "registry.example.com".into(),
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ci-registry-AbCdEf".into(),
            )],
        }
    }

    #[test]
    fn one_shape_one_family_and_any_change_another() {
        let base = shape();
        assert_eq!(family(&base), family(&shape()));
        assert!(family(&base).starts_with("gitlab-ci-"));
        assert_eq!(family(&base).len(), "gitlab-ci-".len() + 20);
        let changes: [fn(&mut JobShape); 10] = [
            |s| s.build_image = "ruby:3.4".into(),
            |s| s.services[0].aliases.push("pg".into()),
            |s| s.services.swap(0, 1),
            |s| s.services[1].command = None,
            |s| s.capacity = Capacity::Ec2,
            |s| s.memory = "4096".into(),
            |s| s.task_role = None,
            |s| s.logs = None,
            |s| s.agent.binary = "/usr/bin/gitlab-ecs-executor".into(),
            |s| s.registry_credentials.clear(),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut other = shape();
            change(&mut other);
            assert_ne!(family(&other), family(&base), "change {i}");
        }
    }

    #[test]
    fn images_of_a_private_registry_are_pulled_with_its_secret_and_no_other() {
        let mut shape = shape();
        shape.services[1].image = "registry.example.com/platform/redis:7".into();
        shape.build_image = "registry.example.com:5000/ruby:3.3".into();
        let input = task_definition(&shape).unwrap();
        let secret = |name: &str| {
            input
                .container_definitions()
                .iter()
                .find(|c| c.name() == Some(name))
                .and_then(|c| c.repository_credentials())
                .map(|r| r.credentials_parameter().to_string())
        };
        assert_eq!(
            secret("svc-1").as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:123456789012:secret:ci-registry-AbCdEf")
        );
        // Another port is another registry; Docker Hub and ECR images need no secret.
        for other in [BUILD, "svc-0", HELPER, INIT] {
            assert_eq!(secret(other), None, "{other}");
        }
    }

    #[test]
    fn the_task_runs_the_job_image_the_helper_and_the_services_around_one_agent_volume() {
        let input = task_definition(&shape()).unwrap();
        assert_eq!(input.family(), Some(family(&shape()).as_str()));
        assert_eq!(input.network_mode(), Some(&NetworkMode::Awsvpc));
        assert_eq!(input.requires_compatibilities(), [Compatibility::Fargate]);
        let names: Vec<&str> = input
            .container_definitions()
            .iter()
            .filter_map(|c| c.name())
            .collect();
        assert_eq!(names, [INIT, BUILD, HELPER, "svc-0", "svc-1"]);
        let container = |name: &str| {
            input
                .container_definitions()
                .iter()
                .find(|c| c.name() == Some(name))
                .unwrap()
                .clone()
        };
        let init = container(INIT);
        assert_eq!(init.essential(), Some(false));
        assert_eq!(
            init.entry_point(),
            ["/gitlab-ecs-executor", "agent", "install", AGENT_DIR]
        );
        let build = container(BUILD);
        assert_eq!(build.image(), Some("ruby:3.3"));
        assert_eq!(build.essential(), Some(true));
        assert_eq!(
            build.entry_point(),
            [
                "/gitlab-ecs-agent/gitlab-ecs-executor",
                "agent",
                "serve",
                "--listen",
                "0.0.0.0:8473",
                "--alias",
                "postgres",
                "--alias",
                "db",
                "--alias",
                "redis"
            ]
        );
        // No command: the image's own is never run in place of the agent.
        assert!(build.command().is_empty());
        let waits: Vec<(&str, &str)> = build
            .depends_on()
            .iter()
            .map(|d| (d.container_name(), d.condition().as_str()))
            .collect();
        assert_eq!(
            waits,
            [(INIT, "SUCCESS"), ("svc-0", "START"), ("svc-1", "START")]
        );
        let agent_mount = &build.mount_points()[0];
        assert_eq!(
            agent_mount.read_only(),
            Some(true),
            "a job cannot replace the agent"
        );
        assert_eq!(
            build
                .linux_parameters()
                .and_then(|l| l.init_process_enabled()),
            Some(true)
        );
        let helper = container(HELPER);
        assert!(helper.entry_point().contains(&"0.0.0.0:8474".to_string()));
        assert_eq!(helper.depends_on().len(), 1);
        let postgres = container("svc-0");
        assert_eq!(postgres.essential(), Some(false));
        assert!(
            postgres.entry_point().is_empty(),
            "the image's entrypoint runs"
        );
        assert_eq!(postgres.environment()[0].name(), Some("POSTGRES_PASSWORD"));
        assert_eq!(container("svc-1").command(), ["redis-server", "--save", ""]);
        let logs = build.log_configuration().unwrap();
        assert_eq!(
            logs.options().unwrap()["awslogs-stream-prefix"],
            "job/build"
        );
        // The job's secret is per job: in RunTask's overrides, never in the definition.
        let text = format!("{input:?}");
        assert!(!text.contains(crate::agent::SECRET_DIGEST_VARIABLE));
    }
}
