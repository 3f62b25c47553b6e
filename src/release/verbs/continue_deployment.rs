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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ecs::fake::{FakeEcs, Scenario, HOOK};
    use crate::release::testing::{captured_log, never, shop};
    use aws_sdk_ecs::types::ServiceDeploymentStatus;

    const NEW: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop:2";

    /// A service whose deployment of `NEW` waits at its approval gate (from the second poll
    /// on), as a release job with ECS_ON_PAUSE_HOOK=succeed leaves it.
    async fn awaiting(scenario: Scenario) -> FakeEcs {
        let ecs = shop(scenario).with_service_deployments();
        ecs.update_service(NEW).await.unwrap();
        ecs.describe_service().await.unwrap();
        ecs
    }

    fn decide(action: HookAction, on_pause: PauseMode) -> ContinueRequest {
        ContinueRequest {
            action,
            deployment: None,
            deadline: Instant::now() + Duration::from_secs(600),
            poll: Duration::from_secs(5),
            on_pause,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn continuing_the_gate_completes_the_deployment() {
        let ecs = awaiting(Scenario::PauseAt(1)).await;
        let (log, out) = captured_log();
        let req = decide(HookAction::Continue, PauseMode::Wait);
        let outcome = continue_deployment(&ecs, &req, &log, &mut never()).await;
        assert_eq!(outcome.unwrap(), ContinueOutcome::Deployed(NEW.into()));
        assert_eq!(ecs.count("ContinueServiceDeployment"), 1);
        assert_eq!(
            ecs.service_deployment_status(),
            Some(ServiceDeploymentStatus::Successful)
        );
        assert_eq!(ecs.service_revision(), "shop:2");
        assert!(
            out.text().contains(&format!("(hooks {HOOK})")),
            "{}",
            out.text()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_back_at_the_gate_returns_the_service_to_its_previous_revision() {
        let ecs = awaiting(Scenario::PauseAt(1)).await;
        let (log, _) = captured_log();
        let req = decide(HookAction::Rollback, PauseMode::Wait);
        let outcome = continue_deployment(&ecs, &req, &log, &mut never()).await;
        assert!(
            matches!(&outcome, Ok(ContinueOutcome::RolledBack(why)) if why.contains("shop:1")),
            "{outcome:?}"
        );
        assert_eq!(ecs.service_revision(), "shop:1");
        assert_eq!(
            ecs.service_deployment_status(),
            Some(ServiceDeploymentStatus::RollbackSuccessful)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deployment_at_no_gate_is_not_touched() {
        let ecs = awaiting(Scenario::Stuck).await;
        let (log, _) = captured_log();
        let req = decide(HookAction::Continue, PauseMode::Wait);
        match continue_deployment(&ecs, &req, &log, &mut never()).await {
            Err(ReleaseError::NothingAwaiting { detail, .. }) => {
                assert!(detail.contains("IN_PROGRESS at SCALE_UP"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ecs.count("ContinueServiceDeployment"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_without_service_deployments_has_nothing_to_continue() {
        let ecs = shop(Scenario::Stuck);
        ecs.update_service(NEW).await.unwrap();
        let (log, _) = captured_log();
        let req = decide(HookAction::Continue, PauseMode::Wait);
        match continue_deployment(&ecs, &req, &log, &mut never()).await {
            Err(ReleaseError::NothingAwaiting { detail, .. }) => {
                assert!(detail.contains("reports no service deployment"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_while_following_leaves_the_decision_taken() {
        let ecs = awaiting(Scenario::PauseAt(1)).await;
        let (log, _) = captured_log();
        // The gate decided, then the job is cancelled before the deployment completes.
        let mut cancel: Cancel = crate::release::testing::cancel_after(Duration::from_secs(1));
        let req = decide(HookAction::Continue, PauseMode::Wait);
        match continue_deployment(&ecs, &req, &log, &mut cancel).await {
            Err(ReleaseError::RolloutFailed { reason, state }) => {
                assert!(reason.contains("the job was cancelled"), "{reason}");
                assert!(state.contains("ECS goes on with it"), "{state}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ecs.count("ContinueServiceDeployment"), 1);
    }
}
