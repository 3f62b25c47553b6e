//! The job as one driver invocation sees it: `CUSTOM_ENV_*` variables and the job payload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::payload::JobPayload;
use super::ProtocolError;

use super::env::{self, JOB_RESPONSE_FILE, JOB_VARIABLE_PREFIX, TMPDIR};

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

/// Which runner, project, job and slot a driver call belongs to, as the runner vouches
/// for them.
///
/// Every id that names, labels or keys an object comes from the job payload
/// (`JOB_RESPONSE_FILE`), which the runner writes from what GitLab sent: a job can set any
/// `CUSTOM_ENV_*` variable, predefined names included, but not its payload. Every Docker
/// object of a job carries these as labels, so `cleanup` finds exactly the job's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    /// GitLab's id of the runner (the payload's own `CI_RUNNER_ID`).
    pub runner_id: u64,
    /// `job_info.project_id`.
    pub project_id: u64,
    /// `job_info.project_full_path` (`group/project`).
    pub project_path: String,
    /// The payload's `id`.
    pub job_id: u64,
    /// Whether GitLab protects the job's ref (`git_info.protected`).
    pub protected: bool,
    /// The runner's slot for this project (`CI_CONCURRENT_PROJECT_ID`). The one id only the
    /// runner's variables carry; it only chooses among the project's own volumes, so a job
    /// that sets it reaches nothing of another project.
    pub slot: u64,
}

/// The highest slot a job may name: a runner's `concurrent` is far below it, and a forged
/// one must not create volumes without bound.
pub const MAX_SLOT: u64 = 999;

/// The job variables that name what the payload vouches for, and which payload field each
/// must agree with.
const VOUCHED: [(&str, &str); 4] = [
    ("CI_JOB_ID", "id"),
    ("CI_PROJECT_ID", "job_info.project_id"),
    ("CI_PROJECT_PATH", "job_info.project_full_path"),
    ("CI_RUNNER_ID", "CI_RUNNER_ID as GitLab sent it"),
];

impl JobIdentity {
    /// The identity the payload vouches for, refusing a job whose variables claim another.
    pub fn vouched(
        payload: &JobPayload,
        vars: &BTreeMap<String, String>,
    ) -> Result<Self, ProtocolError> {
        let positive = |value: i64, field: &'static str| {
            u64::try_from(value)
                .ok()
                .filter(|v| *v > 0)
                .ok_or(ProtocolError::Unvouched { field })
        };
        let runner_id = payload
            .vouched_variable("CI_RUNNER_ID")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(ProtocolError::Unvouched {
                field: "variables: CI_RUNNER_ID",
            })?;
        let project_path = payload.job_info.project_full_path.clone();
        if project_path.is_empty() {
            return Err(ProtocolError::Unvouched {
                field: "job_info.project_full_path",
            });
        }
        let protected = match payload.git_info.protected {
            Some(p) => p,
            None => payload.vouched_variable("CI_COMMIT_REF_PROTECTED") == Some("true"),
        };
        let identity = JobIdentity {
            runner_id,
            project_id: positive(payload.job_info.project_id, "job_info.project_id")?,
            project_path,
            job_id: positive(payload.id, "id")?,
            protected,
            slot: slot(vars)?,
        };
        for (variable, field) in VOUCHED {
            let vouched = identity.vouched_value(variable);
            if let Some(claimed) = vars.get(variable).filter(|c| **c != vouched) {
                return Err(ProtocolError::Forged {
                    variable: variable.to_string(),
                    claimed: claimed.clone(),
                    field,
                    vouched,
                });
            }
        }
        if let Some(claimed) = vars
            .get("CI_COMMIT_REF_PROTECTED")
            .filter(|c| (c.as_str() == "true") != protected)
        {
            return Err(ProtocolError::Forged {
                variable: "CI_COMMIT_REF_PROTECTED".into(),
                claimed: claimed.clone(),
                field: "git_info.protected",
                vouched: protected.to_string(),
            });
        }
        Ok(identity)
    }

    /// What the payload says for one of [`VOUCHED`]'s variables.
    fn vouched_value(&self, variable: &str) -> String {
        match variable {
            "CI_JOB_ID" => self.job_id.to_string(),
            "CI_PROJECT_ID" => self.project_id.to_string(),
            "CI_PROJECT_PATH" => self.project_path.clone(),
            _ => self.runner_id.to_string(),
        }
    }
}

fn slot(vars: &BTreeMap<String, String>) -> Result<u64, ProtocolError> {
    let name = "CI_CONCURRENT_PROJECT_ID";
    let value = vars
        .get(name)
        .ok_or_else(|| ProtocolError::MissingVariable(env::job_variable(name)))?;
    value
        .parse::<u64>()
        .ok()
        .filter(|slot| *slot <= MAX_SLOT)
        .ok_or_else(|| ProtocolError::BadSlot(value.clone()))
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
            if let Some(name) = key.strip_prefix(JOB_VARIABLE_PREFIX) {
                vars.insert(name.to_string(), value);
            } else if key == JOB_RESPONSE_FILE {
                response_file = Some(PathBuf::from(value));
            } else if key == TMPDIR && !value.is_empty() {
                runner_temp_dir = Some(PathBuf::from(value));
            }
        }
        let response_file = response_file
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| ProtocolError::MissingVariable(JOB_RESPONSE_FILE.into()))?;
        let payload = read_payload(&response_file)?;
        let started = std::fs::metadata(&response_file)
            .and_then(|m| m.modified())
            .ok();
        let identity = JobIdentity::vouched(&payload, &vars)?;
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
                project_path: String::new(),
                job_id: 0,
                protected: false,
                slot: 0,
            },
            runner_temp_dir: Some(temp_dir.to_path_buf()),
            started: None,
        }
    }

    /// A job variable (`CUSTOM_ENV_<name>`), `None` when unset.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// `text` with the job's variables expanded, as the runner expands image options.
    pub fn expanded(&self, text: &str) -> String {
        super::expand::expand(text, &|k| self.var(k).map(str::to_string))
    }

    /// A job variable that is set and not empty.
    pub fn non_empty_var(&self, name: &str) -> Option<&str> {
        self.var(name).filter(|v| !v.is_empty())
    }

    /// A job variable the runner always sets.
    pub fn required_var(&self, name: &str) -> Result<&str, ProtocolError> {
        self.var(name)
            .ok_or_else(|| ProtocolError::MissingVariable(env::job_variable(name)))
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
                name: env::job_variable("CI_PROJECT_DIR"),
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

    const PAYLOAD: &str = r#"{"id": 3, "job_info": {"project_id": 2, "project_full_path": "group/app"},
        "git_info": {"protected": true},
        "variables": [{"key": "CI_RUNNER_ID", "value": "1"}, {"key": "CI_PROJECT_ID", "value": "2"},
                      {"key": "M", "value": "hunter22", "masked": true},
                      {"key": "CI_RUNNER_ID", "value": "77"}]}"#;

    fn env(dir: &Path, payload: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let file = dir.join("response.json");
        std::fs::write(&file, payload).unwrap();
        let mut v: Vec<(String, String)> = [
            ("JOB_RESPONSE_FILE", file.to_str().unwrap()),
            ("CUSTOM_ENV_CI_RUNNER_ID", "1"),
            ("CUSTOM_ENV_CI_PROJECT_ID", "2"),
            ("CUSTOM_ENV_CI_JOB_ID", "3"),
            ("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0"),
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
    fn identity_comes_from_the_payload_and_secrets_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let ctx =
            JobContext::from_vars(env(dir.path(), PAYLOAD, &[("CUSTOM_ENV_X", "late")])).unwrap();
        // GitLab's CI_RUNNER_ID is the payload's first: a later one is the job's.
        assert_eq!(
            ctx.identity,
            JobIdentity {
                runner_id: 1,
                project_id: 2,
                project_path: "group/app".into(),
                job_id: 3,
                protected: true,
                slot: 0,
            }
        );
        assert_eq!(ctx.var("X"), Some("late"));
        assert_eq!(ctx.var("PATH"), None);
        assert_eq!(ctx.secret_values(), ["glcbt-token", "hunter22"]);
    }

    #[test]
    fn a_job_claiming_another_identity_is_refused_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        for (variable, value) in [
            ("CUSTOM_ENV_CI_PROJECT_ID", "99"),
            ("CUSTOM_ENV_CI_JOB_ID", "4"),
            ("CUSTOM_ENV_CI_RUNNER_ID", "77"),
            ("CUSTOM_ENV_CI_PROJECT_PATH", "group/other"),
            ("CUSTOM_ENV_CI_COMMIT_REF_PROTECTED", "false"),
        ] {
            let err =
                JobContext::from_vars(env(dir.path(), PAYLOAD, &[(variable, value)])).unwrap_err();
            let name = variable.trim_start_matches("CUSTOM_ENV_");
            assert!(
                matches!(&err, ProtocolError::Forged { variable, .. } if variable == name),
                "{variable}: {err}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
        // The ref's protection falls back on GitLab's own CI_COMMIT_REF_PROTECTED.
        let old = r#"{"id": 3, "job_info": {"project_id": 2, "project_full_path": "g/a"},
            "variables": [{"key": "CI_RUNNER_ID", "value": "1"},
                          {"key": "CI_COMMIT_REF_PROTECTED", "value": "false"},
                          {"key": "CI_COMMIT_REF_PROTECTED", "value": "true"}]}"#;
        let ctx = JobContext::from_vars(env(
            dir.path(),
            old,
            &[
                ("CUSTOM_ENV_CI_PROJECT_PATH", "g/a"),
                ("CUSTOM_ENV_CI_COMMIT_REF_PROTECTED", "true"),
            ],
        ));
        assert!(matches!(ctx, Err(ProtocolError::Forged { .. })), "{ctx:?}");
    }

    #[test]
    fn errors_name_the_variable_or_the_payload_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = env(dir.path(), PAYLOAD, &[]);
        vars.retain(|(k, _)| k != "CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID");
        let err = JobContext::from_vars(vars).unwrap_err().to_string();
        assert!(err.contains("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID"), "{err}");

        let vars = env(
            dir.path(),
            PAYLOAD,
            &[("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "100000")],
        );
        let err = JobContext::from_vars(vars).unwrap_err().to_string();
        assert!(err.contains("from 0 to 999"), "{err}");

        let err = JobContext::from_vars(env(dir.path(), r#"{"id": 3}"#, &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CI_RUNNER_ID"), "{err}");

        let mut vars = env(dir.path(), PAYLOAD, &[]);
        vars.retain(|(k, _)| k != "JOB_RESPONSE_FILE");
        let err = JobContext::from_vars(vars).unwrap_err().to_string();
        assert!(err.contains("JOB_RESPONSE_FILE"), "{err}");

        std::fs::write(dir.path().join("bad.json"), "not json").unwrap();
        let mut vars = env(dir.path(), PAYLOAD, &[]);
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
