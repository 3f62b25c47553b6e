//! A project's volumes: its checkout (`builds_dir`), its caches (`cache_dir`) and the
//! `docker.volumes` paths, one set per runner, project and concurrency slot. They outlive
//! jobs (an incremental `git fetch` stays fast, caches stay warm) and are mounted only into
//! that project's containers; `cleanup` never removes them, `prune` removes stale ones.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::models::VolumeCreateRequest;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use bollard::Docker;

use super::naming::{
    JobNames, ProjectVolumes, LABEL_MANAGED, LABEL_PROJECT, LABEL_ROLE, LABEL_TEMPORARY,
};
use super::{archive, is_not_found, DockerError};
use crate::clock;
use crate::settings::{Settings, VolumeSpec};

/// The file in the builds volume whose time says when a job last used the volumes.
pub const LAST_USED: &str = ".gitlab-ecs-executor-last-used";

/// Whether a job's checkout may reuse the project's builds volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkout {
    /// Into the project's builds volume, where the last job of the slot left its checkout.
    Reused,
    /// Into a volume of the job's own, removed with it.
    Fresh,
}

/// Creates (or finds) the volumes of a job's project and slot; returns the binds every
/// container of the job gets: the project's volumes and the `docker.volumes` entries. With
/// `disable_cache` every volume is the job's own, as the docker executor makes them.
pub async fn project_binds(
    docker: &Docker,
    volumes: &ProjectVolumes,
    job: &JobNames,
    checkout: Checkout,
    settings: &Settings,
) -> Result<Vec<String>, DockerError> {
    let no_cache = settings.docker.disable_cache;
    let mut binds = Vec::new();
    // A volume of the job's own carries its name and is removed with it.
    let mount = async |name: String, purpose: &str, own: bool, target: &str| {
        let temporary = own.then_some(job);
        let name = match temporary {
            Some(job) => format!("{name}-{}", job.key()),
            None => name,
        };
        create(docker, &name, volumes.labels(purpose, temporary)).await?;
        Ok::<String, DockerError>(format!("{name}:{target}"))
    };
    let builds = settings.builds_dir.display().to_string();
    let cache = settings.cache_dir.display().to_string();
    let fresh = checkout == Checkout::Fresh || no_cache;
    binds.push(mount(volumes.builds(), "builds", fresh, &builds).await?);
    binds.push(mount(volumes.cache(), "cache", no_cache, &cache).await?);
    for entry in &settings.docker.volumes {
        // Validated when settings were read.
        match crate::settings::parse_volume(entry) {
            Ok(VolumeSpec::Cache { destination }) => {
                binds.push(
                    mount(
                        volumes.for_path(&destination),
                        "path",
                        no_cache,
                        &destination,
                    )
                    .await?,
                );
            }
            Ok(VolumeSpec::Bind {
                source,
                destination,
                mode,
            }) => binds.push(match mode {
                Some(mode) => format!("{source}:{destination}:{mode}"),
                None => format!("{source}:{destination}"),
            }),
            Err(_) => {}
        }
    }
    Ok(binds)
}

async fn create(
    docker: &Docker,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<(), DockerError> {
    // Creating an existing volume returns it unchanged.
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some("local".into()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|source| DockerError::Volume {
            action: "create",
            name: name.to_string(),
            source,
        })
}

/// Records in the builds volume that a job uses it now, through a (created) container that
/// mounts it at `builds_dir`.
pub async fn mark_used(
    docker: &Docker,
    container: &str,
    builds_dir: &str,
) -> Result<(), DockerError> {
    let stamp = clock::epoch_secs().to_string();
    archive::write_file(docker, container, builds_dir, LAST_USED, stamp.as_bytes()).await
}

/// `runner-<id>-project-<id>-concurrent-<n>[-protected]` of any of a project's volume names.
fn project_prefix(volume: &str) -> &str {
    let Some(at) = volume.find("-concurrent-") else {
        return volume;
    };
    let digits = volume[at + "-concurrent-".len()..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let end = at + "-concurrent-".len() + digits;
    match volume[end..].starts_with("-protected") {
        true => &volume[..end + "-protected".len()],
        false => &volume[..end],
    }
}

/// A project volume of this executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectVolume {
    /// The volume's name.
    pub name: String,
    /// The project it belongs to.
    pub project: String,
    /// Its size in bytes, when measured.
    pub size: Option<i64>,
    /// When the engine created it (epoch seconds).
    pub created: Option<i64>,
}

/// Every project volume of this executor on the engine.
pub async fn list(docker: &Docker) -> Result<Vec<ProjectVolume>, DockerError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_ROLE}=volume"),
        ],
    )]);
    let listed = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(DockerError::api("list volumes"))?;
    Ok(listed
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !v.labels.contains_key(LABEL_TEMPORARY))
        .map(|v| ProjectVolume {
            project: v.labels.get(LABEL_PROJECT).cloned().unwrap_or_default(),
            created: v.created_at.map(|t| t.timestamp()),
            name: v.name,
            size: None,
        })
        .collect())
}

/// Fills in the volumes' sizes, measured with `du` in a container of `image` that mounts
/// them read-only (the engine's own disk-usage report differs between API versions).
pub async fn measure(
    docker: &Docker,
    volumes: &mut [ProjectVolume],
    image: &str,
) -> Result<(), DockerError> {
    if volumes.is_empty() {
        return Ok(());
    }
    let binds: Vec<String> = volumes
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{}:/v/{i}:ro", v.name))
        .collect();
    // Two `doctor`s in the same second must not take each other's name.
    let name = format!(
        "gitlab-ecs-executor-du-{}-{}",
        std::process::id(),
        clock::epoch_secs()
    );
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec!["sh".into(), "-c".into()]),
        cmd: Some(vec!["du -sk /v/*".into()]),
        labels: Some(HashMap::from([(
            LABEL_MANAGED.to_string(),
            "true".to_string(),
        )])),
        host_config: Some(HostConfig {
            binds: Some(binds),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .map_err(DockerError::api(
            "create a container to measure the volumes",
        ))?;
    let measured = async {
        docker
            .start_container(&name, None)
            .await
            .map_err(DockerError::api("measure the volumes"))?;
        let mut wait = docker.wait_container(
            &name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        let _ = futures_util::StreamExt::next(&mut wait).await;
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .build();
        let mut logs = docker.logs(&name, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut logs).await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Ok::<_, DockerError>(text)
    }
    .await;
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
    for line in measured?.lines() {
        let mut parts = line.split_whitespace();
        let (Some(kib), Some(path)) = (parts.next(), parts.next()) else {
            continue;
        };
        let index = path
            .rsplit('/')
            .next()
            .and_then(|i| i.parse::<usize>().ok());
        if let (Some(v), Ok(kib)) = (index.and_then(|i| volumes.get_mut(i)), kib.parse::<i64>()) {
            v.size = Some(kib * 1024);
        }
    }
    Ok(())
}

/// Removes the engine's build cache (the releases' BuildKit cache) unused for `older_than`;
/// returns the bytes freed.
pub async fn prune_build_cache(docker: &Docker, older_than: Duration) -> Result<i64, DockerError> {
    let until = format!("{}s", older_than.as_secs());
    let filters = HashMap::from([("until", vec![until.as_str()])]);
    let options = bollard::query_parameters::PruneBuildOptionsBuilder::default()
        .filters(&filters)
        .build();
    let pruned = docker
        .prune_build(Some(options))
        .await
        .map_err(DockerError::api("prune the build cache"))?;
    Ok(pruned.space_reclaimed.unwrap_or(0))
}

/// A stale project volume `prune` removed (or, in a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The volume.
    pub volume: ProjectVolume,
    /// When a job last used it (epoch seconds); `None`: no job ever stamped it.
    pub last_used: Option<i64>,
}

/// What `prune` did or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Volumes removed (or, in a dry run, that would be).
    pub removed: Vec<Pruned>,
    /// Volumes kept: used recently or by a container.
    pub kept: usize,
}

/// Removes the project volumes no job used for `older_than` and no container uses;
/// `image` is any local image, for the container that reads the volumes' stamps.
pub async fn prune(
    docker: &Docker,
    older_than: Duration,
    image: &str,
    dry_run: bool,
) -> Result<PruneReport, DockerError> {
    let now = clock::epoch_secs();
    let limit = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
    let mut report = PruneReport::default();
    let volumes = list(docker).await?;
    let names: HashSet<String> = volumes.iter().map(|v| v.name.clone()).collect();
    // Every volume of a project slot judges by the slot's builds volume: read it once.
    let mut stamps: HashMap<String, Option<i64>> = HashMap::new();
    for volume in volumes {
        let builds = format!("{}-builds", project_prefix(&volume.name));
        let stamp = match stamps.get(&builds) {
            Some(stamp) => *stamp,
            None => {
                let stamp = last_used(docker, &builds, &names, image).await?;
                stamps.insert(builds, stamp);
                stamp
            }
        };
        // A volume a job is preparing right now has no stamp yet: its creation counts.
        let last_used = stamp.or(volume.created);
        if last_used.is_some_and(|t| now.saturating_sub(t) <= limit) {
            report.kept += 1;
            continue;
        }
        if !dry_run {
            let options = RemoveVolumeOptionsBuilder::default().force(false).build();
            match docker.remove_volume(&volume.name, Some(options)).await {
                Ok(()) => {}
                // In use by a container (a job running now): keep it.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => {
                    report.kept += 1;
                    continue;
                }
                Err(e) if is_not_found(&e) => continue,
                Err(source) => {
                    return Err(DockerError::Volume {
                        action: "remove",
                        name: volume.name,
                        source,
                    })
                }
            }
        }
        report.removed.push(Pruned { volume, last_used });
    }
    Ok(report)
}

/// When a job last stamped the builds volume `builds` (epoch seconds); `None` when it
/// holds no stamp or does not exist.
async fn last_used(
    docker: &Docker,
    builds: &str,
    existing: &HashSet<String>,
    image: &str,
) -> Result<Option<i64>, DockerError> {
    // Mounting a volume that does not exist would create it.
    if !existing.contains(builds) {
        return Ok(None);
    }
    let path = format!("/volume/{LAST_USED}");
    let stat = with_reader(docker, builds, image, "prune", |reader| async move {
        archive::stat(docker, &reader, &path).await
    })
    .await?;
    Ok(stat.and_then(|s| s.modified))
}

/// The contents of `path` (relative to the volume's root) in the volume `volume`, read
/// through a container of `image` (any image on the host); `None` when the volume or the
/// file does not exist.
pub async fn read_file(
    docker: &Docker,
    volume: &str,
    path: &str,
    image: &str,
) -> Result<Option<Vec<u8>>, DockerError> {
    // Mounting a volume that does not exist would create it.
    match docker.inspect_volume(volume).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(DockerError::api(format!("inspect volume {volume}"))(e)),
    }
    let path = format!("/volume/{}", path.trim_start_matches('/'));
    with_reader(docker, volume, image, "read", |reader| async move {
        archive::read(docker, &reader, &path).await
    })
    .await
}

/// Runs `read` on a container of `image` that mounts `volume` read-only at `/volume`: created,
/// never started (the engine's archive API reads created containers), without a network,
/// removed afterwards whatever `read` returned.
async fn with_reader<T, F, Fut>(
    docker: &Docker,
    volume: &str,
    image: &str,
    purpose: &str,
    read: F,
) -> Result<T, DockerError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, DockerError>>,
{
    let reader = format!(
        "gitlab-ecs-executor-{purpose}-{}-{}-{}",
        std::process::id(),
        clock::epoch_secs(),
        READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(HashMap::from([(
            LABEL_MANAGED.to_string(),
            "true".to_string(),
        )])),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{volume}:/volume:ro")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&reader)
                    .build(),
            ),
            body,
        )
        .await
        .map_err(DockerError::api(format!(
            "create a container to read volume {volume}"
        )))?;
    let result = read(reader.clone()).await;
    let _ = docker
        .remove_container(
            &reader,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
    result
}

/// Tells apart the reader containers one process creates within one second.
static READERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
mod tests {
    #[test]
    fn every_volume_of_a_project_judges_by_its_builds_volume() {
        for name in [
            "runner-4-project-12-concurrent-3-builds",
            "runner-4-project-12-concurrent-3-cache",
            "runner-4-project-12-concurrent-3-path-00ff00ff00ff00ff",
        ] {
            assert_eq!(
                super::project_prefix(name),
                "runner-4-project-12-concurrent-3"
            );
        }
        assert_eq!(
            super::project_prefix("runner-4-project-12-concurrent-3-protected-cache"),
            "runner-4-project-12-concurrent-3-protected"
        );
    }
}
