//! Following one deployment to its end: poll with jitter, print what is new, judge our
//! deployment, stop at the deadline or on cancel.

use std::time::Duration;

use tokio::time::Instant;

use super::ecs::Ecs;
use super::progress::Observer;
use super::verdict::{assess, Verdict};
use super::ReleaseError;
use crate::clock;
use crate::docker::Cancel;
use crate::joblog::JobLog;

/// A quiet rollout still says something this often.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// The deployment to follow.
pub(crate) struct Watch<'a> {
    /// The deployment's id (`ecs-svc/…`).
    pub deployment: &'a str,
    /// The task definition it rolls out.
    pub arn: &'a str,
    /// When to give up.
    pub deadline: Instant,
    /// Time between polls (jittered).
    pub poll: Duration,
}

/// How a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEnd {
    /// The deployment reached a final verdict.
    Verdict(Verdict),
    /// The deadline passed first.
    Deadline,
    /// The job was cancelled first.
    Cancelled,
}

/// Follows `watch.deployment` until it is judged, the deadline passes or `cancel` fires.
pub(crate) async fn watch(
    ecs: &impl Ecs,
    watch: &Watch<'_>,
    log: &JobLog,
    mut cancel: Option<&mut Cancel>,
    observer: &mut Observer,
) -> Result<WatchEnd, ReleaseError> {
    let mut last_news = Instant::now();
    let mut stopped_tasks_unavailable = false;
    loop {
        let pause = clock::jittered(watch.poll)
            .min(watch.deadline.saturating_duration_since(Instant::now()));
        match cancel.as_mut() {
            Some(c) => tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = &mut **c => return Ok(WatchEnd::Cancelled),
            },
            None => tokio::time::sleep(pause).await,
        }
        let service = ecs.describe_service().await?;
        let mut news = observer.new_events(&service);
        news.extend(observer.deployment_changes(&service));
        let ours = service
            .deployments()
            .iter()
            .find(|d| d.id() == Some(watch.deployment));
        if ours.is_some_and(|d| d.failed_tasks() > 0) {
            match ecs.stopped_tasks(watch.deployment).await {
                Ok(tasks) => news.extend(observer.stopped_tasks(&tasks)),
                // Stopped-task reasons help but are not needed to judge the rollout.
                Err(e) if !stopped_tasks_unavailable => {
                    stopped_tasks_unavailable = true;
                    log.warn(&format!("cannot show stopped tasks: {e}"));
                }
                Err(_) => {}
            }
        }
        if news.is_empty() && last_news.elapsed() >= HEARTBEAT {
            news.push(format!(
                "still rolling out {}; {} s left before the deadline",
                watch.deployment,
                watch
                    .deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs()
            ));
        }
        if !news.is_empty() {
            last_news = Instant::now();
        }
        for line in news {
            log.info(&line);
        }
        let verdict = assess(&service, watch.deployment, watch.arn);
        if verdict.is_final() {
            return Ok(WatchEnd::Verdict(verdict));
        }
        if Instant::now() >= watch.deadline {
            return Ok(WatchEnd::Deadline);
        }
    }
}
