//! `prune`: removes the project volumes (checkouts, caches, `docker.volumes` paths) that no
//! job used for a while and no container uses, since `cleanup` keeps them for the next job
//! of the same project and slot; the releases' build cache unused as long; and with
//! `[ecs_jobs]`, the job task definitions registered before then.

use std::time::Duration;

use super::CommandError;
use crate::clock;
use crate::docker::{self, volumes};
use crate::ecs_jobs;
use crate::settings::Settings;

/// How `prune` was asked to run.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Volumes no job used for this long go.
    pub older_than: Duration,
    /// List what would go, remove nothing.
    pub dry_run: bool,
}

/// Removes the stale project volumes and prints one line per volume and a summary.
pub async fn prune(settings: &Settings, options: PruneOptions) -> Result<(), CommandError> {
    let docker = docker::connect(&settings.docker).await?;
    let image = docker::image_on_host(&docker, &settings.docker)
        .await?
        .ok_or(CommandError::NoImageForVolumes)?;
    let report = volumes::prune(&docker, options.older_than, &image, options.dry_run).await?;
    let now = clock::epoch_secs();
    let verb = if options.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for pruned in &report.removed {
        let age = match pruned.last_used {
            Some(t) => format!("last used {} ago", clock::human_duration(now - t)),
            None => "never used by a job".to_string(),
        };
        println!(
            "{verb} {} (project {}, {age})",
            pruned.volume.name, pruned.volume.project
        );
    }
    let age =
        clock::human_duration(i64::try_from(options.older_than.as_secs()).unwrap_or(i64::MAX));
    println!(
        "{} volume(s) {verb}, {} kept (used within {age} or by a running job)",
        report.removed.len(),
        report.kept,
    );
    if options.dry_run {
        println!("build cache unused for {age} would be removed");
    } else {
        let freed = volumes::prune_build_cache(&docker, options.older_than).await?;
        println!(
            "build cache unused for {age}: {:.1} MB freed",
            freed as f64 / 1e6
        );
    }
    if let Some(jobs) = &settings.ecs_jobs {
        let report =
            ecs_jobs::prune_definitions(settings, jobs, options.older_than, options.dry_run)
                .await?;
        let verb = match options.dry_run {
            true => "would deregister",
            false => "deregistered",
        };
        for (revision, registered) in &report.removed {
            let ago =
                clock::human_duration(i64::try_from(registered.as_secs()).unwrap_or(i64::MAX));
            println!("{verb} task definition {revision} (registered {ago} ago)");
        }
        println!(
            "{} job task definition(s) {verb}, {} kept (registered within {age})",
            report.removed.len(),
            report.kept
        );
    }
    Ok(())
}
