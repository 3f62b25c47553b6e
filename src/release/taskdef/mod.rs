//! The new task definition revision, as a pure transform of the service's current one:
//! every field `RegisterTaskDefinition` accepts is copied through the SDK's typed input,
//! only the target container's image changes and traceability tags are added. What the copy
//! will register and what ECS registered are compared as JSON documents ([`document`]).

pub(crate) mod document;

pub use document::{Document, FieldChange};

use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;

use crate::image_ref::ImageRef;
use crate::release::input::Input;
use aws_sdk_ecs::types::{ContainerDefinition, Tag, TaskDefinition};

/// Every field of `RegisterTaskDefinitionInput`, as the SDK names them, that [`copy`]
/// handles. A unit test fails when the SDK gains a field missing here.
pub const HANDLED_INPUT_FIELDS: &[&str] = &[
    "family",
    "task_role_arn",
    "execution_role_arn",
    "network_mode",
    "container_definitions",
    "volumes",
    "placement_constraints",
    "requires_compatibilities",
    "cpu",
    "memory",
    "tags",
    "pid_mode",
    "ipc_mode",
    "proxy_configuration",
    // Deliberately not copied: ECS no longer accepts Elastic Inference accelerators.
    "inference_accelerators",
    "ephemeral_storage",
    "runtime_platform",
    "enable_fault_injection",
];

/// ECS limits: 50 tags per resource, 128-character keys, 256-character values.
const MAX_TAGS: usize = 50;

/// The task definition cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskDefError {
    /// `ECS_CONTAINER` names no container.
    UnknownContainer {
        /// The input that named it.
        input: Input,
        /// The requested name.
        name: String,
        /// `family:revision`.
        task_definition: String,
        /// The names present.
        names: String,
    },
    /// No container can be chosen.
    Ambiguous {
        /// The input that would choose.
        input: Input,
        /// `family:revision`.
        task_definition: String,
        /// The names present.
        names: String,
    },
    /// The service's task definition belongs to another family than `TASK_DEFINITION`.
    WrongFamily {
        /// The input that set the family.
        input: Input,
        /// From the job.
        expected: String,
        /// `family:revision` the service runs.
        actual: String,
    },
    /// The described task definition has no family or containers.
    Incomplete(String),
}

impl TaskDefError {
    /// The message, with each input named as `name` says (a job's variable, a flag).
    pub fn describe(&self, name: &dyn Fn(Input) -> String) -> String {
        match self {
            TaskDefError::UnknownContainer {
                input,
                name: container,
                task_definition,
                names,
            } => format!(
                "{} `{container}` is not a container of {task_definition} (containers: {names})",
                name(*input)
            ),
            TaskDefError::Ambiguous {
                input,
                task_definition,
                names,
            } => format!(
                "cannot tell which container of {task_definition} runs the release image \
                 (containers: {names}); set {} to one or more of them, comma-separated",
                name(*input)
            ),
            TaskDefError::WrongFamily {
                input,
                expected,
                actual,
            } => {
                let input = name(*input);
                format!(
                    "{input} is `{expected}` but the service runs {actual}: point {input} at the \
                     service's family, or leave it unset"
                )
            }
            TaskDefError::Incomplete(revision) => {
                format!("the described task definition {revision} has no family or no containers")
            }
        }
    }
}

/// In a job's words.
impl std::fmt::Display for TaskDefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(&|input| input.job_variable().to_string()))
    }
}

impl std::error::Error for TaskDefError {}

/// `family:revision` of a described task definition.
pub fn label(td: &TaskDefinition) -> String {
    format!("{}:{}", td.family().unwrap_or("?"), td.revision())
}

/// Checks that the service's task definition belongs to `TASK_DEFINITION`'s family.
pub fn check_family(td: &TaskDefinition, expected: &str) -> Result<(), TaskDefError> {
    // `family`, `family:rev` and full ARNs all name a family.
    let family = expected
        .rsplit('/')
        .next()
        .unwrap_or(expected)
        .split(':')
        .next()
        .unwrap_or(expected);
    if td.family() == Some(family) {
        Ok(())
    } else {
        Err(TaskDefError::WrongFamily {
            input: Input::TaskDefinition,
            expected: expected.to_string(),
            actual: label(td),
        })
    }
}

/// Chooses the containers whose image the release replaces: those `ECS_CONTAINER` names
/// (all of them must exist), else every container whose image repository is the release
/// repository (an app and a worker built from one image), else the only container.
/// Containers of other repositories (log routers, proxies, agents) are never chosen.
pub fn target_containers(
    td: &TaskDefinition,
    named: &[String],
    repository: &str,
) -> Result<Vec<usize>, TaskDefError> {
    let containers = td.container_definitions();
    let names = || {
        containers
            .iter()
            .map(|c| c.name().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !named.is_empty() {
        let mut chosen = Vec::new();
        for name in named {
            let index = containers
                .iter()
                .position(|c| c.name() == Some(name.as_str()))
                .ok_or_else(|| TaskDefError::UnknownContainer {
                    input: Input::Container,
                    name: name.clone(),
                    task_definition: label(td),
                    names: names(),
                })?;
            if !chosen.contains(&index) {
                chosen.push(index);
            }
        }
        return Ok(chosen);
    }
    let matching: Vec<usize> = containers
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.image()
                .map(|i| ImageRef::parse(i).repository())
                .as_deref()
                == Some(repository)
        })
        .map(|(i, _)| i)
        .collect();
    match (matching.is_empty(), containers.len()) {
        (false, _) => Ok(matching),
        (true, 1) => Ok(vec![0]),
        _ => Err(TaskDefError::Ambiguous {
            input: Input::Container,
            task_definition: label(td),
            names: names(),
        }),
    }
}

/// The names of `targets` in `td`, for the log.
pub fn container_names(td: &TaskDefinition, targets: &[usize]) -> Vec<String> {
    targets
        .iter()
        .filter_map(|i| td.container_definitions().get(*i))
        .map(|c| c.name().unwrap_or("?").to_string())
        .collect()
}

/// Tags that tie a revision to the GitLab job that registered it.
pub fn traceability_tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .filter_map(|(k, v)| {
            Tag::builder()
                .key(truncate(&tag_chars(k), 128))
                .value(truncate(&tag_chars(v), 256))
                .build()
                .into()
        })
        .collect()
}

/// ECS tags allow letters, digits, spaces and `+ - = . _ : / @`.
fn tag_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The base's tags with `ours` added (replacing same-named keys), within ECS's 50-tag limit.
/// Returns the tags and the keys of ours that did not fit.
pub fn merge_tags(base: &[Tag], ours: &[Tag]) -> (Vec<Tag>, Vec<String>) {
    let mut merged: Vec<Tag> = base
        .iter()
        .filter(|t| !ours.iter().any(|o| o.key() == t.key()))
        .cloned()
        .collect();
    let mut dropped = Vec::new();
    for tag in ours {
        if merged.len() < MAX_TAGS {
            merged.push(tag.clone());
        } else {
            dropped.push(tag.key().unwrap_or_default().to_string());
        }
    }
    (merged, dropped)
}

/// The register input for a new revision of `base`: every input field copied, container
/// `target`'s image set to `image`, tags replaced by `tags`.
pub fn copy(
    base: &TaskDefinition,
    targets: &[usize],
    image: &str,
    tags: Vec<Tag>,
) -> Result<RegisterTaskDefinitionInput, TaskDefError> {
    let mut containers: Vec<ContainerDefinition> = base.container_definitions().to_vec();
    if base.family().is_none() || containers.is_empty() {
        return Err(TaskDefError::Incomplete(label(base)));
    }
    for target in targets {
        if let Some(container) = containers.get_mut(*target) {
            container.image = Some(image.to_string());
        }
    }
    RegisterTaskDefinitionInput::builder()
        .set_family(base.family.clone())
        .set_task_role_arn(base.task_role_arn.clone())
        .set_execution_role_arn(base.execution_role_arn.clone())
        .set_network_mode(base.network_mode.clone())
        .set_container_definitions(Some(containers))
        .set_volumes(base.volumes.clone())
        .set_placement_constraints(base.placement_constraints.clone())
        .set_requires_compatibilities(base.requires_compatibilities.clone())
        .set_cpu(base.cpu.clone())
        .set_memory(base.memory.clone())
        // The API rejects an empty tag list.
        .set_tags(Some(tags).filter(|t| !t.is_empty()))
        .set_pid_mode(base.pid_mode.clone())
        .set_ipc_mode(base.ipc_mode.clone())
        .set_proxy_configuration(base.proxy_configuration.clone())
        .set_ephemeral_storage(base.ephemeral_storage.clone())
        .set_runtime_platform(base.runtime_platform.clone())
        .set_enable_fault_injection(base.enable_fault_injection)
        .build()
        .map_err(|_| TaskDefError::Incomplete(label(base)))
}

/// The fluent request for `input`, ready to send.
pub fn register_request(
    client: &aws_sdk_ecs::Client,
    input: RegisterTaskDefinitionInput,
) -> aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder
{
    client
        .register_task_definition()
        .set_family(input.family)
        .set_task_role_arn(input.task_role_arn)
        .set_execution_role_arn(input.execution_role_arn)
        .set_network_mode(input.network_mode)
        .set_container_definitions(input.container_definitions)
        .set_volumes(input.volumes)
        .set_placement_constraints(input.placement_constraints)
        .set_requires_compatibilities(input.requires_compatibilities)
        .set_cpu(input.cpu)
        .set_memory(input.memory)
        .set_tags(input.tags)
        .set_pid_mode(input.pid_mode)
        .set_ipc_mode(input.ipc_mode)
        .set_proxy_configuration(input.proxy_configuration)
        .set_ephemeral_storage(input.ephemeral_storage)
        .set_runtime_platform(input.runtime_platform)
        .set_enable_fault_injection(input.enable_fault_injection)
}

/// Compares `vMAJOR.MINOR.PATCH` versions; `None` when either is not one.
pub fn compare_versions(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let mut parts = v
            .trim_start_matches('v')
            .split('.')
            .map(|p| p.parse::<u64>().ok());
        let version = (parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(version)
    };
    Some(parse(a)?.cmp(&parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::*;

    /// Fields of a described `TaskDefinition` that ECS sets itself and never takes as input.
    const OUTPUT_ONLY_FIELDS: &[&str] = &[
        "task_definition_arn",
        "revision",
        "status",
        "requires_attributes",
        "compatibilities",
        "registered_at",
        "deregistered_at",
        "delete_requested_at",
        "registered_by",
        "inference_accelerators",
    ];

    /// A struct's field names, from its pretty Debug form: the SDK derives Debug for every
    /// field, so this follows the SDK as it grows.
    fn field_names(value: &impl std::fmt::Debug) -> Vec<String> {
        let mut names: Vec<String> = format!("{value:#?}")
            .lines()
            .filter_map(|line| line.strip_prefix("    "))
            .filter(|line| !line.starts_with(' '))
            .filter_map(|line| line.split_once(": ").map(|(k, _)| k.to_string()))
            .collect();
        names.sort();
        names
    }

    /// A realistic described task definition: a log-router sidecar first, the app second,
    /// ARM64 Fargate, ephemeral storage, secrets, a volume and a health check.
    pub(crate) fn sample() -> TaskDefinition {
        let sidecar = ContainerDefinition::builder()
            .name("log-router")
            .image("public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0")
            .essential(false)
            .firelens_configuration(
                FirelensConfiguration::builder()
                    .r#type(FirelensConfigurationType::Fluentbit)
                    .build()
                    .unwrap(),
            )
            .memory_reservation(50)
            .build();
        let app = ContainerDefinition::builder()
            .name("app")
            .image("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/your-repo-name:v0.9.0")
            .cpu(256)
            .essential(true)
            .port_mappings(
                PortMapping::builder()
                    .container_port(8080)
                    .protocol(TransportProtocol::Tcp)
                    .name("http")
                    .build(),
            )
            .environment(
                KeyValuePair::builder()
                    .name("MODE")
                    .value("production")
                    .build(),
            )
            .secrets(
                Secret::builder()
                    .name("DB_PASSWORD")
                    .value_from("arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:db")
                    .build()
                    .unwrap(),
            )
            .health_check(
                HealthCheck::builder()
                    .command("CMD-SHELL")
                    .command("curl -f localhost:8080/health")
                    .interval(10)
                    .build()
                    .unwrap(),
            )
            .depends_on(
                ContainerDependency::builder()
                    .container_name("log-router")
                    .condition(ContainerCondition::Start)
                    .build()
                    .unwrap(),
            )
            .mount_points(
                MountPoint::builder()
                    .source_volume("tmp")
                    .container_path("/tmp")
                    .build(),
            )
            .build();
        TaskDefinition::builder()
            .task_definition_arn(
                "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/your-task-definition:7",
            )
            .family("your-task-definition")
            .revision(7)
            .status(TaskDefinitionStatus::Active)
            .task_role_arn("arn:aws:iam::123456789012:role/app")
            .execution_role_arn("arn:aws:iam::123456789012:role/exec")
            .network_mode(NetworkMode::Awsvpc)
            .container_definitions(sidecar)
            .container_definitions(app)
            .volumes(Volume::builder().name("tmp").build())
            .requires_compatibilities(Compatibility::Fargate)
            .compatibilities(Compatibility::Ec2)
            .compatibilities(Compatibility::Fargate)
            .requires_attributes(
                Attribute::builder()
                    .name("com.amazonaws.ecs.capability.ecr-auth")
                    .build()
                    .unwrap(),
            )
            .cpu("512")
            .memory("1024")
            .ephemeral_storage(EphemeralStorage::builder().size_in_gib(40).build())
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::Arm64)
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .enable_fault_injection(false)
            .registered_by("arn:aws:iam::123456789012:user/ops")
            .build()
    }

    fn tag(k: &str, v: &str) -> Tag {
        Tag::builder().key(k).value(v).build()
    }

    const NEW_IMAGE: &str =
        "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/your-repo-name:v1.0.0";

    #[test]
    fn every_sdk_input_field_is_handled() {
        let fields = field_names(&RegisterTaskDefinitionInput::builder().build().unwrap());
        let sdk: Vec<&str> = fields.iter().map(String::as_str).collect();
        let mut handled = HANDLED_INPUT_FIELDS.to_vec();
        handled.sort_unstable();
        assert_eq!(
            sdk, handled,
            "RegisterTaskDefinitionInput changed: update copy() and HANDLED_INPUT_FIELDS"
        );
    }

    #[test]
    fn every_described_field_is_copied_or_known_output_only() {
        for field in field_names(&sample()) {
            assert!(
                HANDLED_INPUT_FIELDS.contains(&field.as_str())
                    || OUTPUT_ONLY_FIELDS.contains(&field.as_str()),
                "TaskDefinition field `{field}` is neither copied nor known to be output-only"
            );
        }
    }

    #[test]
    fn the_copy_changes_only_the_app_image_and_keeps_everything_else() {
        let base = sample();
        let targets = target_containers(
            &base,
            &[],
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/your-repo-name",
        )
        .unwrap();
        assert_eq!(targets, [1], "the app, not the sidecar listed first");
        let tags = vec![tag("team", "web"), tag("gitlab:tag", "v1.0.0")];
        let input = copy(&base, &targets, NEW_IMAGE, tags.clone()).unwrap();
        assert_eq!(
            input.container_definitions.as_ref().unwrap()[0],
            base.container_definitions()[0]
        );
        assert_eq!(
            input.container_definitions.as_ref().unwrap()[1].image(),
            Some(NEW_IMAGE)
        );
        assert_eq!(input.runtime_platform, base.runtime_platform);
        assert_eq!(input.ephemeral_storage, base.ephemeral_storage);
        assert_eq!(input.tags.as_deref(), Some(tags.as_slice()));
    }

    #[test]
    fn the_request_sends_every_copied_field() {
        let conf = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .region(aws_sdk_ecs::config::Region::new("eu-west-1"))
            .build();
        let client = aws_sdk_ecs::Client::from_conf(conf);
        let input = copy(&sample(), &[1], NEW_IMAGE, vec![tag("a", "b")]).unwrap();
        let sent = register_request(&client, input.clone())
            .as_input()
            .clone()
            .build()
            .unwrap();
        assert_eq!(sent, input);
    }

    #[test]
    fn container_choice() {
        let base = sample();
        let named = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            target_containers(&base, &named(&["log-router"]), "x").unwrap(),
            [0]
        );
        assert_eq!(
            target_containers(&base, &named(&["app", "log-router", "app"]), "x").unwrap(),
            [1, 0]
        );
        let err = target_containers(&base, &named(&["app", "web"]), "x").unwrap_err();
        assert!(
            err.to_string().contains("`web`") && err.to_string().contains("log-router, app"),
            "{err}"
        );
        let err = target_containers(&base, &[], "other/repo").unwrap_err();
        assert!(
            matches!(err, TaskDefError::Ambiguous { .. })
                && err.to_string().contains("ECS_CONTAINER")
        );
        let mut single = base.clone();
        single.container_definitions.as_mut().unwrap().remove(0);
        assert_eq!(target_containers(&single, &[], "other/repo").unwrap(), [0]);
        // An app and a worker from the release repository, beside a log router.
        let mut two = base.clone();
        let mut worker = base.container_definitions()[1].clone();
        worker.name = Some("worker".into());
        two.container_definitions.as_mut().unwrap().push(worker);
        let repository = "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/your-repo-name";
        let targets = target_containers(&two, &[], repository).unwrap();
        assert_eq!(container_names(&two, &targets), ["app", "worker"]);
        let input = copy(&two, &targets, NEW_IMAGE, Vec::new()).unwrap();
        let images: Vec<_> = input
            .container_definitions
            .unwrap()
            .iter()
            .map(|c| c.image.clone())
            .collect();
        assert_eq!(
            images[0],
            base.container_definitions()[0].image.clone(),
            "the log router is untouched"
        );
        assert_eq!(images[1].as_deref(), Some(NEW_IMAGE));
        assert_eq!(images[2].as_deref(), Some(NEW_IMAGE));
    }

    #[test]
    fn families_images_tags_and_versions() {
        let base = sample();
        assert!(check_family(&base, "your-task-definition").is_ok());
        assert!(check_family(&base, "your-task-definition:3").is_ok());
        assert!(check_family(
            &base,
            "arn:aws:ecs:r:1:task-definition/your-task-definition:7"
        )
        .is_ok());
        let wrong = check_family(&base, "other").unwrap_err();
        assert!(wrong.to_string().starts_with("TASK_DEFINITION is `other`"));
        let flag = |input: Input| match input {
            Input::TaskDefinition => "--task-definition".to_string(),
            other => other.to_string(),
        };
        assert!(wrong
            .describe(&flag)
            .starts_with("--task-definition is `other` but the service runs your-task-definition:7: point --task-definition at"));
        assert!(check_family(&base, "other")
            .unwrap_err()
            .to_string()
            .contains("your-task-definition:7"));
        assert_eq!(
            compare_versions("v1.10.0", "v1.9.3"),
            Some(std::cmp::Ordering::Greater)
        );
        assert_eq!(compare_versions("v1.0", "v1.0.0"), None);
        let t = traceability_tags(&[
            (
                "gitlab:job-url",
                "https://gitlab.example.com/g/p/-/jobs/1?x=y",
            ),
            ("empty", ""),
        ]);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[0].value(),
            Some("https://gitlab.example.com/g/p/-/jobs/1_x=y")
        );
        let many: Vec<Tag> = (0..49).map(|i| tag(&format!("k{i}"), "v")).collect();
        let (merged, dropped) =
            merge_tags(&many, &[tag("k0", "new"), tag("x", "1"), tag("y", "2")]);
        assert_eq!((merged.len(), dropped), (50, vec!["y".to_string()]));
    }
}
