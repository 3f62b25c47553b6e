//! The job as one driver invocation sees it: `CUSTOM_ENV_*` variables and the job payload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::payload::JobPayload;
use super::ProtocolError;

const PREFIX: &str = "CUSTOM_ENV_";

/// Variables whose values are credentials whether or not the project masked them.
pub const ALWAYS_SECRET: &[&str] = &[
    "CI_JOB_TOKEN",
    "CI_BUILD_TOKEN",
    "CI_REGISTRY_PASSWORD",
    "CI_DEPENDENCY_PROXY_PASSWORD",
    "CI_DEPLOY_PASSWORD",
    "DOCKER_AUTH_CONFIG",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ID_TOKEN",
];

/// Which runner, project, job and concurrency slot a driver call belongs to.
///
/// Every Docker object of a job carries these as labels so that `cleanup` finds exactly the
/// job's objects, even when `prepare` died half-way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    /// `CI_RUNNER_ID`.
    pub runner_id: u64,
    /// `CI_PROJECT_ID`.
    pub project_id: u64,
    /// `CI_JOB_ID`.
    pub job_id: u64,
    /// `CI_CONCURRENT_ID`.
    pub concurrent_id: u64,
}

/// Everything the runner told this driver invocation about the job.
#[derive(Debug, Clone)]
pub struct JobContext {
    vars: BTreeMap<String, String>,
    /// The job payload from `JOB_RESPONSE_FILE`.
    pub payload: JobPayload,
    /// Runner, project, job and slot ids.
    pub identity: JobIdentity,
    /// The runner's per-attempt temp dir (`TMPDIR`), removed by the runner after cleanup.
    pub runner_temp_dir: Option<PathBuf>,
    /// When the runner wrote the job payload: the start of this job attempt.
    pub started: Option<SystemTime>,
}

impl JobContext {
    /// Reads the job from this process's environment.
    pub fn from_env() -> Result<Self, ProtocolError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the job from an environment given as key/value pairs; the last value of a
    /// duplicate key wins, as in the process environment the runner builds.
    pub fn from_vars(
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ProtocolError> {
        let mut vars = BTreeMap::new();
        let mut response_file = None;
        let mut runner_temp_dir = None;
        for (key, value) in env {
            if let Some(name) = key.strip_prefix(PREFIX) {
                vars.insert(name.to_string(), value);
            } else if key == "JOB_RESPONSE_FILE" {
                response_file = Some(PathBuf::from(value));
            } else if key == "TMPDIR" && !value.is_empty() {
                runner_temp_dir = Some(PathBuf::from(value));
            }
        }
        let response_file = response_file
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| ProtocolError::MissingVariable("JOB_RESPONSE_FILE".into()))?;
        let payload = read_payload(&response_file)?;
        let started = std::fs::metadata(&response_file)
            .and_then(|m| m.modified())
            .ok();
        let identity = JobIdentity {
            runner_id: id_var(&vars, "CI_RUNNER_ID")?,
            project_id: id_var(&vars, "CI_PROJECT_ID")?,
            job_id: id_var(&vars, "CI_JOB_ID")?,
            concurrent_id: id_var(&vars, "CI_CONCURRENT_ID")?,
        };
        Ok(JobContext {
            vars,
            payload,
            identity,
            runner_temp_dir,
            started,
        })
    }

    /// A context for operator commands run outside GitLab: `vars` play the job's variables,
    /// `temp_dir` the runner's per-job temp dir.
    pub fn operator(vars: BTreeMap<String, String>, temp_dir: &Path) -> Self {
        JobContext {
            vars,
            payload: JobPayload::default(),
            identity: JobIdentity {
                runner_id: 0,
                project_id: 0,
                job_id: 0,
                concurrent_id: 0,
            },
            runner_temp_dir: Some(temp_dir.to_path_buf()),
            started: None,
        }
    }

    /// A job variable (`CUSTOM_ENV_<name>`), `None` when unset.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A job variable that is set and not empty.
    pub fn non_empty_var(&self, name: &str) -> Option<&str> {
        self.var(name).filter(|v| !v.is_empty())
    }

    /// A job variable the runner always sets.
    pub fn required_var(&self, name: &str) -> Result<&str, ProtocolError> {
        self.var(name)
            .ok_or_else(|| ProtocolError::MissingVariable(format!("{PREFIX}{name}")))
    }

    /// All job variables, un-prefixed.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// The values that must never reach a log: masked variables and well-known credentials.
    pub fn secret_values(&self) -> Vec<String> {
        let masked = self
            .payload
            .variables
            .iter()
            .filter(|v| v.masked)
            .map(|v| v.value.clone());
        let known = ALWAYS_SECRET
            .iter()
            .filter_map(|name| self.non_empty_var(name).map(str::to_string));
        let mut values: Vec<String> = masked.chain(known).filter(|v| !v.is_empty()).collect();
        values.sort();
        values.dedup();
        values
    }

    /// The job's project directory on the host (`CI_PROJECT_DIR`).
    pub fn project_dir(&self) -> Result<&Path, ProtocolError> {
        let dir = self.required_var("CI_PROJECT_DIR")?;
        if dir.is_empty() || !dir.starts_with('/') {
            return Err(ProtocolError::InvalidVariable {
                name: format!("{PREFIX}CI_PROJECT_DIR"),
                reason: "must be an absolute path".into(),
            });
        }
        Ok(Path::new(dir))
    }

    /// The job timeout in seconds (`CI_JOB_TIMEOUT`, else the payload's).
    pub fn job_timeout_secs(&self) -> Option<u64> {
        self.non_empty_var("CI_JOB_TIMEOUT")
            .and_then(|v| v.parse().ok())
            .or(Some(self.payload.runner_info.timeout).filter(|t| *t > 0))
    }

    /// Time left before the job's timeout, if both the timeout and the start are known.
    pub fn job_time_left(&self) -> Option<Duration> {
        let elapsed = self.started?.elapsed().unwrap_or_default();
        Some(Duration::from_secs(self.job_timeout_secs()?).saturating_sub(elapsed))
    }
}

fn id_var(vars: &BTreeMap<String, String>, name: &str) -> Result<u64, ProtocolError> {
    let value = vars
        .get(name)
        .ok_or_else(|| ProtocolError::MissingVariable(format!("{PREFIX}{name}")))?;
    value.parse().map_err(|_| ProtocolError::InvalidVariable {
        name: format!("{PREFIX}{name}"),
        reason: format!("must be a non-negative integer, got {value:?}"),
    })
}

fn read_payload(path: &Path) -> Result<JobPayload, ProtocolError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProtocolError::ResponseFile {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ProtocolError::ResponsePayload {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let file = dir.join("response.json");
        std::fs::write(
            &file,
            r#"{"id": 3, "variables": [{"key": "M", "value": "hunter22", "masked": true}]}"#,
        )
        .unwrap();
        let mut v: Vec<(String, String)> = [
            ("JOB_RESPONSE_FILE", file.to_str().unwrap()),
            ("CUSTOM_ENV_CI_RUNNER_ID", "1"),
            ("CUSTOM_ENV_CI_PROJECT_ID", "2"),
            ("CUSTOM_ENV_CI_JOB_ID", "3"),
            ("CUSTOM_ENV_CI_CONCURRENT_ID", "0"),
            ("CUSTOM_ENV_CI_JOB_TOKEN", "glcbt-token"),
            ("PATH", "/bin"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        v
    }

    #[test]
    fn reads_identity_variables_and_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = JobContext::from_vars(env(dir.path(), &[("CUSTOM_ENV_X", "late")])).unwrap();
        assert_eq!(ctx.identity.job_id, 3);
        assert_eq!(ctx.var("X"), Some("late"));
        assert_eq!(ctx.var("PATH"), None);
        assert_eq!(ctx.secret_values(), ["glcbt-token", "hunter22"]);
    }

    #[test]
    fn errors_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = env(dir.path(), &[]);
        vars.retain(|(k, _)| k != "CUSTOM_ENV_CI_JOB_ID");
        let err = JobContext::from_vars(vars).unwrap_err().to_string();
        assert!(err.contains("CUSTOM_ENV_CI_JOB_ID"), "{err}");

        let vars = env(dir.path(), &[("CUSTOM_ENV_CI_PROJECT_ID", "abc")]);
        let err = JobContext::from_vars(vars).unwrap_err().to_string();
        assert!(
            err.contains("CUSTOM_ENV_CI_PROJECT_ID") && err.contains("integer"),
            "{err}"
        );

        let mut vars = env(dir.path(), &[]);
        vars.retain(|(k, _)| k != "JOB_RESPONSE_FILE");
        let err = JobContext::from_vars(vars).unwrap_err().to_string();
        assert!(err.contains("JOB_RESPONSE_FILE"), "{err}");

        std::fs::write(dir.path().join("bad.json"), "not json").unwrap();
        let mut vars = env(dir.path(), &[]);
        vars.push((
            "JOB_RESPONSE_FILE".into(),
            dir.path().join("bad.json").to_str().unwrap().into(),
        ));
        let err = JobContext::from_vars(vars).unwrap_err().to_string();
        assert!(
            err.contains("bad.json") && err.contains("not a gitlab-runner job"),
            "{err}"
        );
    }
}
