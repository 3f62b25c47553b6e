//! Operator commands on the same binary, outside GitLab: `release`, `plan`, `rollback`,
//! `doctor`. Inputs are the release job's variables, given as flags or environment.

mod doctor;
mod plan;
mod release;
mod rollback;

pub use doctor::doctor;
pub use plan::plan;
pub use release::release;
pub use rollback::rollback;

use std::collections::BTreeMap;

use tokio::signal::unix::{signal, SignalKind};

use crate::docker::Cancel;
use crate::joblog::JobLog;
use crate::protocol::ALWAYS_SECRET;
use crate::release::ReleaseError;

/// The release inputs an operator gives; each maps to the job variable of the same meaning.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `ECR_REGISTRY`.
    pub registry: Option<String>,
    /// `ECR_REPOSITORY`.
    pub repository: Option<String>,
    /// `ECS_CLUSTER`.
    pub cluster: Option<String>,
    /// `ECS_SERVICE`.
    pub service: Option<String>,
    /// `TASK_DEFINITION`.
    pub task_definition: Option<String>,
    /// `ECS_CONTAINER`.
    pub container: Option<String>,
    /// `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// The version tag (`CI_COMMIT_TAG`).
    pub tag: Option<String>,
}

impl Target {
    /// The inputs as job variables, plus the credential variables of this process's
    /// environment (`AWS_ROLE_ARN`, an ID token, keys), which the release reads the same way.
    pub fn variables(&self) -> BTreeMap<String, String> {
        let mut vars: BTreeMap<String, String> = [
            "AWS_ROLE_ARN",
            "AWS_ID_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "ECS_ROLLOUT_TIMEOUT",
            "ECS_ROLLBACK",
            "DOCKERFILE",
            "DOCKER_BUILD_CONTEXT",
        ]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
        for (key, value) in [
            ("ECR_REGISTRY", &self.registry),
            ("ECR_REPOSITORY", &self.repository),
            ("ECS_CLUSTER", &self.cluster),
            ("ECS_SERVICE", &self.service),
            ("TASK_DEFINITION", &self.task_definition),
            ("ECS_CONTAINER", &self.container),
            ("AWS_DEFAULT_REGION", &self.region),
            ("CI_COMMIT_TAG", &self.tag),
        ] {
            if let Some(v) = value {
                vars.insert(key.to_string(), v.clone());
            }
        }
        vars
    }
}

/// A job-log-style output on stdout that masks the credentials among `vars`.
fn operator_log(vars: &BTreeMap<String, String>) -> JobLog {
    JobLog::stdout(
        ALWAYS_SECRET
            .iter()
            .filter_map(|k| vars.get(*k).cloned())
            .collect::<Vec<_>>(),
    )
}

/// Completes on SIGINT or SIGTERM.
fn interrupt() -> Result<Cancel, ReleaseError> {
    let install = |kind| {
        signal(kind)
            .map_err(|e| ReleaseError::Refused(format!("cannot install a signal handler: {e}")))
    };
    let (mut int, mut term) = (
        install(SignalKind::interrupt())?,
        install(SignalKind::terminate())?,
    );
    Ok(Box::pin(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }))
}
