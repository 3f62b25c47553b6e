//! The settings `exec` hands every stage: the operator's own, plus a read-only bind of the
//! checkout's git directory at its own path, so the job's helper container clones it with
//! a `file://` URL as it would clone from GitLab (nothing else of the host is mounted).
//!
//! `exec` is the operator running their own pipeline on their own machine, with their own
//! credentials: what guards a shared runner against its projects guards nothing here. So
//! the project may release what the operator's credentials reach (a grant for it), from a
//! local tag GitLab knows nothing of (no protected-ref rule), and images on the machine are
//! used as they are unless the settings name a pull policy (a laptop or an offline host).

use std::path::Path;

use crate::docker::LOCAL_HELPER_IMAGE;
use crate::settings::{parse_volume, Settings, VolumeSpec};

use super::ExecError;

/// The operator's settings (`explicit`, else where settings are looked for) with
/// `git_dir` bound read-only, as a temporary file that lives as long as the value.
pub fn settings_with_checkout(
    explicit: Option<&Path>,
    git_dir: &Path,
    project_path: &str,
) -> Result<tempfile::NamedTempFile, ExecError> {
    let mut table = match Settings::locate(explicit) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ExecError::Read {
                path: path.clone(),
                source,
            })?;
            text.parse::<toml::Table>().map_err(|e| {
                ExecError::Usage(format!("{}: {}", path.display(), e.to_string().trim_end()))
            })?
        }
        None => toml::Table::new(),
    };
    as_operator(&mut table, project_path)?;
    let docker = table
        .entry("docker")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let bind = format!("{0}:{0}:ro", git_dir.display());
    let mounts_it = |entry: &toml::Value| {
        entry
            .as_str()
            .and_then(|e| parse_volume(e).ok())
            .is_some_and(|v| match v {
                VolumeSpec::Cache { destination } | VolumeSpec::Bind { destination, .. } => {
                    Path::new(&destination) == git_dir
                }
            })
    };
    match docker {
        toml::Value::Table(docker) => match docker
            .entry("volumes")
            .or_insert_with(|| toml::Value::Array(Vec::new()))
        {
            // The operator's settings may already mount it.
            toml::Value::Array(volumes) if volumes.iter().any(mounts_it) => {}
            toml::Value::Array(volumes) => volumes.push(toml::Value::String(bind)),
            _ => {
                return Err(ExecError::Usage(
                    "settings: docker.volumes must be a list".into(),
                ))
            }
        },
        _ => {
            return Err(ExecError::Usage(
                "settings: [docker] must be a table".into(),
            ))
        }
    }
    if let toml::Value::Table(docker) = docker {
        docker
            .entry("pull_policy")
            .or_insert_with(|| "if-not-present".into());
        // GitLab's helper would try to upload artifacts to a GitLab that `exec` does not
        // have; the local one keeps them for the jobs that need them.
        docker
            .entry("helper_image")
            .or_insert_with(|| LOCAL_HELPER_IMAGE.into());
    }
    let mut file = tempfile::Builder::new()
        .prefix("gitlab-ecs-executor-exec-")
        .suffix(".toml")
        .tempfile()
        .map_err(ExecError::Runner)?;
    std::io::Write::write_all(&mut file, table.to_string().as_bytes())
        .map_err(ExecError::Runner)?;
    Ok(file)
}

/// The release settings of an operator's own run: a grant for the project, no
/// protected-ref rule.
fn as_operator(table: &mut toml::Table, project_path: &str) -> Result<(), ExecError> {
    let not_table = || ExecError::Usage("settings: [release] must be a table".into());
    let release = table
        .entry("release")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(not_table)?;
    release.insert("require_protected_ref".into(), false.into());
    let anything = |pattern: &str| toml::Value::Array(vec![pattern.into()]);
    let grant = toml::Table::from_iter([
        (
            "projects".to_string(),
            toml::Value::Array(vec![project_path.into()]),
        ),
        ("registries".to_string(), anything("**")),
        ("repositories".to_string(), anything("**")),
        ("clusters".to_string(), anything("**")),
        ("services".to_string(), anything("**")),
        ("task_families".to_string(), anything("**")),
        ("roles".to_string(), anything("**")),
    ]);
    match release
        .entry("grants")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
    {
        toml::Value::Array(grants) => grants.push(toml::Value::Table(grant)),
        _ => {
            return Err(ExecError::Usage(
                "settings: release.grants must be a list".into(),
            ))
        }
    }
    Ok(())
}
