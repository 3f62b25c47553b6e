//! The inputs of a release, read from wherever the requester gives them (a job's variables,
//! an operator's flags) and checked all at once: one error names every missing or malformed
//! input, in the requester's own words (`ECR_REGISTRY` for a job, `--registry` for a CLI).

use std::time::Duration;

mod checks;
mod source;

pub use checks::parse_duration;
use checks::*;
pub use source::{Input, InputSource, JobVariables};

use super::ecs::HookAction;
use crate::aws::{session_name, CredentialRequest};
use crate::image_ref::ImageRef;
use crate::settings::{AwsSettings, PauseMode, RollbackMode};

/// Who asks for the release: decides the STS session name and whether the runner host's
/// own credentials may serve.
#[derive(Debug, Clone, Copy)]
pub enum Requester<'a> {
    /// A CI job of `project_path`.
    Job {
        /// `CI_PROJECT_PATH`.
        project_path: &'a str,
        /// `CI_JOB_ID`.
        job_id: u64,
    },
    /// An operator on the runner host, who may always use the host's credentials.
    Operator,
}

/// The ECS side of a release.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EcsTarget {
    /// The cluster.
    pub cluster: String,
    /// The service.
    pub service: String,
    /// The family the service's task definition must belong to.
    pub task_definition: Option<String>,
    /// The containers whose image is replaced (empty: those of the release repository).
    pub containers: Vec<String>,
    /// How long the rollout may take.
    pub rollout_timeout: Option<Duration>,
    /// What to do when it fails.
    pub rollback: Option<RollbackMode>,
    /// What to do at a PAUSE lifecycle hook.
    pub on_pause_hook: Option<PauseMode>,
    /// What the service's task definitions may be, when the release uses credentials that
    /// the operator grants per project (`None`: whatever the credentials allow).
    pub grant: Option<super::grant::TaskDefinitionGrant>,
}

/// What a release does with the image it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageAction {
    /// Push it and roll it out on ECS.
    Release,
    /// Push it only.
    Push,
}

/// A value that must never be printed (`Debug` shows it masked).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[MASKED]")
    }
}

/// How to build the image, beyond the Dockerfile and context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInputs {
    /// `--build-arg NAME=value`, values from the variables named (masked in the log).
    pub args: Vec<(String, SecretValue)>,
    /// `--target`.
    pub target: Option<String>,
    /// `RUN --mount=type=secret,id=NAME`, values from the variables named.
    pub secrets: Vec<(String, SecretValue)>,
}

/// Everything a release needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInputs {
    /// Release or push only.
    pub action: ImageAction,
    /// The image to build and deploy: `registry/repository:tag`.
    pub image: ImageRef,
    /// The AWS region.
    pub region: String,
    /// One ECS target per service (none for the push action).
    pub ecs: Vec<EcsTarget>,
    /// A task of the new revision to run before any service is updated.
    pub pre_deploy: Option<PreDeploy>,
    /// The Dockerfile, relative to the project directory.
    pub dockerfile: String,
    /// The build context, relative to the project directory.
    pub build_context: String,
    /// Build arguments, target and secrets.
    pub build: BuildInputs,
    /// Where AWS credentials come from.
    pub credentials: CredentialRequest,
}

impl ReleaseInputs {
    /// The version tag (also the image tag).
    pub fn tag(&self) -> &str {
        self.image.tag().unwrap_or_default()
    }
}

/// What an operator needs to act on a service: where it is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccess {
    /// The service.
    pub target: EcsTarget,
    /// The AWS region.
    pub region: String,
    /// Where AWS credentials come from.
    pub credentials: CredentialRequest,
    /// `registry/repository`, when given: picks the release container.
    pub repository: Option<String>,
}

/// A one-off task of the new revision that must succeed before any service is updated
/// (database migrations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreDeploy {
    /// The command, as the target container's command override.
    pub command: Vec<String>,
    /// How long it may take (capped by the job's time).
    pub timeout: Option<Duration>,
}

impl PreDeploy {
    /// A JSON array of strings is the command as is; any other value runs in `sh -c`.
    pub fn command_of(value: &str) -> Option<Vec<String>> {
        let value = value.trim();
        if value.starts_with('[') {
            serde_json::from_str::<Vec<String>>(value)
                .ok()
                .filter(|c| !c.is_empty())
        } else {
            Some(vec!["sh".into(), "-c".into(), value.to_string()])
        }
    }
}

/// What deciding an approval gate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueInputs {
    /// The service and how to reach it.
    pub access: ServiceAccess,
    /// Continue or roll back.
    pub action: HookAction,
    /// The service deployment (`None`: the service's current one).
    pub deployment: Option<String>,
}

/// Inputs that are missing or malformed, all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this release cannot run: {}. {}", .problems.join("; "), .advice)]
pub struct InputError {
    /// One entry per input.
    pub problems: Vec<String>,
    /// Where the requester sets inputs.
    pub advice: &'static str,
}

/// Collects problems while inputs are read.
struct Reader<'s> {
    source: &'s dyn InputSource,
    problems: Vec<String>,
}

impl<'s> Reader<'s> {
    fn new(source: &'s dyn InputSource) -> Self {
        Reader {
            source,
            problems: Vec::new(),
        }
    }

    fn required(&mut self, input: Input, check: fn(&str) -> Option<String>) -> String {
        match self.source.value(input) {
            None => {
                self.problems
                    .push(format!("{} is not set", self.source.name(input)));
                String::new()
            }
            Some(v) => self.checked(input, v, check),
        }
    }

    fn optional(&mut self, input: Input, check: fn(&str) -> Option<String>) -> Option<String> {
        let v = self.source.value(input)?;
        Some(self.checked(input, v, check))
    }

    fn checked(&mut self, input: Input, v: String, check: fn(&str) -> Option<String>) -> String {
        let v = v.trim().to_string();
        if let Some(why) = check(&v) {
            self.problems
                .push(format!("{} {why}", self.source.name(input)));
        }
        v
    }

    fn finish<T>(self, value: T) -> Result<T, InputError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(InputError {
                problems: self.problems,
                advice: self.source.advice(),
            })
        }
    }

    fn region(&mut self, aws: &AwsSettings) -> String {
        let region = self
            .source
            .value(Input::Region)
            .or_else(|| aws.default_region().map(str::to_string));
        match region {
            None => {
                self.problems.push(format!(
                    "{} is not set (nor aws.region in the executor settings)",
                    self.source.name(Input::Region)
                ));
                String::new()
            }
            Some(r) => self.checked(Input::Region, r, check_region),
        }
    }

    /// A comma-separated list, each entry checked; duplicates dropped.
    fn list(&mut self, input: Input, check: fn(&str) -> Option<String>) -> Vec<String> {
        let Some(value) = self.source.value(input) else {
            return Vec::new();
        };
        let mut entries: Vec<String> = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let entry = self.checked(input, entry.to_string(), check);
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        entries
    }

    /// One target per service of `ECS_SERVICE` (a comma-separated list: one release rolls
    /// out to several services of the cluster).
    fn ecs_targets(&mut self) -> Vec<EcsTarget> {
        let services = self.list(Input::Service, check_ecs_name);
        if services.is_empty() {
            self.problems
                .push(format!("{} is not set", self.source.name(Input::Service)));
        }
        let template = self.target_options();
        services
            .into_iter()
            .map(|service| EcsTarget {
                service,
                ..template.clone()
            })
            .collect()
    }

    /// The one service an operator command acts on.
    fn ecs_target(&mut self) -> EcsTarget {
        let service = self.required(Input::Service, check_ecs_name);
        if service.contains(',') {
            self.problems.push(format!(
                "{} names several services; this command acts on one at a time",
                self.source.name(Input::Service)
            ));
        }
        EcsTarget {
            service,
            ..self.target_options()
        }
    }

    /// Everything of a target but its service.
    fn target_options(&mut self) -> EcsTarget {
        EcsTarget {
            cluster: self.required(Input::Cluster, check_ecs_name),
            service: String::new(),
            task_definition: self.optional(Input::TaskDefinition, check_task_definition),
            containers: self.list(Input::Container, check_container),
            rollout_timeout: self
                .optional(Input::RolloutTimeout, check_duration)
                .and_then(|v| parse_duration(&v)),
            rollback: self
                .optional(Input::Rollback, check_rollback)
                .and_then(|v| RollbackMode::parse(&v)),
            on_pause_hook: self
                .optional(Input::OnPauseHook, check_pause_mode)
                .and_then(|v| PauseMode::parse(&v)),
            grant: None,
        }
    }

    fn credentials(&mut self, aws: &AwsSettings, requester: Requester<'_>) -> CredentialRequest {
        let name = |input| self.source.name(input);
        if let Some(role_arn) = self.source.value(Input::RoleArn) {
            if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
                let problem = format!(
                    "{} must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
                    name(Input::RoleArn)
                );
                self.problems.push(problem);
            }
            let session_name = match requester {
                Requester::Job {
                    project_path,
                    job_id,
                } => session_name(project_path, job_id),
                Requester::Operator => "gitlab-ecs-executor-operator".to_string(),
            };
            return match self.source.value(Input::IdToken) {
                Some(token) => CredentialRequest::WebIdentity {
                    role_arn,
                    token,
                    session_name,
                },
                None => {
                    let token = name(Input::IdToken);
                    let problem = format!(
                        "{token} is not set: {} needs a GitLab ID token, declare `id_tokens: {token}: aud: sts.amazonaws.com` in the job",
                        name(Input::RoleArn)
                    );
                    self.problems.push(problem);
                    CredentialRequest::Host
                }
            };
        }
        let (key, secret) = (
            self.source.value(Input::AccessKeyId),
            self.source.value(Input::SecretAccessKey),
        );
        let half = match (key, secret) {
            (Some(access_key_id), Some(secret_access_key)) => {
                return CredentialRequest::JobKeys {
                    access_key_id,
                    secret_access_key,
                    session_token: self.source.value(Input::SessionToken),
                }
            }
            (Some(_), None) => Some((Input::SecretAccessKey, Input::AccessKeyId)),
            (None, Some(_)) => Some((Input::AccessKeyId, Input::SecretAccessKey)),
            (None, None) => None,
        };
        if let Some((missing, given)) = half {
            let problem = format!("{} is not set but {} is", name(missing), name(given));
            self.problems.push(problem);
        }
        if matches!(requester, Requester::Job { .. }) && !aws.allow_host_credentials {
            let problem = format!(
                "{} is not set, and this runner does not let jobs use its own AWS credentials: \
                 set {} and an `id_tokens:` variable {}",
                name(Input::RoleArn),
                name(Input::RoleArn),
                name(Input::IdToken)
            );
            self.problems.push(problem);
        }
        CredentialRequest::Host
    }
}

/// Reads and checks the inputs of a release of `tag`.
pub fn collect(
    action: ImageAction,
    tag: &str,
    source: &dyn InputSource,
    aws: &AwsSettings,
    requester: Requester<'_>,
) -> Result<ReleaseInputs, InputError> {
    let mut r = Reader::new(source);
    let registry = r.required(Input::Registry, check_registry);
    let repository = r.required(Input::Repository, check_repository);
    let ecs = match action {
        ImageAction::Push => Vec::new(),
        ImageAction::Release => r.ecs_targets(),
    };
    let pre_deploy = match action {
        ImageAction::Push => None,
        ImageAction::Release => r
            .optional(Input::PreDeployCommand, check_pre_deploy_command)
            .and_then(|v| PreDeploy::command_of(&v))
            .map(|command| PreDeploy {
                command,
                timeout: None,
            }),
    }
    .map(|p| PreDeploy {
        timeout: r
            .optional(Input::PreDeployTimeout, check_duration)
            .and_then(|v| parse_duration(&v)),
        ..p
    });
    let dockerfile = r
        .optional(Input::Dockerfile, check_relative)
        .unwrap_or_else(|| "Dockerfile".into());
    let build_context = r
        .optional(Input::BuildContext, check_relative)
        .unwrap_or_else(|| ".".into());
    let build = r.build_inputs();
    let region = r.region(aws);
    let credentials = r.credentials(aws, requester);
    let image = ImageRef::parse(&format!("{registry}/{repository}:{tag}"));
    r.finish(ReleaseInputs {
        action,
        image,
        region,
        ecs,
        pre_deploy,
        dockerfile,
        build_context,
        build,
        credentials,
    })
}

/// Reads and checks what an operator needs to act on a service.
pub fn collect_service(
    source: &dyn InputSource,
    aws: &AwsSettings,
) -> Result<ServiceAccess, InputError> {
    let mut r = Reader::new(source);
    let access = r.service_access(aws, Requester::Operator);
    r.finish(access)
}

/// Reads and checks what deciding an approval gate needs.
pub fn collect_continue(
    source: &dyn InputSource,
    aws: &AwsSettings,
    requester: Requester<'_>,
) -> Result<ContinueInputs, InputError> {
    let mut r = Reader::new(source);
    let access = r.service_access(aws, requester);
    // Checked by the same parser: a value that passes parses.
    let action = r
        .optional(Input::HookAction, check_hook_action)
        .and_then(|v| HookAction::parse(&v))
        .unwrap_or(HookAction::Continue);
    let deployment = r.optional(Input::ServiceDeployment, check_service_deployment);
    r.finish(ContinueInputs {
        access,
        action,
        deployment,
    })
}

impl Reader<'_> {
    /// `DOCKER_BUILD_ARGS`, `DOCKER_BUILD_TARGET` and `DOCKER_BUILD_SECRETS`, with the
    /// values of the variables they name.
    fn build_inputs(&mut self) -> BuildInputs {
        let args = self
            .list(Input::BuildArgs, check_build_arg)
            .into_iter()
            .filter_map(|entry| match entry.split_once('=') {
                Some((name, value)) => Some((name.to_string(), SecretValue(value.to_string()))),
                None => self.named_variable(Input::BuildArgs, &entry),
            })
            .collect();
        let secrets = self
            .list(Input::BuildSecrets, check_variable_name)
            .into_iter()
            .filter_map(|name| self.named_variable(Input::BuildSecrets, &name))
            .collect();
        BuildInputs {
            args,
            target: self.optional(Input::BuildTarget, check_build_target),
            secrets,
        }
    }

    /// The value of the variable `name` that `input` lists; a problem if it is not set.
    fn named_variable(&mut self, input: Input, name: &str) -> Option<(String, SecretValue)> {
        match self.source.variable(name) {
            Some(value) => Some((name.to_string(), SecretValue(value))),
            None => {
                self.problems.push(format!(
                    "{} names `{name}`, which is not set",
                    self.source.name(input)
                ));
                None
            }
        }
    }

    fn service_access(&mut self, aws: &AwsSettings, requester: Requester<'_>) -> ServiceAccess {
        let target = self.ecs_target();
        let region = self.region(aws);
        let credentials = self.credentials(aws, requester);
        let registry = self.optional(Input::Registry, check_registry);
        let repository = self.optional(Input::Repository, check_repository);
        let repository = match (registry, repository) {
            (Some(registry), Some(repository)) => Some(format!("{registry}/{repository}")),
            _ => None,
        };
        ServiceAccess {
            target,
            region,
            credentials,
            repository,
        }
    }
}

/// Checks every release input that is given, as a release would, without requiring any:
/// what `doctor` reports before a release finds it.
pub fn check_given(source: &dyn InputSource) -> Vec<String> {
    let mut r = Reader::new(source);
    r.optional(Input::Registry, check_registry);
    r.optional(Input::Repository, check_repository);
    r.optional(Input::Region, check_region);
    r.list(Input::Service, check_ecs_name);
    r.optional(Input::Cluster, check_ecs_name);
    r.optional(Input::TaskDefinition, check_task_definition);
    r.list(Input::Container, check_container);
    r.optional(Input::RolloutTimeout, check_duration);
    r.optional(Input::Rollback, check_rollback);
    r.optional(Input::OnPauseHook, check_pause_mode);
    r.optional(Input::PreDeployCommand, check_pre_deploy_command);
    r.optional(Input::PreDeployTimeout, check_duration);
    r.optional(Input::Dockerfile, check_relative);
    r.optional(Input::BuildContext, check_relative);
    r.build_inputs();
    r.problems
}

/// Reads and checks the region alone.
pub fn region(source: &dyn InputSource, aws: &AwsSettings) -> Result<String, InputError> {
    let mut r = Reader::new(source);
    let region = r.region(aws);
    r.finish(region)
}

/// Reads and checks where AWS credentials come from, alone.
pub fn credentials(
    source: &dyn InputSource,
    aws: &AwsSettings,
    requester: Requester<'_>,
) -> Result<CredentialRequest, InputError> {
    let mut r = Reader::new(source);
    let credentials = r.credentials(aws, requester);
    r.finish(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SEED: &[(&str, &str)] = &[
        (
            "ECR_REGISTRY",
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com",
        ),
        ("ECR_REPOSITORY", "your-repo-name"),
        ("ECS_CLUSTER", "your-cluster-name"),
        ("ECS_SERVICE", "your-service-name"),
        ("TASK_DEFINITION", "your-task-definition"),
        ("AWS_DEFAULT_REGION", "ap-northeast-1"),
    ];

    fn run(
        vars: &[(&str, &str)],
        action: ImageAction,
        aws: &AwsSettings,
    ) -> Result<ReleaseInputs, InputError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let source = JobVariables::new(|k: &str| map.get(k).cloned(), aws);
        collect(
            action,
            "v1.0.0",
            &source,
            aws,
            Requester::Job {
                project_path: "g/p",
                job_id: 1,
            },
        )
    }

    #[test]
    fn the_seed_articles_variables_are_a_valid_release() {
        let inputs = run(SEED, ImageAction::Release, &AwsSettings::default()).unwrap();
        assert_eq!(
            inputs.image.to_string(),
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/your-repo-name:v1.0.0"
        );
        let [ecs] = inputs.ecs.as_slice() else {
            panic!("one service: {:?}", inputs.ecs)
        };
        assert_eq!(ecs.task_definition.as_deref(), Some("your-task-definition"));
        assert_eq!(
            (inputs.dockerfile.as_str(), inputs.build_context.as_str()),
            ("Dockerfile", ".")
        );
        assert_eq!(inputs.credentials, CredentialRequest::Host);
    }

    #[test]
    fn every_missing_input_is_named_in_one_message() {
        let vars: Vec<_> = SEED
            .iter()
            .copied()
            .filter(|(k, _)| *k != "ECS_SERVICE" && *k != "ECR_REPOSITORY")
            .collect();
        let err = run(&vars, ImageAction::Release, &AwsSettings::default()).unwrap_err();
        assert_eq!(
            err.problems,
            ["ECR_REPOSITORY is not set", "ECS_SERVICE is not set"]
        );
        let text = err.to_string();
        assert!(
            text.contains("ECR_REPOSITORY") && text.contains("ECS_SERVICE"),
            "{text}"
        );
    }

    #[test]
    fn push_needs_no_ecs_inputs() {
        let vars = &SEED[..2];
        let mut with_region = vars.to_vec();
        with_region.push(("AWS_REGION", "eu-west-1"));
        let inputs = run(&with_region, ImageAction::Push, &AwsSettings::default()).unwrap();
        assert_eq!(
            (inputs.ecs, inputs.region.as_str()),
            (Vec::new(), "eu-west-1")
        );
    }

    #[test]
    fn several_services_and_containers_are_comma_separated_lists() {
        let mut vars = SEED.to_vec();
        vars.retain(|(k, _)| *k != "ECS_SERVICE");
        vars.extend([
            ("ECS_SERVICE", "web, jobs,web"),
            ("ECS_CONTAINER", "app,worker"),
        ]);
        let inputs = run(&vars, ImageAction::Release, &AwsSettings::default()).unwrap();
        let services: Vec<&str> = inputs.ecs.iter().map(|t| t.service.as_str()).collect();
        assert_eq!(services, ["web", "jobs"]);
        assert!(inputs.ecs.iter().all(|t| t.containers == ["app", "worker"]));
        vars.push(("ECS_SERVICE", "web,bad name"));
        let err = run(&vars, ImageAction::Release, &AwsSettings::default()).unwrap_err();
        assert!(err.to_string().contains("ECS_SERVICE"), "{err}");
    }

    #[test]
    fn malformed_inputs_are_named() {
        let mut vars = SEED.to_vec();
        vars.push(("ECR_REGISTRY", "https://x.example/path"));
        vars.push(("DOCKERFILE", "../../etc/Dockerfile"));
        vars.push(("DOCKER_BUILD_CONTEXT", "/"));
        vars.push(("TASK_DEFINITION", "fam:latest"));
        let map: HashMap<_, _> = vars.into_iter().collect();
        let vars: Vec<_> = map.into_iter().collect();
        let err = run(&vars, ImageAction::Release, &AwsSettings::default()).unwrap_err();
        let text = err.problems.join("\n");
        for name in [
            "ECR_REGISTRY",
            "DOCKERFILE",
            "DOCKER_BUILD_CONTEXT",
            "TASK_DEFINITION",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
    }

    #[test]
    fn rollout_timeout_and_rollback() {
        let mut vars = SEED.to_vec();
        vars.extend([("ECS_ROLLOUT_TIMEOUT", "15m"), ("ECS_ROLLBACK", "never")]);
        let ecs = run(&vars, ImageAction::Release, &AwsSettings::default())
            .unwrap()
            .ecs
            .remove(0);
        assert_eq!(ecs.rollout_timeout, Some(Duration::from_secs(900)));
        assert_eq!(ecs.rollback, Some(RollbackMode::Never));
        let mut bad = SEED.to_vec();
        bad.extend([("ECS_ROLLOUT_TIMEOUT", "soon"), ("ECS_ROLLBACK", "maybe")]);
        let err = run(&bad, ImageAction::Release, &AwsSettings::default())
            .unwrap_err()
            .problems
            .join("\n");
        assert!(
            err.contains("ECS_ROLLOUT_TIMEOUT") && err.contains("ECS_ROLLBACK"),
            "{err}"
        );
        assert_eq!(parse_duration("600"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_duration("5w"), None);
    }

    #[test]
    fn credentials_oidc_keys_and_host_policy() {
        let mut vars = SEED.to_vec();
        vars.push(("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/deploy"));
        let err = run(&vars, ImageAction::Release, &AwsSettings::default()).unwrap_err();
        assert!(err.problems[0].contains("AWS_ID_TOKEN"), "{err}");
        vars.push(("AWS_ID_TOKEN", "eyJ.jwt"));
        let inputs = run(&vars, ImageAction::Release, &AwsSettings::default()).unwrap();
        assert!(
            matches!(inputs.credentials, CredentialRequest::WebIdentity { ref session_name, .. } if session_name == "gitlab-g-p-1")
        );

        let strict = AwsSettings {
            allow_host_credentials: false,
            ..AwsSettings::default()
        };
        let err = run(SEED, ImageAction::Release, &strict).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not let jobs use its own AWS credentials"),
            "{err}"
        );
        let mut keys = SEED.to_vec();
        keys.extend([
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        assert!(matches!(
            run(&keys, ImageAction::Release, &strict)
                .unwrap()
                .credentials,
            CredentialRequest::JobKeys { .. }
        ));
    }

    #[test]
    fn check_given_finds_what_a_release_would_refuse_and_requires_nothing() {
        let aws = AwsSettings::default();
        let empty = JobVariables::new(|_: &str| None, &aws);
        assert!(check_given(&empty).is_empty());
        let map: HashMap<&str, &str> = [
            ("DOCKERFILE", "../Dockerfile"),
            ("DOCKER_BUILD_ARGS", "NPM_TOKEN"),
            ("ECS_PRE_DEPLOY_TIMEOUT", "soon"),
        ]
        .into_iter()
        .collect();
        let given = JobVariables::new(|k: &str| map.get(k).map(|v| v.to_string()), &aws);
        let problems = check_given(&given);
        for input in ["DOCKERFILE", "DOCKER_BUILD_ARGS", "ECS_PRE_DEPLOY_TIMEOUT"] {
            assert!(
                problems.iter().any(|p| p.starts_with(input)),
                "{input}: {problems:?}"
            );
        }
    }
}
