//! `release`: the native release outside GitLab, with the same inputs and report. It builds
//! the tag's commit exported from the git checkout, never the working tree, so what is
//! pushed under an immutable tag is what the tag names.

use std::path::{Path, PathBuf};

use super::{interrupt, operator_log, temp_dir, CommandError, Target};
use crate::docker::AuthSource;
use crate::git::Checkout;
use crate::joblog::JobLog;
use crate::release::inputs::{self, ImageAction, Requester};
use crate::release::verbs;
use crate::release::{
    App, BuildScope, ProjectSource, Provenance, ReleaseRequest, LOCAL_REPOSITORY,
};
use crate::settings::Settings;

/// What `release` was asked to do.
#[derive(Debug, Clone)]
pub struct ReleaseOptions<'a> {
    /// The git checkout whose tag is built; reports are written there.
    pub project_dir: &'a Path,
    /// Only build and push the image.
    pub push_only: bool,
    /// Stop before the first change.
    pub dry_run: bool,
}

/// Builds, pushes and (unless `push_only`) rolls out `target.tag`'s commit of the checkout
/// at `project_dir`.
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
    let tree = temp.path().join("tree");
    let (build, provenance) = export_tag(&project_dir, &tag, &tree, &log)?;
    let request = ReleaseRequest {
        inputs,
        provenance,
        source: ProjectSource::Directory {
            build,
            reports: project_dir,
        },
        temp_dir: temp.path().to_path_buf(),
        job_deadline: None,
        dry_run: options.dry_run,
        build: BuildScope {
            owner: "operator".into(),
            local_name: format!("{LOCAL_REPOSITORY}/operator-{}", std::process::id()),
            registry_auth: AuthSource::home_config().into_iter().collect(),
        },
    };
    let app = App::connect(
        &request.inputs.region,
        &request.inputs.credentials,
        &request.temp_dir,
        &log,
    )
    .await?;
    let mut cancel = interrupt()?;
    verbs::release::execute(&app, settings, &request, &log, &mut cancel).await?;
    Ok(())
}

/// Exports `tag`'s commit of the checkout holding `project_dir` into `tree` and returns the
/// directory there that corresponds to `project_dir`, with the commit as provenance.
fn export_tag(
    project_dir: &Path,
    tag: &str,
    tree: &Path,
    log: &JobLog,
) -> Result<(PathBuf, Provenance), CommandError> {
    let not_a_checkout = |source| CommandError::NotACheckout {
        path: project_dir.to_path_buf(),
        source,
    };
    let git = CommandError::Checkout;
    let checkout = Checkout::of_dir(project_dir).map_err(not_a_checkout)?;
    let commit = checkout.resolve(Some(tag), None).map_err(git)?;
    std::fs::create_dir(tree).map_err(|source| CommandError::Host {
        action: format!("create {}", tree.display()),
        source,
    })?;
    checkout.export(&commit.sha, tree).map_err(git)?;
    let uncommitted = checkout.uncommitted().map_err(git)?;
    log.info(&format!(
        "Building {tag} = commit {} of {}, exported from git{}",
        &commit.sha[..commit.sha.len().min(12)],
        checkout.root.display(),
        match uncommitted.len() {
            0 => String::new(),
            n => format!(" (the working tree's {n} uncommitted change(s) are not part of it)"),
        }
    ));
    let relative = project_dir
        .strip_prefix(&checkout.root)
        .unwrap_or(Path::new(""));
    let provenance = Provenance {
        project_path: checkout.project_path.clone(),
        commit_sha: commit.sha,
        commit_time: commit.timestamp,
        ..Provenance::default()
    };
    Ok((tree.join(relative), provenance))
}
