//! Following one deployment to its end: poll with jitter, print what is new, judge our
//! deployment, stop at the deadline, on cancel or (if asked) at an approval gate. A service
//! deployment is followed through the service deployments API whatever the strategy; an
//! endpoint without that API through `DescribeServices`' deployments.

use std::time::Duration;

use tokio::time::Instant;

use super::ecs::Ecs;
use super::progress::Observer;
use super::strategy::Strategy;
use super::verdict::{assess, assess_service_deployment, Verdict};
use super::ReleaseError;
use crate::clock;
use crate::docker::Cancel;
use crate::joblog::JobLog;

/// A quiet rollout still says something this often.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// The deployment to follow.
pub(crate) struct Watch<'a> {
    /// The deployment's id (`ecs-svc/…`), which its tasks are started by.
    pub deployment: &'a str,
    /// Its service deployment ARN, where the service deployments API reports it.
    pub service_deployment: Option<&'a str>,
    /// The task definition it rolls out.
    pub arn: &'a str,
    /// How the service deploys (for the bake countdown).
    pub strategy: &'a Strategy,
    /// When to give up.
    pub deadline: Instant,
    /// Time between polls (jittered).
    pub poll: Duration,
    /// Return as soon as the deployment waits at an approval gate.
    pub stop_at_pause: bool,
}

/// How a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEnd {
    /// The deployment reached a final verdict (or an approval gate, if asked to stop there).
    Verdict(Verdict),
    /// The deadline passed first; the last verdict seen.
    Deadline(Verdict),
    /// The job was cancelled first.
    Cancelled,
}

/// As the job log says it.
impl std::fmt::Display for WatchEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchEnd::Verdict(verdict) => write!(f, "{verdict}"),
            WatchEnd::Deadline(verdict) => write!(f, "the deadline passed: {verdict}"),
            WatchEnd::Cancelled => f.write_str("the job was cancelled"),
        }
    }
}

/// Follows `watch`'s deployment until it is judged, the deadline passes or `cancel` fires.
pub(crate) async fn watch(
    ecs: &impl Ecs,
    watch: &Watch<'_>,
    log: &JobLog,
    mut cancel: Option<&mut Cancel>,
    observer: &mut Observer,
) -> Result<WatchEnd, ReleaseError> {
    let started = Instant::now();
    let mut last_news = started;
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
        let now = clock::epoch_secs();
        let service = ecs.describe_service().await?;
        let mut news = observer.new_events(&service);
        let verdict = match watch.service_deployment {
            Some(arn) => {
                let sd = ecs.service_deployment(arn).await?;
                news.extend(observer.service_deployment_changes(&sd, now));
                assess_service_deployment(&sd, &service, watch.arn, observer.hook_stages())
            }
            None => {
                news.extend(observer.deployment_changes(&service));
                assess(&service, watch.deployment, watch.arn)
            }
        };
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
            let bake = observer
                .bake_left(watch.strategy, now)
                .map(|left| format!("bake time: {} left; ", clock::human_duration(left)))
                .unwrap_or_default();
            news.push(format!(
                "still rolling out {}; {bake}{} left before the deadline",
                watch.service_deployment.unwrap_or(watch.deployment),
                clock::human_duration(
                    watch
                        .deadline
                        .saturating_duration_since(Instant::now())
                        .as_secs() as i64
                )
            ));
        }
        if !news.is_empty() {
            last_news = Instant::now();
        }
        // Time since the watch began, so a reader sees how long each phase took.
        let elapsed = started.elapsed().as_secs();
        for line in news {
            log.info(&format!("[{elapsed:>4}s] {line}"));
        }
        let at_gate = matches!(verdict, Verdict::AwaitingApproval(_)) && watch.stop_at_pause;
        if verdict.is_final() || at_gate {
            return Ok(WatchEnd::Verdict(verdict));
        }
        if Instant::now() >= watch.deadline {
            return Ok(WatchEnd::Deadline(verdict));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ecs::fake::{FakeEcs, Scenario, HOOK};
    use crate::release::ecs::Started;
    use crate::release::testing::{cancel_after, captured_log, never, shop};

    const NEW: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop:2";

    /// Starts our deployment of `NEW` on `ecs` and watches it for `limit`.
    async fn watched(
        ecs: &FakeEcs,
        limit: Duration,
        stop_at_pause: bool,
        mut cancel: Cancel,
    ) -> (Result<WatchEnd, ReleaseError>, String) {
        let started: Started = ecs.update_service(NEW).await.unwrap();
        let spec = Watch {
            deployment: &started.deployment_id,
            service_deployment: started.service_deployment.as_deref(),
            arn: NEW,
            strategy: &Strategy::Rolling,
            deadline: Instant::now() + limit,
            poll: Duration::from_secs(5),
            stop_at_pause,
        };
        let (log, out) = captured_log();
        let mut observer = Observer::new(clock::epoch_secs() - 5);
        let end = watch(ecs, &spec, &log, Some(&mut cancel), &mut observer).await;
        (end, out.text())
    }

    #[tokio::test(start_paused = true)]
    async fn a_completed_deployment_is_judged_completed_both_ways_ecs_reports_it() {
        for (ecs, service_deployment_reads) in [
            (shop(Scenario::CompleteAt(3)), 0),
            (shop(Scenario::CompleteAt(3)).with_service_deployments(), 3),
        ] {
            let (end, _) = watched(&ecs, Duration::from_secs(600), false, never()).await;
            assert_eq!(end.unwrap(), WatchEnd::Verdict(Verdict::Completed));
            assert_eq!(ecs.count("DescribeServices"), 3);
            assert_eq!(
                ecs.count("DescribeServiceDeployments"),
                service_deployment_reads
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_rollout_says_so_every_minute_and_ends_at_the_deadline() {
        let ecs = shop(Scenario::Stuck);
        let (end, log) = watched(&ecs, Duration::from_secs(150), false, never()).await;
        assert_eq!(end.unwrap(), WatchEnd::Deadline(Verdict::InProgress));
        let heartbeats = log.matches("still rolling out ecs-svc/2").count();
        assert_eq!(heartbeats, 2, "{log}");
        assert!(log.contains("left before the deadline"), "{log}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_ends_the_watch_before_the_next_poll() {
        let ecs = shop(Scenario::Stuck);
        let cancel = cancel_after(Duration::from_secs(12));
        let (end, _) = watched(&ecs, Duration::from_secs(600), false, cancel).await;
        assert_eq!(end.unwrap(), WatchEnd::Cancelled);
        // Polls every 5 s with jitter: two or three before the cancel at 12 s, none after.
        let polls = ecs.count("DescribeServices");
        assert!((1..=3).contains(&polls), "{polls} polls");
    }

    #[tokio::test(start_paused = true)]
    async fn an_approval_gate_ends_the_watch_only_when_asked_to_stop_there() {
        let ecs = shop(Scenario::PauseAt(2)).with_service_deployments();
        let (end, _) = watched(&ecs, Duration::from_secs(600), true, never()).await;
        match end.unwrap() {
            WatchEnd::Verdict(Verdict::AwaitingApproval(pause)) => {
                assert_eq!(pause.hook_ids, [HOOK]);
                assert_eq!(pause.stage, "POST_TEST_TRAFFIC_SHIFT");
            }
            other => panic!("{other:?}"),
        }
        let ecs = shop(Scenario::PauseAt(2)).with_service_deployments();
        let (end, _) = watched(&ecs, Duration::from_secs(60), false, never()).await;
        assert!(
            matches!(
                end.unwrap(),
                WatchEnd::Deadline(Verdict::AwaitingApproval(_))
            ),
            "waited at the gate until the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stopped_tasks_that_cannot_be_read_are_warned_about_and_the_verdict_stands() {
        let ecs = shop(Scenario::BreakerAt(2));
        ecs.refuse("ListTasks");
        let (end, log) = watched(&ecs, Duration::from_secs(600), false, never()).await;
        assert!(
            matches!(end.unwrap(), WatchEnd::Verdict(Verdict::RolledBack(ref why)) if why.contains("circuit breaker"))
        );
        assert_eq!(log.matches("cannot show stopped tasks").count(), 1, "{log}");
    }

    #[test]
    fn how_a_watch_ended_reads_as_words_in_the_job_log() {
        let text = WatchEnd::Deadline(Verdict::InProgress).to_string();
        assert_eq!(text, "the deadline passed: still rolling out");
        let text =
            WatchEnd::Verdict(Verdict::RolledBack("alarm cpu-high fired".into())).to_string();
        assert_eq!(text, "rolled back by ECS: alarm cpu-high fired");
        assert_eq!(WatchEnd::Cancelled.to_string(), "the job was cancelled");
    }
}
