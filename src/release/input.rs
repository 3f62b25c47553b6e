//! The inputs of a release, each as one value, and the job variable that gives it: the
//! words errors deep in a release use, unless the adapter words them its own way.

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

impl Input {
    /// The job variable that gives the input: the executor's own vocabulary, in which errors
    /// deep in a release name it unless the requester words them otherwise. (A job's ID
    /// token variable is the setting `aws.id_token_variable`; this is its default.)
    pub fn job_variable(self) -> &'static str {
        match self {
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
            Input::IdToken => "AWS_ID_TOKEN",
            Input::AccessKeyId => "AWS_ACCESS_KEY_ID",
            Input::SecretAccessKey => "AWS_SECRET_ACCESS_KEY",
            Input::SessionToken => "AWS_SESSION_TOKEN",
        }
    }
}

/// As a job names it.
impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.job_variable())
    }
}
