//! The executor's own settings: a TOML file chosen by `--config`,
//! `GITLAB_ECS_EXECUTOR_CONFIG` or `/etc/gitlab-ecs-executor/config.toml`, else built-in
//! defaults that work on a stock Docker host.
//!
//! Settings come from the runner host only: job variables never reach this module, so a
//! job cannot loosen what the operator configured.

use std::collections::BTreeMap;
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
    /// A value of the right type that is still not allowed.
    #[error("settings file {path}: `{key}` {message}")]
    Invalid {
        /// The file (or `built-in defaults`).
        path: PathBuf,
        /// Dotted key.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// All settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Host directory for project checkouts, bind-mounted at the same path in job containers.
    pub builds_dir: PathBuf,
    /// Host directory for caches, bind-mounted at the same path in job containers.
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
}

/// What to do when a rollout fails or runs out of time.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RollbackMode {
    /// Return the service to the revision it ran before the release (unless ECS already did).
    Auto,
    /// Leave the service as it is.
    Never,
}

impl RollbackMode {
    /// Parses `ECS_ROLLBACK`.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(RollbackMode::Auto),
            "never" => Some(RollbackMode::Never),
            _ => None,
        }
    }
}

/// ECS rollouts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EcsSettings {
    /// How long a rollout may take before it counts as failed (capped by the job's timeout).
    pub rollout_timeout_minutes: u64,
    /// Seconds between `DescribeServices` polls (±20 % jitter).
    pub poll_interval_seconds: u64,
    /// Rollback on failure: `auto` or `never` (a job's `ECS_ROLLBACK` overrides it).
    pub rollback: RollbackMode,
    /// How long to wait for another deployment of the service to finish before ours.
    pub wait_for_other_deployments_minutes: u64,
    /// How long to follow a rollback before reporting the service's state.
    pub rollback_timeout_minutes: u64,
}

impl Default for EcsSettings {
    fn default() -> Self {
        EcsSettings {
            rollout_timeout_minutes: 30,
            poll_interval_seconds: 5,
            rollback: RollbackMode::Auto,
            wait_for_other_deployments_minutes: 10,
            rollback_timeout_minutes: 10,
        }
    }
}

/// What a release stage does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseAction {
    /// Build and push the image, register a task definition, roll it out on ECS.
    Release,
    /// Build and push the image only (a build-stage job).
    Push,
}

/// When a job becomes a native release.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseSettings {
    /// Regular expression a tag must match to be released.
    pub tag_pattern: String,
    /// Job stage → action; jobs in other stages are never releases.
    pub stages: BTreeMap<String, ReleaseAction>,
    /// Tags refused for release even if `tag_pattern` matches them.
    pub mutable_tags: Vec<String>,
}

/// AWS credentials and region.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Region when the job sets neither `AWS_DEFAULT_REGION` nor `AWS_REGION`.
    pub region: String,
    /// Whether jobs without their own credentials may use the runner host's.
    pub allow_host_credentials: bool,
    /// The job variable holding the GitLab ID token (`id_tokens:`) for OIDC.
    pub id_token_variable: String,
}

impl Default for ReleaseSettings {
    fn default() -> Self {
        ReleaseSettings {
            tag_pattern: r"^v\d+\.\d+\.\d+$".into(),
            stages: BTreeMap::from([("deploy".to_string(), ReleaseAction::Release)]),
            mutable_tags: [
                "latest", "stable", "test", "dev", "edge", "nightly", "main", "master",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: String::new(),
            allow_host_credentials: true,
            id_token_variable: "AWS_ID_TOKEN".into(),
        }
    }
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

/// When to pull a job or service image.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull before every job.
    Always,
    /// Pull only when the image is not on the host.
    IfNotPresent,
    /// Never pull; the image must be on the host.
    Never,
}

impl PullPolicy {
    /// The name used in settings and in `.gitlab-ci.yml`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Never => "never",
        }
    }

    /// Parses the name used in `.gitlab-ci.yml`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Never,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

/// The Docker job environment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DockerSettings {
    /// Docker engine address (`unix://…`, `tcp://…`); empty: `DOCKER_HOST`, else the local socket.
    pub host: String,
    /// Image for jobs that name none.
    pub default_image: String,
    /// Pull policy when the job names none.
    pub pull_policy: PullPolicy,
    /// Pull policies a job may ask for with `image: pull_policy:`.
    pub allowed_pull_policies: Vec<PullPolicy>,
    /// CPU limit per job container (0: unlimited).
    pub cpus: f64,
    /// Memory limit per job container, e.g. `2g`, `512m` (empty: unlimited).
    pub memory: String,
    /// Extra binds for job containers, `host:container[:ro|rw]`.
    pub volumes: Vec<String>,
    /// Images jobs and services may use, as patterns with `*` (empty: any image).
    pub allowed_images: Vec<String>,
    /// Seconds a cancelled script gets between SIGTERM and SIGKILL inside the container.
    pub cancel_grace_seconds: u64,
    /// Containers of this runner older than this many minutes are removed by any cleanup.
    pub orphan_max_age_minutes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            builds_dir: PathBuf::from("/var/lib/gitlab-ecs-executor/builds"),
            cache_dir: PathBuf::from("/var/lib/gitlab-ecs-executor/cache"),
            shell: Shell::Bash,
            docker: DockerSettings::default(),
            release: ReleaseSettings::default(),
            aws: AwsSettings::default(),
            ecs: EcsSettings::default(),
        }
    }
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            host: String::new(),
            default_image: "debian:bookworm-slim".into(),
            pull_policy: PullPolicy::IfNotPresent,
            allowed_pull_policies: vec![
                PullPolicy::Always,
                PullPolicy::IfNotPresent,
                PullPolicy::Never,
            ],
            cpus: 0.0,
            memory: String::new(),
            volumes: Vec::new(),
            allowed_images: Vec::new(),
            cancel_grace_seconds: 5,
            orphan_max_age_minutes: 24 * 60,
        }
    }
}

impl DockerSettings {
    /// Whether `image` matches `allowed_images` (an empty list allows any image).
    pub fn image_allowed(&self, image: &str) -> bool {
        self.allowed_images.is_empty() || self.allowed_images.iter().any(|p| glob_match(p, image))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
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
        settings.validate(path)?;
        Ok(settings)
    }

    fn validate(&self, path: &Path) -> Result<(), SettingsError> {
        let invalid = |key: &str, message: String| SettingsError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        for (key, dir) in [
            ("builds_dir", &self.builds_dir),
            ("cache_dir", &self.cache_dir),
        ] {
            if !dir.is_absolute() {
                return Err(invalid(
                    key,
                    format!("must be an absolute path, got {dir:?}"),
                ));
            }
        }
        let d = &self.docker;
        if d.default_image.trim().is_empty() {
            return Err(invalid("docker.default_image", "must name an image".into()));
        }
        if !d.allowed_pull_policies.contains(&d.pull_policy) {
            return Err(invalid(
                "docker.pull_policy",
                format!(
                    "is `{}` but docker.allowed_pull_policies does not include it",
                    d.pull_policy.as_str()
                ),
            ));
        }
        if !(d.cpus >= 0.0 && d.cpus.is_finite()) {
            return Err(invalid(
                "docker.cpus",
                "must be 0 (unlimited) or a positive number of CPUs".into(),
            ));
        }
        parse_memory(&d.memory).map_err(|m| invalid("docker.memory", m))?;
        for volume in &d.volumes {
            parse_volume(volume).map_err(|m| invalid("docker.volumes", m))?;
        }
        regex::Regex::new(&self.release.tag_pattern).map_err(|e| {
            invalid(
                "release.tag_pattern",
                format!("is not a regular expression: {e}"),
            )
        })?;
        if self.ecs.poll_interval_seconds == 0 || self.ecs.rollout_timeout_minutes == 0 {
            return Err(invalid(
                "ecs.poll_interval_seconds",
                "and ecs.rollout_timeout_minutes must be at least 1".into(),
            ));
        }
        let name = &self.aws.id_token_variable;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(
                "aws.id_token_variable",
                "must be a CI variable name".into(),
            ));
        }
        Ok(())
    }
}

/// Memory limit in bytes: `""` (none), `1073741824`, `512m`, `2g`, `1024k`.
pub fn parse_memory(value: &str) -> Result<Option<i64>, String> {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return Ok(None);
    }
    let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v.as_str(), ""),
    };
    let factor: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => {
            return Err(format!(
                "must be bytes or a number with k, m or g, got {value:?}"
            ))
        }
    };
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n >= 6 << 20)
        .map(Some)
        .ok_or_else(|| format!("must be at least 6m (Docker's minimum), got {value:?}"))
}

/// A bind `host:container[:ro|rw]` with absolute paths on both sides.
pub fn parse_volume(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split(':').collect();
    let ok = match parts.as_slice() {
        [host, container] => host.starts_with('/') && container.starts_with('/'),
        [host, container, mode] => {
            host.starts_with('/') && container.starts_with('/') && matches!(*mode, "ro" | "rw")
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "entries must be `/host/path:/container/path[:ro|rw]`, got {value:?}"
        ))
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
        assert!(err.contains("`docker.memory`"), "{err}");
        let err = parse("[docker]\nvolumes = [\"/a\"]").unwrap_err();
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
        assert!(err.contains("`release.tag_pattern`"), "{err}");
    }

    #[test]
    fn image_allow_list() {
        let mut d = DockerSettings::default();
        assert!(d.image_allowed("anything:1"));
        d.allowed_images = vec![
            "registry.example.com/*".into(),
            "debian:*-slim".into(),
            "alpine:3".into(),
        ];
        assert!(d.image_allowed("registry.example.com/team/app:v1"));
        assert!(d.image_allowed("debian:bookworm-slim"));
        assert!(d.image_allowed("alpine:3"));
        assert!(!d.image_allowed("alpine:3.20"));
        assert!(!d.image_allowed("evil.example.com/registry.example.com/x"));
        assert!(!d.image_allowed("debian:bookworm"));
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("").unwrap(), None);
        assert_eq!(parse_memory("512m").unwrap(), Some(512 << 20));
        assert_eq!(parse_memory("2G").unwrap(), Some(2 << 30));
        assert_eq!(parse_memory("2gb").unwrap(), Some(2 << 30));
        assert!(parse_memory("1k").is_err());
        assert!(parse_memory("9x").is_err());
    }
}
