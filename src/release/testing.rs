//! What the release's unit tests share: a service shaped like a user's (a log-router
//! sidecar beside the app container), a release request for it, a job log that keeps its
//! lines, and cancels that never fire or fire after a while.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::deploy::{DeployRequest, FamilyCheck};
use super::ecs::fake::{FakeEcs, Scenario};
use super::inputs::EcsTarget;
use super::{taskdef, LimitSource, RolloutDeadline};
use crate::docker::Cancel;
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::settings::{PauseMode, RollbackMode};

/// The release's ECR repository.
pub(crate) const REPO: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop";

/// Service `web` of cluster `prod`, on revision `shop:1`: a Fluent Bit log router and the
/// app at `v1.0.0`.
pub(crate) fn shop(scenario: Scenario) -> FakeEcs {
    FakeEcs::new(
        "shop",
        &[
            (
                "log-router",
                "public.ecr.aws/aws-observability/aws-for-fluent-bit:2",
            ),
            ("app", &format!("{REPO}:v1.0.0")),
        ],
        scenario,
    )
}

/// A release of `REPO:tag` to [`shop`]'s service, whose rollout may take `rollout`.
pub(crate) fn request(tag: &str, rollout: Duration) -> DeployRequest {
    DeployRequest {
        target: EcsTarget {
            cluster: "prod".into(),
            service: "web".into(),
            task_definition: Some("shop".into()),
            ..EcsTarget::default()
        },
        family_check: FamilyCheck::Required,
        image: ImageRef::parse(&format!("{REPO}:{tag}")),
        trace_tags: taskdef::traceability_tags(&[("gitlab:tag", tag)]),
        deadline: RolloutDeadline::after(rollout, LimitSource::Setting),
        poll: Duration::from_secs(5),
        rollback: RollbackMode::Auto,
        on_pause: PauseMode::Wait,
        wait_for_others: Duration::from_secs(60),
        rollback_timeout: Duration::from_secs(60),
    }
}

/// What a job log wrote.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A job log and what it wrote.
pub(crate) fn captured_log() -> (JobLog, Captured) {
    let out = Captured::default();
    (
        JobLog::new(Box::new(out.clone()), Vec::<String>::new()),
        out,
    )
}

/// A cancel that never fires.
pub(crate) fn never() -> Cancel {
    Box::pin(std::future::pending())
}

/// A cancel that fires after `after` (of the test's paused clock).
pub(crate) fn cancel_after(after: Duration) -> Cancel {
    Box::pin(tokio::time::sleep(after))
}
