//! `agent install`: what the task's init container runs, copying this binary into the task
//! volume the other containers take their entrypoint from. The agent image needs nothing
//! else (no `cp`, no shell).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::AgentError;

/// The name the binary gets in the volume.
pub const INSTALLED_NAME: &str = "gitlab-ecs-executor";

/// Copies the running binary into `dir`, executable by every user of the task's containers;
/// returns where.
pub fn install(dir: &Path) -> Result<PathBuf, AgentError> {
    let failed = |source| AgentError::Install {
        dir: dir.to_path_buf(),
        source,
    };
    let binary = std::env::current_exe().map_err(failed)?;
    let target = dir.join(INSTALLED_NAME);
    // Through a temporary name, so a container never starts a half-copied binary.
    let partial = dir.join(format!(".{INSTALLED_NAME}.partial"));
    std::fs::copy(&binary, &partial).map_err(failed)?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).map_err(failed)?;
    std::fs::rename(&partial, &target).map_err(failed)?;
    Ok(target)
}
