//! Removing a job's containers and network, and sweeping orphans of crashed jobs.
//!
//! Cleanup never fails the job: everything here is best effort, tolerates objects already
//! gone and a `run` still alive, and reports what it could not remove.

use std::collections::{BTreeSet, HashMap};
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

/// Removes the objects of this runner's jobs whose containers are older than `max_age`:
/// jobs whose cleanup never ran (a killed runner, a host reboot).
pub async fn sweep_orphans(docker: &Docker, runner_id: u64, max_age: Duration) -> CleanupReport {
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&runner_filter(runner_id))
        .build();
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return CleanupReport::default();
    };
    let now = clock::epoch_secs();
    let stale_jobs: BTreeSet<String> = containers
        .iter()
        .filter(|c| now - c.created.unwrap_or(now) > max_age.as_secs() as i64)
        .filter_map(|c| c.labels.as_ref()?.get(LABEL_JOB).cloned())
        .collect();
    let mut report = CleanupReport::default();
    for job in stale_jobs {
        let filter = HashMap::from([("label".to_string(), vec![format!("{LABEL_JOB}={job}")])]);
        report.merge(remove_matching(docker, filter).await);
    }
    report
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
