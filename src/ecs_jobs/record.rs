//! The job's record on the runner host: what `prepare` started, for `run` and `cleanup`,
//! which are separate processes. Written before `RunTask` (the intent: its client token and
//! the tags the task will carry), then with the task's ARN and address, so a cancel or a
//! killed executor at any moment still leaves cleanup what it needs to stop the task. It
//! holds the job's secret, so it is private (0600) and lives in the runner's per-attempt
//! temp dir, which the runner removes after cleanup.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EcsJobError;
use crate::agent::JobSecret;
use crate::private_file;

const FILE: &str = "gitlab-ecs-executor-task.json";

/// What the stages after `prepare` know of the job's task.
#[derive(Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The cluster it runs in.
    pub cluster: String,
    /// `RunTask`'s idempotency token: a retried call never starts a second task.
    pub client_token: String,
    /// The task, once ECS has answered.
    pub task_arn: Option<String>,
    /// Its address, once it runs.
    pub address: Option<IpAddr>,
    /// The job's secret in hex; [`TaskRecord::secret`] reads it.
    secret: String,
}

impl std::fmt::Debug for TaskRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRecord")
            .field("cluster", &self.cluster)
            .field("task_arn", &self.task_arn)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl TaskRecord {
    /// The intent to run a task in `cluster` for the job holding `secret`.
    pub fn intent(cluster: &str, client_token: String, secret: &JobSecret) -> Self {
        TaskRecord {
            cluster: cluster.to_string(),
            client_token,
            task_arn: None,
            address: None,
            secret: secret.reveal_hex(),
        }
    }

    /// The job's secret.
    pub fn secret(&self, dir: &Path) -> Result<JobSecret, EcsJobError> {
        JobSecret::from_hex(&self.secret).ok_or_else(|| EcsJobError::Record {
            path: dir.join(FILE),
            reason: "holds no well-formed secret".into(),
        })
    }

    /// Writes the record into `dir` (the runner's temp dir for this attempt).
    pub fn save(&self, dir: &Path) -> Result<(), EcsJobError> {
        let text = serde_json::to_vec(self).map_err(|e| EcsJobError::Record {
            path: dir.join(FILE),
            reason: e.to_string(),
        })?;
        private_file::write(dir, FILE, &text)
            .map(drop)
            .map_err(|e| EcsJobError::Record {
                path: dir.join(FILE),
                reason: format!("cannot write it: {e}"),
            })
    }

    /// The record in `dir`; `None` when prepare never got as far as the intent.
    pub fn load(dir: &Path) -> Result<Option<Self>, EcsJobError> {
        let path = dir.join(FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(EcsJobError::Record {
                    path,
                    reason: format!("cannot read it: {e}"),
                })
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| EcsJobError::Record {
                path,
                reason: format!("is not a task record: {e}"),
            })
    }

    /// Removes the record: the task is stopped.
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(FILE));
    }
}

/// Where a job's record lives: the runner's per-attempt temp dir.
pub fn record_dir(runner_temp_dir: Option<&Path>) -> Result<PathBuf, EcsJobError> {
    runner_temp_dir
        .map(Path::to_path_buf)
        .ok_or_else(|| EcsJobError::Record {
            path: PathBuf::from("$TMPDIR"),
            reason: "gitlab-runner gave this stage no temp dir (TMPDIR) to keep it in".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_privately_and_never_debug_prints_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let secret = JobSecret::generate().unwrap();
        let mut record = TaskRecord::intent("ci", "gitlab-1-2-abcd".into(), &secret);
        record.save(dir.path()).unwrap();
        record.task_arn = Some("arn:aws:ecs:eu-west-1:123456789012:task/ci/0a1b".into());
        record.address = Some("10.0.3.7".parse().unwrap());
        record.save(dir.path()).unwrap();
        let back = TaskRecord::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.task_arn, record.task_arn);
        assert_eq!(back.address, record.address);
        assert_eq!(
            back.secret(dir.path()).unwrap().digest_hex(),
            secret.digest_hex()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{back:?}").contains(&secret.reveal_hex()));
        TaskRecord::remove(dir.path());
        assert!(TaskRecord::load(dir.path()).unwrap().is_none());
    }
}
