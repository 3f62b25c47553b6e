//! `[release]`, `[aws]` and `[ecs]`: when a job becomes a native release, where its AWS
//! credentials come from, and how rollouts are followed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{minutes, seconds, Pattern};

/// What a release stage does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseAction {
    /// Build and push the image, register a task definition, roll it out on ECS.
    Release,
    /// Build and push the image only (a build-stage job).
    Push,
    /// Decide the approval gate (PAUSE lifecycle hooks) the service's deployment waits at:
    /// `ContinueServiceDeployment`, then follow it (a `when: manual` job after a release that
    /// ended awaiting approval).
    Continue,
}

/// What the release settings say about one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagVerdict {
    /// An immutable version tag: it may be released.
    Releasable,
    /// The tag does not match `release.tag_pattern`.
    NotAVersion,
    /// The tag is one of `release.mutable_tags`.
    Mutable,
}

/// When a job becomes a native release.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseSettings {
    /// Regular expression a tag must match to be released.
    pub tag_pattern: Pattern,
    /// Job stage → action; jobs in other stages are never releases.
    pub stages: BTreeMap<String, ReleaseAction>,
    /// Tags refused for release even if `tag_pattern` matches them.
    pub mutable_tags: Vec<String>,
    /// Register the image as `registry/repo:tag@sha256:…` (the digest pushed or found), so
    /// the revision names exactly one image.
    pub pin_digest: bool,
    /// Release jobs run only for refs GitLab protects (as the job payload says).
    pub require_protected_ref: bool,
    /// What each project may release with the runner host's own AWS credentials; a project
    /// no grant names releases nothing with them.
    pub grants: Vec<Grant>,
    /// BuildKit frontends a Dockerfile may ask for with `# syntax=` (doublestar patterns of
    /// image names without tag).
    pub dockerfile_frontends: Vec<String>,
}

/// What projects matching `projects` may release with the runner host's AWS credentials.
/// Every list holds doublestar patterns (`group/**`, `app-*`); an empty list grants
/// nothing of its kind, `["*"]` (`["**"]` for paths) anything.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Grant {
    /// Project paths (`group/project`) this grant is for.
    pub projects: Vec<String>,
    /// Registry hosts (`123456789012.dkr.ecr.eu-west-1.amazonaws.com`) they may push to.
    pub registries: Vec<String>,
    /// Repositories in those registries (`group/app`).
    pub repositories: Vec<String>,
    /// ECS clusters they may deploy to.
    pub clusters: Vec<String>,
    /// ECS services in those clusters.
    pub services: Vec<String>,
    /// Task definition families the services may run.
    pub task_families: Vec<String>,
    /// IAM roles (task and execution role ARNs) the task definitions may carry.
    pub roles: Vec<String>,
}

impl Default for ReleaseSettings {
    fn default() -> Self {
        ReleaseSettings {
            tag_pattern: Pattern::new(r"^v\d+\.\d+\.\d+$").unwrap_or_else(|e| unreachable!("{e}")),
            stages: BTreeMap::from([("deploy".to_string(), ReleaseAction::Release)]),
            mutable_tags: [
                "latest", "stable", "test", "dev", "edge", "nightly", "main", "master",
            ]
            .map(String::from)
            .to_vec(),
            pin_digest: false,
            require_protected_ref: true,
            grants: Vec::new(),
            dockerfile_frontends: vec![
                "docker/dockerfile".into(),
                "docker.io/docker/dockerfile".into(),
            ],
        }
    }
}

impl ReleaseSettings {
    /// Whether `tag` may be released. A tag the pattern does not match is not a version (the
    /// job runs as written); `mutable_tags` refuses the moving tags a loosened pattern would
    /// otherwise release.
    pub fn judge_tag(&self, tag: &str) -> TagVerdict {
        if !self.tag_pattern.is_match(tag) {
            TagVerdict::NotAVersion
        } else if self
            .mutable_tags
            .iter()
            .any(|m| m.eq_ignore_ascii_case(tag))
        {
            TagVerdict::Mutable
        } else {
            TagVerdict::Releasable
        }
    }
}

/// What a release does when its deployment waits at a PAUSE lifecycle hook (an approval
/// gate, which may wait for days).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PauseMode {
    /// Keep following the deployment, up to the rollout deadline.
    Wait,
    /// End the job successfully in an "awaiting approval" state; the deployment ARN and
    /// hook ids go to `ecs-release.env` for a later `continue`.
    Succeed,
}

impl PauseMode {
    /// Parses `ECS_ON_PAUSE_HOOK`.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "wait" => Some(PauseMode::Wait),
            "succeed" => Some(PauseMode::Succeed),
            _ => None,
        }
    }
}

/// What to do when a rollout fails or runs out of time.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RollbackMode {
    /// Return the service to the revision it ran before the release (unless ECS already did).
    Auto,
    /// Leave the service as it is.
    Never,
}

impl RollbackMode {
    /// Parses `ECS_ROLLBACK`.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(RollbackMode::Auto),
            "never" => Some(RollbackMode::Never),
            _ => None,
        }
    }
}

/// AWS credentials and region.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Region when the job sets neither `AWS_DEFAULT_REGION` nor `AWS_REGION`.
    pub region: String,
    /// Whether jobs without their own credentials may use the runner host's.
    pub allow_host_credentials: bool,
    /// The job variable holding the GitLab ID token (`id_tokens:`) for OIDC.
    pub id_token_variable: String,
    /// Registries besides the one `GetAuthorizationToken` names for the credentials that
    /// may receive the ECR token (a registry mirror in front of ECR).
    pub ecr_token_registries: Vec<String>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: String::new(),
            allow_host_credentials: true,
            id_token_variable: "AWS_ID_TOKEN".into(),
            ecr_token_registries: Vec::new(),
        }
    }
}

impl AwsSettings {
    /// The region settings give, if any.
    pub fn default_region(&self) -> Option<&str> {
        Some(self.region.as_str()).filter(|r| !r.is_empty())
    }
}

/// ECS rollouts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EcsSettings {
    /// How long a rollout may take before it counts as failed (capped by the job's timeout).
    #[serde(rename = "rollout_timeout_minutes", with = "minutes")]
    pub rollout_timeout: Duration,
    /// Time between polls (±20 % jitter).
    #[serde(rename = "poll_interval_seconds", with = "seconds")]
    pub poll_interval: Duration,
    /// Rollback on failure: `auto` or `never` (a job's `ECS_ROLLBACK` overrides it).
    pub rollback: RollbackMode,
    /// How long to wait for another deployment of the service to finish before ours.
    #[serde(rename = "wait_for_other_deployments_minutes", with = "minutes")]
    pub wait_for_other_deployments: Duration,
    /// How long to follow a rollback before reporting the service's state.
    #[serde(rename = "rollback_timeout_minutes", with = "minutes")]
    pub rollback_timeout: Duration,
    /// At a PAUSE lifecycle hook: `wait` or `succeed` (a job's `ECS_ON_PAUSE_HOOK` overrides it).
    pub on_pause_hook: PauseMode,
}

impl Default for EcsSettings {
    fn default() -> Self {
        EcsSettings {
            rollout_timeout: Duration::from_secs(30 * 60),
            poll_interval: Duration::from_secs(5),
            rollback: RollbackMode::Auto,
            wait_for_other_deployments: Duration::from_secs(10 * 60),
            rollback_timeout: Duration::from_secs(10 * 60),
            on_pause_hook: PauseMode::Wait,
        }
    }
}

/// Every problem of the release-side settings, each naming its key.
pub(super) fn problems(
    release: &ReleaseSettings,
    aws: &AwsSettings,
    ecs: &EcsSettings,
) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    for (index, grant) in release.grants.iter().enumerate() {
        if grant.projects.is_empty() {
            problems.push((
                "release.grants",
                format!(
                    "entry {} names no `projects`: it would grant nothing",
                    index + 1
                ),
            ));
        }
    }
    if ecs.poll_interval.is_zero() {
        problems.push((
            "ecs.poll_interval_seconds",
            "must be at least 1".to_string(),
        ));
    }
    if ecs.rollout_timeout.is_zero() {
        problems.push((
            "ecs.rollout_timeout_minutes",
            "must be at least 1".to_string(),
        ));
    }
    let name = &aws.id_token_variable;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        problems.push((
            "aws.id_token_variable",
            "must be a CI variable name".to_string(),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_a_version_only_if_the_pattern_matches_and_never_a_mutable_one() {
        let s = ReleaseSettings::default();
        assert_eq!(s.judge_tag("v1.2.3"), TagVerdict::Releasable);
        assert_eq!(s.judge_tag("v1.2"), TagVerdict::NotAVersion);
        assert_eq!(s.judge_tag("LATEST"), TagVerdict::NotAVersion);
        let loose = ReleaseSettings {
            tag_pattern: Pattern::new(".*").unwrap(),
            ..ReleaseSettings::default()
        };
        assert_eq!(loose.judge_tag("stable"), TagVerdict::Mutable);
        assert_eq!(loose.judge_tag("LATEST"), TagVerdict::Mutable);
        assert_eq!(loose.judge_tag("release-2024"), TagVerdict::Releasable);
    }
}
