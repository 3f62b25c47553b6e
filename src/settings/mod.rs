//! The executor's own settings: a TOML file chosen by `--config`,
//! `GITLAB_ECS_EXECUTOR_CONFIG` or `/etc/gitlab-ecs-executor/config.toml`, else built-in
//! defaults that work on a stock Docker host.
//!
//! Settings come from the runner host only: job variables never reach this module, so a
//! job cannot loosen what the operator configured.

mod docker;
mod ecs_jobs;
mod release;
mod units;

pub use docker::{
    parse_device, parse_ulimit, parse_volume, DockerSettings, PullPolicy, VolumeSpec,
};
pub use ecs_jobs::{Capacity, EcsJobsSettings, ProjectRole, RegistryCredential};
pub use release::{
    AwsSettings, EcsSettings, Grant, PauseMode, ReleaseAction, ReleaseSettings, RollbackMode,
    TagVerdict,
};
pub use units::{MemorySize, Pattern};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where settings are looked for when neither `--config` nor the variable names a file.
pub const DEFAULT_PATH: &str = "/etc/gitlab-ecs-executor/config.toml";
/// The variable naming the settings file.
pub const PATH_VARIABLE: &str = "GITLAB_ECS_EXECUTOR_CONFIG";

/// A settings file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read settings file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("settings file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message: line, key and what was expected.
        message: String,
    },
    /// Values of the right type that are still not allowed, all of them.
    #[error(
        "settings file {path}: {}",
        .problems.iter().map(|(key, m)| format!("`{key}` {m}")).collect::<Vec<_>>().join("; ")
    )]
    Invalid {
        /// The file (or `built-in defaults`).
        path: PathBuf,
        /// Dotted key and what is wrong with its value.
        problems: Vec<(String, String)>,
    },
}

/// All settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where every container of a job sees the project's builds volume (`CI_BUILDS_DIR`).
    pub builds_dir: PathBuf,
    /// Where every container of a job sees the project's cache volume.
    pub cache_dir: PathBuf,
    /// Script language the runner generates: `bash` or `sh`.
    pub shell: Shell,
    /// The Docker job environment.
    pub docker: DockerSettings,
    /// When a job becomes a native release.
    pub release: ReleaseSettings,
    /// AWS credentials and region.
    pub aws: AwsSettings,
    /// ECS rollouts.
    pub ecs: EcsSettings,
    /// The ECS job environment; without it, jobs run on the runner host's engine.
    pub ecs_jobs: Option<EcsJobsSettings>,
}

/// Script language of the runner's generated scripts.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    /// `bash` (the runner's default).
    Bash,
    /// POSIX `sh`.
    Sh,
}

impl Shell {
    /// The name the runner expects in the config output.
    pub fn as_str(self) -> &'static str {
        match self {
            Shell::Bash => "bash",
            Shell::Sh => "sh",
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            builds_dir: PathBuf::from("/builds"),
            cache_dir: PathBuf::from("/cache"),
            shell: Shell::Bash,
            docker: DockerSettings::default(),
            release: ReleaseSettings::default(),
            aws: AwsSettings::default(),
            ecs: EcsSettings::default(),
            ecs_jobs: None,
        }
    }
}

impl Settings {
    /// Loads settings from `explicit`, else the file named by `GITLAB_ECS_EXECUTOR_CONFIG`,
    /// else `/etc/gitlab-ecs-executor/config.toml` if it exists, else the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Self, SettingsError> {
        match Self::locate(explicit) {
            Some(path) => Self::from_file(&path),
            None => Ok(Settings::default()),
        }
    }

    /// The settings file `load` reads, `None` for the built-in defaults.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        let from_env = std::env::var_os(PATH_VARIABLE)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        explicit
            .map(Path::to_path_buf)
            .or(from_env)
            .or_else(|| Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()))
    }

    /// Reads and validates one settings file.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates settings text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, SettingsError> {
        let settings: Settings = toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let problems = settings.problems();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError::Invalid {
                path: path.to_path_buf(),
                problems: problems
                    .into_iter()
                    .map(|(k, m)| (k.to_string(), m))
                    .collect(),
            })
        }
    }

    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (key, dir) in [
            ("builds_dir", &self.builds_dir),
            ("cache_dir", &self.cache_dir),
        ] {
            if !dir.is_absolute() || dir.parent().is_none() {
                problems.push((
                    key,
                    format!(
                        "must be an absolute container path other than /, got `{}`",
                        dir.display()
                    ),
                ));
            }
        }
        if self.builds_dir.starts_with(&self.cache_dir)
            || self.cache_dir.starts_with(&self.builds_dir)
        {
            problems.push((
                "cache_dir",
                "and builds_dir must not contain each other: each is a volume of its own".into(),
            ));
        }
        // The engine refuses two mounts at one path.
        let mut mounted = vec![
            self.builds_dir.display().to_string(),
            self.cache_dir.display().to_string(),
        ];
        for volume in &self.docker.volumes {
            let destination = match parse_volume(volume) {
                Ok(VolumeSpec::Cache { destination } | VolumeSpec::Bind { destination, .. }) => {
                    destination
                }
                Err(_) => continue,
            };
            let destination = destination.trim_end_matches('/').to_string();
            if mounted.contains(&destination) {
                problems.push(("docker.volumes", format!("two mounts at {destination} (builds_dir, cache_dir and each entry need a path of their own)")));
            }
            mounted.push(destination);
        }
        problems.extend(self.docker.problems());
        problems.extend(release::problems(&self.release, &self.aws, &self.ecs));
        if let Some(jobs) = &self.ecs_jobs {
            problems.extend(jobs.problems(&self.aws.region));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, String> {
        Settings::from_toml(text, Path::new("/etc/x/config.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(parse("").unwrap(), Settings::default());
    }

    #[test]
    fn unknown_key_names_file_key_and_allowed_keys() {
        let err = parse("[docker]\npul_policy = \"never\"\n").unwrap_err();
        assert!(err.contains("/etc/x/config.toml"), "{err}");
        assert!(err.contains("pul_policy"), "{err}");
        assert!(err.contains("pull_policy"), "{err}");
    }

    #[test]
    fn bad_enum_value_names_key_and_allowed_values() {
        let err = parse("[docker]\npull_policy = \"sometimes\"\n").unwrap_err();
        assert!(
            err.contains("pull_policy") && err.contains("if-not-present"),
            "{err}"
        );
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = parse("builds_dir = \"relative\"").unwrap_err();
        assert!(
            err.contains("`builds_dir`") && err.contains("absolute"),
            "{err}"
        );
        let err = parse("[docker]\nmemory = \"lots\"").unwrap_err();
        assert!(
            err.contains("line 2")
                && err.contains("memory = \"lots\"")
                && err.contains("memory size"),
            "{err}"
        );
        let err = parse("[docker]\nvolumes = [\"relative/path\"]").unwrap_err();
        assert!(err.contains("`docker.volumes`"), "{err}");
        let err = parse("[docker]\npull_policy = \"always\"\nallowed_pull_policies = [\"never\"]")
            .unwrap_err();
        assert!(err.contains("`docker.pull_policy`"), "{err}");
    }

    #[test]
    fn release_settings() {
        let s =
            parse("[release]\ntag_pattern = '^release-.*$'\n[release.stages]\nbuild = \"push\"\n")
                .unwrap();
        assert_eq!(s.release.stages["build"], ReleaseAction::Push);
        assert!(!s.release.stages.contains_key("deploy"));
        let err = parse("[release.stages]\ndeploy = \"ship\"").unwrap_err();
        assert!(
            err.contains("ship") && err.contains("release") && err.contains("push"),
            "{err}"
        );
        let err = parse("[release]\ntag_pattern = '^v(('").unwrap_err();
        assert!(
            err.contains("tag_pattern = '^v(('") && err.contains("not a regular expression"),
            "{err}"
        );
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let err =
            parse("builds_dir = \"rel\"\n[docker]\ncpus = -1.0\n[ecs]\npoll_interval_seconds = 0")
                .unwrap_err();
        for key in [
            "`builds_dir`",
            "`docker.cpus`",
            "`ecs.poll_interval_seconds`",
        ] {
            assert!(err.contains(key), "{key} missing: {err}");
        }
    }
}
