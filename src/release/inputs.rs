//! The inputs of a release, read from the job's variables and checked all at once, so a
//! release job fails in `prepare` naming every missing or malformed variable.

use regex::Regex;

use std::time::Duration;

use crate::aws::{session_name, CredentialRequest};
use crate::settings::{AwsSettings, ReleaseAction, RollbackMode};

/// The ECS side of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsTarget {
    /// `ECS_CLUSTER`.
    pub cluster: String,
    /// `ECS_SERVICE`.
    pub service: String,
    /// `TASK_DEFINITION`: the family the service's task definition must belong to.
    pub task_definition: Option<String>,
    /// `ECS_CONTAINER`: the container whose image is replaced.
    pub container: Option<String>,
    /// `ECS_ROLLOUT_TIMEOUT`.
    pub rollout_timeout: Option<Duration>,
    /// `ECS_ROLLBACK`.
    pub rollback: Option<RollbackMode>,
}

/// Everything a release needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInputs {
    /// Release or push only.
    pub action: ReleaseAction,
    /// The version tag (also the image tag).
    pub tag: String,
    /// `ECR_REGISTRY`: registry host, e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
    pub registry: String,
    /// `ECR_REPOSITORY`.
    pub repository: String,
    /// `AWS_DEFAULT_REGION`, `AWS_REGION` or the settings' region.
    pub region: String,
    /// ECS target; `None` for the push action.
    pub ecs: Option<EcsTarget>,
    /// `DOCKERFILE`, relative to the project directory.
    pub dockerfile: String,
    /// `DOCKER_BUILD_CONTEXT`, relative to the project directory.
    pub build_context: String,
    /// Where AWS credentials come from.
    pub credentials: CredentialRequest,
}

impl ReleaseInputs {
    /// `registry/repository:tag`.
    pub fn image_ref(&self) -> String {
        format!("{}/{}:{}", self.registry, self.repository, self.tag)
    }

    /// `registry/repository`.
    pub fn image_repo(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// Release inputs that are missing or malformed, all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this release job cannot run: {}. Set them as CI/CD variables of the project or in the \
     job's `variables:`",
    .problems.join("; ")
)]
pub struct InputError {
    /// One entry per variable.
    pub problems: Vec<String>,
}

/// Job facts the inputs depend on besides variables.
pub struct JobFacts<'a> {
    /// `CI_PROJECT_PATH`, for the STS session name.
    pub project_path: &'a str,
    /// `CI_JOB_ID`.
    pub job_id: u64,
}

/// Reads and checks the inputs of a release of `tag`.
pub fn collect(
    action: ReleaseAction,
    tag: &str,
    var: impl Fn(&str) -> Option<String>,
    aws: &AwsSettings,
    job: JobFacts<'_>,
) -> Result<ReleaseInputs, InputError> {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let mut problems = Vec::new();
    let mut required = |name: &str, check: &dyn Fn(&str) -> Option<String>| -> String {
        match var(name) {
            None => {
                problems.push(format!("{name} is not set"));
                String::new()
            }
            Some(v) => {
                if let Some(why) = check(v.trim()) {
                    problems.push(format!("{name} {why}"));
                }
                v.trim().to_string()
            }
        }
    };

    let registry = required("ECR_REGISTRY", &check_registry);
    let repository = required("ECR_REPOSITORY", &check_repository);
    let ecs = match action {
        ReleaseAction::Push => None,
        ReleaseAction::Release => Some(EcsTarget {
            cluster: required("ECS_CLUSTER", &check_ecs_name),
            service: required("ECS_SERVICE", &check_ecs_name),
            task_definition: None,
            container: None,
            rollout_timeout: None,
            rollback: None,
        }),
    };
    let mut optional = |name: &str, check: &dyn Fn(&str) -> Option<String>| -> Option<String> {
        let v = var(name)?;
        if let Some(why) = check(v.trim()) {
            problems.push(format!("{name} {why}"));
        }
        Some(v.trim().to_string())
    };
    let task_definition = optional("TASK_DEFINITION", &check_task_definition);
    let container = optional("ECS_CONTAINER", &check_container);
    let rollout_timeout = optional("ECS_ROLLOUT_TIMEOUT", &|v| {
        parse_duration(v)
            .is_none()
            .then(|| "must be a duration such as 600, 90s, 15m or 1h".into())
    })
    .and_then(|v| parse_duration(&v));
    let rollback = optional("ECS_ROLLBACK", &|v| {
        RollbackMode::parse(v)
            .is_none()
            .then(|| "must be `auto` or `never`".into())
    })
    .and_then(|v| RollbackMode::parse(&v));
    let dockerfile = optional("DOCKERFILE", &check_relative).unwrap_or_else(|| "Dockerfile".into());
    let build_context =
        optional("DOCKER_BUILD_CONTEXT", &check_relative).unwrap_or_else(|| ".".into());
    let region = var("AWS_DEFAULT_REGION")
        .or_else(|| var("AWS_REGION"))
        .or_else(|| Some(aws.region.clone()).filter(|r| !r.is_empty()));
    let region = match region {
        None => {
            problems.push(
                "AWS_DEFAULT_REGION is not set (nor AWS_REGION, nor aws.region in the executor settings)".into(),
            );
            String::new()
        }
        Some(r) => {
            if !Regex::new(r"^[a-z]{2}(-[a-z]+)+-\d+$").is_ok_and(|re| re.is_match(r.trim())) {
                problems.push("AWS_DEFAULT_REGION must be a region name such as eu-west-1".into());
            }
            r.trim().to_string()
        }
    };
    let credentials = credentials(&var, aws, &job, &mut problems);

    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    Ok(ReleaseInputs {
        action,
        tag: tag.to_string(),
        registry,
        repository,
        region,
        ecs: ecs.map(|e| EcsTarget {
            task_definition,
            container,
            rollout_timeout,
            rollback,
            ..e
        }),
        dockerfile,
        build_context,
        credentials,
    })
}

fn credentials(
    var: &dyn Fn(&str) -> Option<String>,
    aws: &AwsSettings,
    job: &JobFacts<'_>,
    problems: &mut Vec<String>,
) -> CredentialRequest {
    if let Some(role_arn) = var("AWS_ROLE_ARN") {
        if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
            problems.push(
                "AWS_ROLE_ARN must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)".into(),
            );
        }
        return match var(&aws.id_token_variable) {
            Some(token) => CredentialRequest::WebIdentity {
                role_arn,
                token,
                session_name: session_name(job.project_path, job.job_id),
            },
            None => {
                problems.push(format!(
                    "{} is not set: AWS_ROLE_ARN needs a GitLab ID token, declare `id_tokens: {}: aud: sts.amazonaws.com` in the job",
                    aws.id_token_variable, aws.id_token_variable
                ));
                CredentialRequest::Host
            }
        };
    }
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => {
            return CredentialRequest::JobKeys {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }
        }
        (Some(_), None) => {
            problems.push("AWS_SECRET_ACCESS_KEY is not set but AWS_ACCESS_KEY_ID is".into())
        }
        (None, Some(_)) => {
            problems.push("AWS_ACCESS_KEY_ID is not set but AWS_SECRET_ACCESS_KEY is".into())
        }
        (None, None) => {}
    }
    if !aws.allow_host_credentials {
        problems.push(format!(
            "AWS_ROLE_ARN is not set, and this runner does not let jobs use its own AWS credentials: \
             set AWS_ROLE_ARN and an `id_tokens:` variable {}",
            aws.id_token_variable
        ));
    }
    CredentialRequest::Host
}

fn check_registry(v: &str) -> Option<String> {
    let ok = Regex::new(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$")
        .is_ok_and(|re| re.is_match(v));
    (!ok).then(|| "must be a registry host such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com (no scheme, no path)".into())
}

fn check_repository(v: &str) -> Option<String> {
    let ok = v.len() <= 256
        && Regex::new(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
            .is_ok_and(|re| re.is_match(v));
    (!ok).then(|| "must be an ECR repository name: lowercase letters, digits, `._-` and `/`".into())
}

fn check_ecs_name(v: &str) -> Option<String> {
    let ok = v.starts_with("arn:aws")
        || (v.len() <= 255
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    (!ok).then(|| "must be a name (letters, digits, `-`, `_`) or an ARN".into())
}

fn check_task_definition(v: &str) -> Option<String> {
    let family = v.split(':').next().unwrap_or(v);
    let ok = v.starts_with("arn:aws")
        || (check_ecs_name(family).is_none()
            && v.split_once(':')
                .is_none_or(|(_, rev)| rev.parse::<u32>().is_ok()));
    (!ok).then(|| "must be a task definition family, family:revision or ARN".into())
}

fn check_container(v: &str) -> Option<String> {
    check_ecs_name(v).map(|_| "must be a container name from the task definition".into())
}

/// `600`, `90s`, `15m`, `1h`: a positive duration.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (digits, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = digits.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// Build paths are relative to the project and may not leave it.
fn check_relative(v: &str) -> Option<String> {
    let escapes = v.starts_with('/') || v.split('/').any(|part| part == "..");
    escapes.then(|| "must be a path inside the project directory (no leading `/`, no `..`)".into())
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
        action: ReleaseAction,
        aws: &AwsSettings,
    ) -> Result<ReleaseInputs, InputError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        collect(
            action,
            "v1.0.0",
            |k| map.get(k).cloned(),
            aws,
            JobFacts {
                project_path: "g/p",
                job_id: 1,
            },
        )
    }

    #[test]
    fn the_seed_articles_variables_are_a_valid_release() {
        let inputs = run(SEED, ReleaseAction::Release, &AwsSettings::default()).unwrap();
        assert_eq!(
            inputs.image_ref(),
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/your-repo-name:v1.0.0"
        );
        let ecs = inputs.ecs.unwrap();
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
        let err = run(&vars, ReleaseAction::Release, &AwsSettings::default()).unwrap_err();
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
        let inputs = run(&with_region, ReleaseAction::Push, &AwsSettings::default()).unwrap();
        assert_eq!((inputs.ecs, inputs.region.as_str()), (None, "eu-west-1"));
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
        let err = run(&vars, ReleaseAction::Release, &AwsSettings::default()).unwrap_err();
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
        let ecs = run(&vars, ReleaseAction::Release, &AwsSettings::default())
            .unwrap()
            .ecs
            .unwrap();
        assert_eq!(ecs.rollout_timeout, Some(Duration::from_secs(900)));
        assert_eq!(ecs.rollback, Some(RollbackMode::Never));
        let mut bad = SEED.to_vec();
        bad.extend([("ECS_ROLLOUT_TIMEOUT", "soon"), ("ECS_ROLLBACK", "maybe")]);
        let err = run(&bad, ReleaseAction::Release, &AwsSettings::default())
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
        assert_eq!(parse_duration("5d"), None);
    }

    #[test]
    fn credentials_oidc_keys_and_host_policy() {
        let mut vars = SEED.to_vec();
        vars.push(("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/deploy"));
        let err = run(&vars, ReleaseAction::Release, &AwsSettings::default()).unwrap_err();
        assert!(err.problems[0].contains("AWS_ID_TOKEN"), "{err}");
        vars.push(("AWS_ID_TOKEN", "eyJ.jwt"));
        let inputs = run(&vars, ReleaseAction::Release, &AwsSettings::default()).unwrap();
        assert!(
            matches!(inputs.credentials, CredentialRequest::WebIdentity { ref session_name, .. } if session_name == "gitlab-g-p-1")
        );

        let strict = AwsSettings {
            allow_host_credentials: false,
            ..AwsSettings::default()
        };
        let err = run(SEED, ReleaseAction::Release, &strict).unwrap_err();
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
            run(&keys, ReleaseAction::Release, &strict)
                .unwrap()
                .credentials,
            CredentialRequest::JobKeys { .. }
        ));
    }
}
