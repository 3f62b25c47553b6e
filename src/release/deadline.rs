//! When a rollout must be over, and what set that limit, so a timeout names both.

use std::fmt;
use std::time::Duration;

use super::inputs::EcsTarget;
use crate::joblog::JobLog;
use crate::settings::Settings;

/// Margin kept before the job's own timeout so a failed rollout can still start its
/// rollback and report.
const JOB_TIMEOUT_MARGIN: Duration = Duration::from_secs(60);

/// When a rollout must be over and what set that limit, so a timeout names both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutDeadline {
    /// The instant.
    pub at: tokio::time::Instant,
    /// The time the rollout was given.
    pub limit: Duration,
    /// Where that limit came from.
    pub set_by: LimitSource,
}

/// Where a rollout's time limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// `ECS_ROLLOUT_TIMEOUT`.
    Variable,
    /// `ecs.rollout_timeout_minutes` in the executor settings.
    Setting,
    /// The job's own timeout, less the margin to roll back and report.
    JobTimeout,
}

impl RolloutDeadline {
    /// A deadline `limit` from now.
    pub fn after(limit: Duration, set_by: LimitSource) -> Self {
        RolloutDeadline {
            at: tokio::time::Instant::now() + limit,
            limit,
            set_by,
        }
    }
}

impl fmt::Display for RolloutDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.limit.as_secs();
        let limit = match secs % 60 {
            0 => format!("{} min", secs / 60),
            _ => format!("{secs} s"),
        };
        match self.set_by {
            LimitSource::Variable => {
                write!(f, "the rollout timeout of {limit} (ECS_ROLLOUT_TIMEOUT)")
            }
            LimitSource::Setting => write!(
                f,
                "the rollout timeout of {limit} (ecs.rollout_timeout_minutes in the executor \
                 settings; a job can raise it with ECS_ROLLOUT_TIMEOUT)"
            ),
            LimitSource::JobTimeout => write!(
                f,
                "the {limit} the job's timeout left for the rollout (raise the job's timeout)"
            ),
        }
    }
}

/// When a rollout of `target` must be over: its timeout, capped by the job's time left
/// (minus a margin to roll back and report).
pub(crate) fn rollout_deadline(
    settings: &Settings,
    target: &EcsTarget,
    job_deadline: Option<tokio::time::Instant>,
    log: &JobLog,
) -> RolloutDeadline {
    let now = tokio::time::Instant::now();
    let (wanted, set_by) = match target.rollout_timeout {
        Some(t) => (t, LimitSource::Variable),
        None => (settings.ecs.rollout_timeout, LimitSource::Setting),
    };
    let left = job_deadline.map(|end| {
        end.saturating_duration_since(now)
            .saturating_sub(JOB_TIMEOUT_MARGIN)
    });
    match left {
        Some(left) if left < wanted => {
            log.info(&format!(
                "Rollout deadline: {} s (the job's timeout leaves no more; wanted {} s)",
                left.as_secs(),
                wanted.as_secs()
            ));
            RolloutDeadline::after(left, LimitSource::JobTimeout)
        }
        _ => RolloutDeadline::after(wanted, set_by),
    }
}
