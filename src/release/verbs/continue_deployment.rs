//! `continue`, deciding an approval gate: a deployment waiting at PAUSE lifecycle hooks is continued
//! (or rolled back) with `ContinueServiceDeployment`, then followed to its end or its next
//! gate. Used by the operator's `continue` command and by jobs in a `continue` stage.

use std::time::Duration;

use tokio::time::Instant;

use crate::clock;
use crate::docker::Cancel;
use crate::joblog::JobLog;
use crate::release::ecs::{short_td, Ecs, HookAction};
use crate::release::inputs::ContinueInputs;
use crate::release::progress::Observer;
use crate::release::strategy::Strategy;
use crate::release::verdict::{awaiting_hooks, Pause, Verdict};
use crate::release::watch::{watch, Watch, WatchEnd};
use crate::release::{App, ReleaseError};
use crate::settings::{PauseMode, Settings};

/// What to decide and how to follow it.
#[derive(Debug, Clone)]
pub struct ContinueRequest {
    /// Continue or roll back.
    pub action: HookAction,
    /// The service deployment; `None`: the service's current one.
    pub deployment: Option<String>,
    /// When to stop following.
    pub deadline: Instant,
    /// Time between polls.
    pub poll: Duration,
    /// Whether to stop at the next approval gate.
    pub on_pause: PauseMode,
}

/// Where the decision left the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContinueOutcome {
    /// Continued and completed: the service runs this revision.
    Deployed(String),
    /// Continued to the next approval gate.
    AwaitingApproval(Pause),
    /// Rolled back, as asked.
    RolledBack(String),
}

/// Decides the approval gate of `inputs`' service, following the deployment until
/// `job_deadline` allows.
pub async fn execute(
    app: &App,
    settings: &Settings,
    inputs: &ContinueInputs,
    job_deadline: Option<Instant>,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<ContinueOutcome, ReleaseError> {
    let access = &inputs.access;
    let ecs = app.service(&access.target.cluster, &access.target.service);
    let req = ContinueRequest {
        action: inputs.action,
        deployment: inputs.deployment.clone(),
        deadline: crate::release::deadline::rollout_deadline(
            settings,
            &access.target,
            job_deadline,
            log,
        )
        .at,
        poll: settings.ecs.poll_interval,
        on_pause: access
            .target
            .on_pause_hook
            .unwrap_or(settings.ecs.on_pause_hook),
    };
    continue_deployment(&ecs, &req, log, cancel).await
}

/// Continues (or rolls back) the deployment waiting at its approval gate and follows it.
pub async fn continue_deployment(
    ecs: &impl Ecs,
    req: &ContinueRequest,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<ContinueOutcome, ReleaseError> {
    let service = ecs.describe_service().await?;
    let arn = req
        .deployment
        .clone()
        .or_else(|| {
            service
                .current_service_deployment()
                .filter(|a| !a.is_empty())
                .map(str::to_string)
        })
        .ok_or_else(|| ReleaseError::NothingAwaiting {
            service: ecs.service().to_string(),
            detail: "it reports no service deployment (the service deployments API)".into(),
        })?;
    let sd = ecs.service_deployment(&arn).await?;
    let pause = awaiting_hooks(&sd).ok_or_else(|| ReleaseError::NothingAwaiting {
        service: ecs.service().to_string(),
        detail: format!(
            "service deployment {arn} is {} at {}, with no PAUSE hook awaiting action",
            sd.status().map(|s| s.as_str()).unwrap_or("?"),
            sd.lifecycle_stage().map(|s| s.as_str()).unwrap_or("?")
        ),
    })?;
    let verb = match req.action {
        HookAction::Continue => "Continuing",
        HookAction::Rollback => "Rolling back",
    };
    log.step(&format!(
        "{verb} service deployment {arn} at {} (hooks {})",
        pause.stage,
        pause.hook_ids.join(", ")
    ));
    for hook in &pause.hook_ids {
        ecs.continue_service_deployment(&arn, hook, req.action)
            .await?;
    }
    let target = service.task_definition().unwrap_or_default().to_string();
    let deployment_id = service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id())
        .unwrap_or_default()
        .to_string();
    let strategy = Strategy::of(service.deployment_configuration());
    let spec = Watch {
        deployment: &deployment_id,
        service_deployment: Some(&arn),
        arn: &target,
        strategy: &strategy,
        deadline: req.deadline,
        poll: req.poll,
        stop_at_pause: req.on_pause == PauseMode::Succeed,
    };
    let mut observer = Observer::new(clock::epoch_secs() - 5);
    let end = watch(ecs, &spec, log, Some(cancel), &mut observer).await?;
    match (req.action, end) {
        (HookAction::Continue, WatchEnd::Verdict(Verdict::Completed)) => {
            log.step(&format!(
                "Service deployment {arn} completed: the service runs {}",
                short_td(&target)
            ));
            Ok(ContinueOutcome::Deployed(target))
        }
        (HookAction::Continue, WatchEnd::Verdict(Verdict::AwaitingApproval(next))) => {
            log.step(&format!(
                "The deployment waits for approval again at {} (hooks {})",
                next.stage,
                next.hook_ids.join(", ")
            ));
            Ok(ContinueOutcome::AwaitingApproval(next))
        }
        (HookAction::Rollback, WatchEnd::Verdict(Verdict::RolledBack(reason))) => {
            log.step(&format!(
                "Service deployment {arn} was rolled back: {reason}"
            ));
            Ok(ContinueOutcome::RolledBack(reason))
        }
        (_, WatchEnd::Verdict(Verdict::RolledBack(reason))) => {
            Err(ReleaseError::RolledBack { reason })
        }
        (
            _,
            WatchEnd::Verdict(
                Verdict::Failed(reason)
                | Verdict::Vanished(reason)
                | Verdict::RollbackFailed(reason),
            ),
        ) => Err(ReleaseError::RolloutFailed {
            reason,
            state: "check the service in the ECS console".into(),
        }),
        (_, other) => Err(ReleaseError::RolloutFailed {
            reason: format!("service deployment {arn} did not finish while followed ({other})"),
            state: "ECS goes on with it; follow it in the ECS console".into(),
        }),
    }
}
