//! Stage names that gitlab-runner passes as the last argument of `run_exec`.

use std::fmt;
use std::str::FromStr;

use super::ProtocolError;

/// One stage of a job, as named by the runner (reference §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// `prepare_script`: prints where the job runs, removes stale runner files.
    PrepareScript,
    /// `get_sources`: clone or fetch the project.
    GetSources,
    /// `clear_worktree`: wipe the worktree before a second `get_sources` attempt.
    ClearWorktree,
    /// `restore_cache`.
    RestoreCache,
    /// `download_artifacts`.
    DownloadArtifacts,
    /// `build_script`: the job's `script` (before_script merged in).
    BuildScript,
    /// `step_<name>`: any other step of the job payload.
    Step(String),
    /// `after_script`.
    AfterScript,
    /// `archive_cache`.
    ArchiveCache,
    /// `archive_cache_on_failure`.
    ArchiveCacheOnFailure,
    /// `upload_artifacts_on_success`.
    UploadArtifactsOnSuccess,
    /// `upload_artifacts_on_failure`.
    UploadArtifactsOnFailure,
    /// `cleanup_file_variables`.
    CleanupFileVariables,
}

/// Where a stage's script must execute; never on the runner host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The build container, in the job's image: the user's own commands.
    BuildContainer,
    /// The helper container: git, cache and artifact housekeeping, so job images need
    /// neither git nor gitlab-runner (the docker executor's "predefined" container).
    HelperContainer,
}

impl Stage {
    /// Where the stage runs, as gitlab-runner's `getPredefinedEnv` places it.
    pub fn placement(&self) -> Placement {
        match self {
            Stage::BuildScript | Stage::Step(_) | Stage::AfterScript => Placement::BuildContainer,
            Stage::PrepareScript
            | Stage::GetSources
            | Stage::ClearWorktree
            | Stage::RestoreCache
            | Stage::DownloadArtifacts
            | Stage::ArchiveCache
            | Stage::ArchiveCacheOnFailure
            | Stage::UploadArtifactsOnSuccess
            | Stage::UploadArtifactsOnFailure
            | Stage::CleanupFileVariables => Placement::HelperContainer,
        }
    }
}

impl FromStr for Stage {
    type Err = ProtocolError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "prepare_script" => Stage::PrepareScript,
            "get_sources" => Stage::GetSources,
            "clear_worktree" => Stage::ClearWorktree,
            "restore_cache" => Stage::RestoreCache,
            "download_artifacts" => Stage::DownloadArtifacts,
            "build_script" => Stage::BuildScript,
            "after_script" => Stage::AfterScript,
            "archive_cache" => Stage::ArchiveCache,
            "archive_cache_on_failure" => Stage::ArchiveCacheOnFailure,
            "upload_artifacts_on_success" => Stage::UploadArtifactsOnSuccess,
            "upload_artifacts_on_failure" => Stage::UploadArtifactsOnFailure,
            "cleanup_file_variables" => Stage::CleanupFileVariables,
            other => match other.strip_prefix("step_") {
                Some(step) if !step.is_empty() => Stage::Step(step.to_string()),
                _ => return Err(ProtocolError::UnknownStage(other.to_string())),
            },
        })
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Stage::PrepareScript => "prepare_script",
            Stage::GetSources => "get_sources",
            Stage::ClearWorktree => "clear_worktree",
            Stage::RestoreCache => "restore_cache",
            Stage::DownloadArtifacts => "download_artifacts",
            Stage::BuildScript => "build_script",
            Stage::Step(name) => return write!(f, "step_{name}"),
            Stage::AfterScript => "after_script",
            Stage::ArchiveCache => "archive_cache",
            Stage::ArchiveCacheOnFailure => "archive_cache_on_failure",
            Stage::UploadArtifactsOnSuccess => "upload_artifacts_on_success",
            Stage::UploadArtifactsOnFailure => "upload_artifacts_on_failure",
            Stage::CleanupFileVariables => "cleanup_file_variables",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 13] = [
        "prepare_script",
        "get_sources",
        "clear_worktree",
        "restore_cache",
        "download_artifacts",
        "build_script",
        "step_release",
        "after_script",
        "archive_cache",
        "archive_cache_on_failure",
        "upload_artifacts_on_success",
        "upload_artifacts_on_failure",
        "cleanup_file_variables",
    ];

    #[test]
    fn every_runner_stage_round_trips() {
        for name in ALL {
            let stage: Stage = name.parse().unwrap();
            assert_eq!(stage.to_string(), name);
        }
    }

    #[test]
    fn user_steps_run_in_the_build_container_and_housekeeping_in_the_helper() {
        let in_container: Vec<_> = ALL
            .iter()
            .filter(|n| n.parse::<Stage>().unwrap().placement() == Placement::BuildContainer)
            .collect();
        assert_eq!(
            in_container,
            [&"build_script", &"step_release", &"after_script"]
        );
    }

    #[test]
    fn unknown_stages_are_rejected() {
        for name in ["prepare_executor", "step_", "", "BUILD_SCRIPT", "build"] {
            assert!(name.parse::<Stage>().is_err(), "{name} accepted");
        }
    }
}
