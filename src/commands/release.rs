//! `release`: the native release outside GitLab, with the same inputs and report.

use std::path::Path;

use regex::Regex;

use super::{interrupt, operator_log, Target};
use crate::protocol::JobContext;
use crate::release::{self, inputs, ReleaseError, DRY_RUN_VARIABLE};
use crate::settings::{ReleaseAction, Settings};

/// Builds, pushes and (unless `push_only`) rolls out `target.tag` from `project_dir`.
pub async fn release(
    settings: &Settings,
    target: &Target,
    project_dir: &Path,
    push_only: bool,
    dry_run: bool,
) -> Result<(), ReleaseError> {
    let mut vars = target.variables();
    let tag = vars.get("CI_COMMIT_TAG").cloned().ok_or_else(|| {
        ReleaseError::Refused("--tag (or CI_COMMIT_TAG) is required: the version to release".into())
    })?;
    check_tag(settings, &tag)?;
    let project_dir = project_dir.canonicalize().map_err(|e| {
        ReleaseError::Refused(format!("project directory {}: {e}", project_dir.display()))
    })?;
    vars.insert("CI_PROJECT_DIR".into(), project_dir.display().to_string());
    if dry_run {
        vars.insert(DRY_RUN_VARIABLE.into(), "true".into());
    }
    let action = if push_only {
        ReleaseAction::Push
    } else {
        ReleaseAction::Release
    };
    let facts = inputs::JobFacts {
        project_path: "operator",
        job_id: 0,
    };
    let inputs = inputs::collect(action, &tag, |k| vars.get(k).cloned(), &settings.aws, facts)?;
    let temp = tempfile::tempdir()
        .map_err(|e| ReleaseError::Refused(format!("cannot create a temp dir: {e}")))?;
    let log = operator_log(&vars);
    let ctx = JobContext::operator(vars, temp.path());
    let mut cancel = interrupt()?;
    release::execute(settings, &ctx, &inputs, &log, &mut cancel)
        .await
        .map(|_| ())
}

/// The same tag policy as a release job: immutable version tags only.
pub(super) fn check_tag(settings: &Settings, tag: &str) -> Result<(), ReleaseError> {
    if settings
        .release
        .mutable_tags
        .iter()
        .any(|m| m.eq_ignore_ascii_case(tag))
    {
        return Err(ReleaseError::Refused(format!(
            "tag `{tag}` is mutable and cannot be released (release.mutable_tags)"
        )));
    }
    let pattern = Regex::new(&settings.release.tag_pattern)
        .map_err(|e| ReleaseError::Refused(format!("release.tag_pattern: {e}")))?;
    if pattern.is_match(tag) {
        Ok(())
    } else {
        Err(ReleaseError::Refused(format!(
            "tag `{tag}` does not match release.tag_pattern `{}`",
            settings.release.tag_pattern
        )))
    }
}
