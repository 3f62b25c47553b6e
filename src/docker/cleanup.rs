//! Removing a job's containers and network, and sweeping orphans of crashed jobs.
//!
//! Cleanup never fails the job: everything here is best effort, tolerates objects already
//! gone and a `run` still alive, and reports what it could not remove.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;

use super::is_not_found;
use super::naming::{runner_filter, JobNames, LABEL_JOB, LABEL_TEMPORARY};
use crate::clock;

/// What a cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Containers removed.
    pub containers: usize,
    /// Networks removed.
    pub networks: usize,
    /// Job-long volumes removed (`docker.disable_cache`); project volumes are never removed.
    pub volumes: usize,
    /// Objects that could not be removed, with the engine's reason.
    pub failures: Vec<String>,
}

impl CleanupReport {
    fn merge(&mut self, other: CleanupReport) {
        self.containers += other.containers;
        self.networks += other.networks;
        self.volumes += other.volumes;
        self.failures.extend(other.failures);
    }
}

/// Removes every container (with its anonymous volumes) and the network of one job.
pub async fn remove_job_objects(docker: &Docker, names: &JobNames) -> CleanupReport {
    remove_matching(docker, names.job_filter()).await
}

/// Removes the objects of this runner's jobs that are over: no container of the job runs,
/// and none ran for `max_age` (jobs whose cleanup never ran: a killed runner, a host
/// reboot). Every stage of a job starts one of its containers, so a job that is still
/// going, however long, has one running or one that stopped a moment ago. Times are the
/// engine's own, so a host whose clock differs from the engine's misjudges nothing.
pub async fn sweep_orphans(docker: &Docker, runner_id: u64, max_age: Duration) -> CleanupReport {
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&runner_filter(runner_id))
        .build();
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return CleanupReport::default();
    };
    let now = super::engine_now(docker).await;
    let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    let mut jobs: BTreeMap<String, Vec<&bollard::models::ContainerSummary>> = BTreeMap::new();
    for container in &containers {
        if let Some(job) = container.labels.as_ref().and_then(|l| l.get(LABEL_JOB)) {
            jobs.entry(job.clone()).or_default().push(container);
        }
    }
    let mut report = CleanupReport::default();
    for (job, containers) in jobs {
        if !is_over(docker, &containers, now, max_age).await {
            continue;
        }
        let filter = HashMap::from([("label".to_string(), vec![format!("{LABEL_JOB}={job}")])]);
        report.merge(remove_matching(docker, filter).await);
    }
    report
}

/// What a job's container says of the job's activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Activity {
    /// It runs now (a stage, or a service).
    running: bool,
    /// When it was created, started or stopped last, the latest known (epoch seconds).
    last: Option<i64>,
}

/// Whether a job is over: none of its containers runs, and none was created, started or
/// stopped within `max_age` of `now`.
fn job_is_over(containers: &[Activity], now: i64, max_age: i64) -> bool {
    containers
        .iter()
        .all(|c| !c.running && c.last.is_some_and(|t| now.saturating_sub(t) > max_age))
}

/// Whether the job whose containers are `containers` is over ([`job_is_over`]), reading
/// start and stop times only for a job the listing alone does not show active.
async fn is_over(
    docker: &Docker,
    containers: &[&bollard::models::ContainerSummary],
    now: i64,
    max_age: i64,
) -> bool {
    let listed: Vec<Activity> = containers
        .iter()
        .map(|c| Activity {
            running: c.state.as_ref().is_some_and(is_running),
            last: c.created,
        })
        .collect();
    if !job_is_over(&listed, now, max_age) {
        return false;
    }
    let mut inspected = Vec::with_capacity(containers.len());
    for (container, listed) in containers.iter().zip(listed) {
        let Some(id) = &container.id else {
            continue;
        };
        // Gone already, or unreadable: it says nothing of the job being over.
        let Ok(details) = docker.inspect_container(id, None).await else {
            continue;
        };
        let state = details.state.unwrap_or_default();
        let times = [state.started_at, state.finished_at]
            .into_iter()
            .flatten()
            .filter_map(|t| clock::parse_rfc3339(&t));
        inspected.push(Activity {
            running: state.running == Some(true),
            last: times.chain(listed.last).max(),
        });
    }
    job_is_over(&inspected, now, max_age)
}

fn is_running(state: &bollard::models::ContainerSummaryStateEnum) -> bool {
    matches!(
        state,
        bollard::models::ContainerSummaryStateEnum::RUNNING
            | bollard::models::ContainerSummaryStateEnum::RESTARTING
            | bollard::models::ContainerSummaryStateEnum::PAUSED
    )
}

async fn remove_matching(docker: &Docker, filter: HashMap<String, Vec<String>>) -> CleanupReport {
    let mut report = CleanupReport::default();
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filter)
        .build();
    match docker.list_containers(Some(options)).await {
        Ok(containers) => {
            let remove = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            for id in containers.into_iter().filter_map(|c| c.id) {
                match docker.remove_container(&id, Some(remove.clone())).await {
                    Ok(()) => report.containers += 1,
                    // Removed concurrently (another cleanup, or AutoRemove).
                    Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                    Err(e) => report.failures.push(format!("container {id}: {e}")),
                }
            }
        }
        Err(e) => report.failures.push(format!("list containers: {e}")),
    }
    let options = ListNetworksOptionsBuilder::default()
        .filters(&filter)
        .build();
    match docker.list_networks(Some(options)).await {
        Ok(networks) => {
            for name in networks.into_iter().filter_map(|n| n.name) {
                match docker.remove_network(&name).await {
                    Ok(()) => report.networks += 1,
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => report.failures.push(format!("network {name}: {e}")),
                }
            }
        }
        Err(e) => report.failures.push(format!("list networks: {e}")),
    }
    // Only volumes that belong to one job carry its job label: project volumes never do.
    let mut volume_filter = filter.clone();
    volume_filter
        .entry("label".to_string())
        .or_default()
        .push(format!("{LABEL_TEMPORARY}=true"));
    let options = ListVolumesOptionsBuilder::default()
        .filters(&volume_filter)
        .build();
    match docker.list_volumes(Some(options)).await {
        Ok(listed) => {
            for volume in listed.volumes.unwrap_or_default() {
                match docker
                    .remove_volume(
                        &volume.name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await
                {
                    Ok(()) => report.volumes += 1,
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => report.failures.push(format!("volume {}: {e}", volume.name)),
                }
            }
        }
        Err(e) => report.failures.push(format!("list volumes: {e}")),
    }
    report
}

/// 409: a removal of the same container is already in progress.
fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;

    fn idle(last: i64) -> Activity {
        Activity {
            running: false,
            last: Some(last),
        }
    }

    #[test]
    fn a_job_is_over_only_when_nothing_of_it_ran_for_the_whole_age() {
        let now = 100 * HOUR;
        // Created two days ago, a stage running now: a long job, not an orphan.
        let long_job = [
            Activity {
                running: true,
                last: Some(now - 48 * HOUR),
            },
            idle(now - 48 * HOUR),
        ];
        assert!(!job_is_over(&long_job, now, 24 * HOUR));
        // Between two stages: its last stage stopped a minute ago.
        assert!(!job_is_over(
            &[idle(now - 48 * HOUR), idle(now - 60)],
            now,
            24 * HOUR
        ));
        // Nothing for longer than the age: a job whose cleanup never came.
        assert!(job_is_over(
            &[idle(now - 25 * HOUR), idle(now - 30 * HOUR)],
            now,
            24 * HOUR
        ));
        // A container of unknown times keeps the job.
        assert!(!job_is_over(&[Activity::default()], now, 24 * HOUR));
    }
}
