//! `release`: the native release outside GitLab, with the same inputs and report.

use std::path::Path;

use super::{interrupt, operator_log, temp_dir, CommandError, Target};
use crate::release::inputs::{self, ImageAction, Requester};
use crate::release::{self, ProjectSource, Provenance, ReleaseRequest};
use crate::settings::Settings;

/// What `release` was asked to do.
#[derive(Debug, Clone)]
pub struct ReleaseOptions<'a> {
    /// The project directory to build.
    pub project_dir: &'a Path,
    /// Only build and push the image.
    pub push_only: bool,
    /// Stop before the first change.
    pub dry_run: bool,
}

/// Builds, pushes and (unless `push_only`) rolls out `target.tag` from `project_dir`.
pub async fn release(
    settings: &Settings,
    target: &Target,
    options: &ReleaseOptions<'_>,
) -> Result<(), CommandError> {
    let tag = target.release_tag(&settings.release)?;
    let project_dir =
        options
            .project_dir
            .canonicalize()
            .map_err(|source| CommandError::ProjectDir {
                path: options.project_dir.display().to_string(),
                source,
            })?;
    let action = if options.push_only {
        ImageAction::Push
    } else {
        ImageAction::Release
    };
    let inputs = inputs::collect(action, &tag, target, &settings.aws, Requester::Operator)?;
    let temp = temp_dir()?;
    let log = operator_log();
    let request = ReleaseRequest {
        inputs,
        provenance: Provenance::default(),
        source: ProjectSource::Directory(project_dir),
        temp_dir: temp.path().to_path_buf(),
        job_deadline: None,
        dry_run: options.dry_run,
    };
    let mut cancel = interrupt()?;
    release::execute(settings, &request, &log, &mut cancel).await?;
    Ok(())
}
