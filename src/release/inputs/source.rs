//! Where a release's inputs come from: each input, the names requesters give it, and the
//! source a job's variables make.

use crate::settings::AwsSettings;

/// One input of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The ECR registry host.
    Registry,
    /// The ECR repository.
    Repository,
    /// The ECS cluster.
    Cluster,
    /// The ECS service.
    Service,
    /// The task definition family the service must run.
    TaskDefinition,
    /// The container whose image the release replaces.
    Container,
    /// The AWS region.
    Region,
    /// How long a rollout may take.
    RolloutTimeout,
    /// What to do when a rollout fails.
    Rollback,
    /// What to do at a PAUSE lifecycle hook.
    OnPauseHook,
    /// The command of the task run before any service is updated (migrations).
    PreDeployCommand,
    /// How long that task may take.
    PreDeployTimeout,
    /// The decision for an approval gate: continue or roll back.
    HookAction,
    /// The service deployment an approval is for.
    ServiceDeployment,
    /// The Dockerfile, relative to the project.
    Dockerfile,
    /// The build context, relative to the project.
    BuildContext,
    /// Build arguments: variable names (or `NAME=value`), comma-separated.
    BuildArgs,
    /// The Dockerfile stage to build.
    BuildTarget,
    /// Build secrets: variable names, comma-separated, for `RUN --mount=type=secret,id=NAME`.
    BuildSecrets,
    /// The IAM role to assume with an ID token.
    RoleArn,
    /// The GitLab ID token.
    IdToken,
    /// An access key id.
    AccessKeyId,
    /// Its secret.
    SecretAccessKey,
    /// A session token.
    SessionToken,
}

/// Where inputs are read from, and what the requester calls each of them.
pub trait InputSource {
    /// The input's value; `None` when not given.
    fn value(&self, input: Input) -> Option<String>;
    /// How the requester names the input: `ECR_REGISTRY` in a job, `--registry` on a
    /// command line.
    fn name(&self, input: Input) -> String;
    /// Where the requester sets inputs, for the end of an error.
    fn advice(&self) -> &'static str;
    /// Any variable by name (the values of build arguments and secrets).
    fn variable(&self, name: &str) -> Option<String>;
}

/// A job's variables, under the names of the seed article's pipeline.
pub struct JobVariables<'a, F> {
    lookup: F,
    aws: &'a AwsSettings,
}

impl<'a, F: Fn(&str) -> Option<String>> JobVariables<'a, F> {
    /// Variables read through `lookup`; the ID token's name comes from settings.
    pub fn new(lookup: F, aws: &'a AwsSettings) -> Self {
        JobVariables { lookup, aws }
    }
}

impl<F: Fn(&str) -> Option<String>> InputSource for JobVariables<'_, F> {
    fn variable(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn value(&self, input: Input) -> Option<String> {
        let get = |name: &str| (self.lookup)(name).filter(|v| !v.trim().is_empty());
        match input {
            Input::Region => get("AWS_DEFAULT_REGION").or_else(|| get("AWS_REGION")),
            other => get(&self.name(other)),
        }
    }

    fn name(&self, input: Input) -> String {
        match input {
            Input::Registry => "ECR_REGISTRY",
            Input::Repository => "ECR_REPOSITORY",
            Input::Cluster => "ECS_CLUSTER",
            Input::Service => "ECS_SERVICE",
            Input::TaskDefinition => "TASK_DEFINITION",
            Input::Container => "ECS_CONTAINER",
            Input::Region => "AWS_DEFAULT_REGION",
            Input::RolloutTimeout => "ECS_ROLLOUT_TIMEOUT",
            Input::Rollback => "ECS_ROLLBACK",
            Input::OnPauseHook => "ECS_ON_PAUSE_HOOK",
            Input::PreDeployCommand => "ECS_PRE_DEPLOY_COMMAND",
            Input::PreDeployTimeout => "ECS_PRE_DEPLOY_TIMEOUT",
            Input::HookAction => "ECS_HOOK_ACTION",
            Input::ServiceDeployment => "ECS_RELEASE_DEPLOYMENT_ARN",
            Input::Dockerfile => "DOCKERFILE",
            Input::BuildContext => "DOCKER_BUILD_CONTEXT",
            Input::BuildArgs => "DOCKER_BUILD_ARGS",
            Input::BuildTarget => "DOCKER_BUILD_TARGET",
            Input::BuildSecrets => "DOCKER_BUILD_SECRETS",
            Input::RoleArn => "AWS_ROLE_ARN",
            Input::IdToken => return self.aws.id_token_variable.clone(),
            Input::AccessKeyId => "AWS_ACCESS_KEY_ID",
            Input::SecretAccessKey => "AWS_SECRET_ACCESS_KEY",
            Input::SessionToken => "AWS_SESSION_TOKEN",
        }
        .to_string()
    }

    fn advice(&self) -> &'static str {
        "Set them as CI/CD variables of the project or in the job's `variables:`"
    }
}
