//! The settings `exec` hands every stage: the operator's own, plus a read-only bind of the
//! checkout's git directory at its own path, so the job's helper container clones it with
//! a `file://` URL as it would clone from GitLab (nothing else of the host is mounted).

use std::path::Path;

use crate::settings::{parse_volume, Settings, VolumeSpec};

use super::ExecError;

/// The operator's settings (`explicit`, else where settings are looked for) with
/// `git_dir` bound read-only, as a temporary file that lives as long as the value.
pub fn settings_with_checkout(
    explicit: Option<&Path>,
    git_dir: &Path,
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
    let mut file = tempfile::Builder::new()
        .prefix("gitlab-ecs-executor-exec-")
        .suffix(".toml")
        .tempfile()
        .map_err(ExecError::Runner)?;
    std::io::Write::write_all(&mut file, table.to_string().as_bytes())
        .map_err(ExecError::Runner)?;
    Ok(file)
}
