//! One release, resolved: everything it needs, typed, built once by whichever adapter asked
//! for it (the runner's `build_script` stage, an operator command, `exec`).

use std::path::PathBuf;

use tokio::time::Instant;

use super::inputs::ReleaseInputs;

/// A release to perform.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// What to build, push and deploy, and with which credentials.
    pub inputs: ReleaseInputs,
    /// Where the release comes from.
    pub provenance: Provenance,
    /// The project checkout: the build context, and where `ecs-release.env` is written.
    pub source: ProjectSource,
    /// A private directory for web identity token files, removed by the requester.
    pub temp_dir: PathBuf,
    /// When the requester's own time runs out (a job's timeout), if it has such a limit.
    pub job_deadline: Option<Instant>,
    /// Stop before the first change and show what would change.
    pub dry_run: bool,
    /// Whose build this is, on an engine that builds for many projects.
    pub build: BuildScope,
}

/// Whose build a release's is: the engine's build cache and `RUN --mount=type=cache` mounts
/// of one owner are never another's, base images come from the registry with the owner's
/// own credentials, and the image is held under a name of the owner's own until it is
/// pushed (then removed).
#[derive(Clone)]
pub struct BuildScope {
    /// The owner: a project and whether its ref is protected (`project-42-protected`), or
    /// the operator.
    pub owner: String,
    /// The engine's name for the image while the release runs
    /// (`gitlab-ecs-executor-release/<job>`), no registry's.
    pub local_name: String,
    /// Where the owner's registry credentials come from, for the base images.
    pub registry_auth: Vec<crate::docker::AuthSource>,
}

// The credential sources hold secrets.
impl std::fmt::Debug for BuildScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildScope")
            .field("owner", &self.owner)
            .field("local_name", &self.local_name)
            .finish_non_exhaustive()
    }
}

/// The repository every release's build is held under while it runs.
pub const LOCAL_REPOSITORY: &str = "gitlab-ecs-executor-release";

/// Where the project checkout is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectSource {
    /// Directories on this host (an operator's `release`).
    Directory {
        /// The tree to build: the tag's commit, exported.
        build: PathBuf,
        /// Where the report files go: the operator's project directory.
        reports: PathBuf,
    },
    /// The project directory in a job's volume, read and written through one of the job's
    /// containers: the checkout never touches the runner host.
    Volume {
        /// The container that mounts the volume.
        container: String,
        /// The project directory inside it (`CI_PROJECT_DIR`).
        project_dir: String,
    },
}

/// Where a release comes from: shown in the image's labels, the revision's tags and the
/// report. Empty fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// `group/project`.
    pub project_path: String,
    /// The project's web URL.
    pub project_url: String,
    /// The commit built.
    pub commit_sha: String,
    /// The commit's time, RFC 3339.
    pub commit_time: String,
    /// The pipeline id.
    pub pipeline_id: String,
    /// The job's web URL.
    pub job_url: String,
}
