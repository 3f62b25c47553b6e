//! How a stage's outcome becomes the process exit code the runner classifies (reference §8).

use std::io;
use std::path::{Path, PathBuf};

use super::env;

/// What happened in a stage, from the runner's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The stage did its work.
    Success,
    /// The job itself failed (a script exited non-zero, a release failed): `exit_code` is
    /// what GitLab shows and matches against `allow_failure: exit_codes`.
    JobFailure {
        /// The job's real exit code (never 0).
        exit_code: i32,
    },
    /// The executor or its infrastructure failed; the runner may retry `prepare`.
    SystemFailure,
}

/// The exit-code contract of one driver invocation, read from the runner's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitContract {
    /// `BUILD_FAILURE_EXIT_CODE`, 1 when absent.
    pub build_failure: i32,
    /// `SYSTEM_FAILURE_EXIT_CODE`, 2 when absent.
    pub system_failure: i32,
    /// `BUILD_EXIT_CODE_FILE`, absent before runner 17.9.
    pub build_exit_code_file: Option<PathBuf>,
}

impl Default for ExitContract {
    fn default() -> Self {
        ExitContract {
            build_failure: 1,
            system_failure: 2,
            build_exit_code_file: None,
        }
    }
}

impl ExitContract {
    /// Reads the contract through `lookup` (the process environment in production).
    ///
    /// A value that is not an integer falls back to the default: the exit code is the last
    /// thing we can still get right when the environment is broken.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let code = |name: &str, default: i32| {
            lookup(name)
                .and_then(|v| v.trim().parse::<i32>().ok())
                .unwrap_or(default)
        };
        ExitContract {
            build_failure: code(env::BUILD_FAILURE_EXIT_CODE, 1),
            system_failure: code(env::SYSTEM_FAILURE_EXIT_CODE, 2),
            build_exit_code_file: lookup(env::BUILD_EXIT_CODE_FILE)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Reads the contract from this process's environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Records `outcome` for the runner and returns the exit code to leave with.
    ///
    /// The exit-code file lives for the whole job and the runner reuses it for any later
    /// stage that exits with the build-failure code, so it is written for a job failure and
    /// removed otherwise: a stage never leaves a stale code behind.
    pub fn conclude(&self, outcome: Outcome) -> io::Result<i32> {
        match outcome {
            Outcome::Success => {
                self.clear_exit_code_file()?;
                Ok(0)
            }
            Outcome::JobFailure { exit_code } => {
                if let Some(path) = &self.build_exit_code_file {
                    write_exit_code(path, exit_code)?;
                }
                Ok(self.build_failure)
            }
            Outcome::SystemFailure => {
                self.clear_exit_code_file()?;
                Ok(self.system_failure)
            }
        }
    }

    fn clear_exit_code_file(&self) -> io::Result<()> {
        match &self.build_exit_code_file {
            Some(path) => match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

fn write_exit_code(path: &Path, exit_code: i32) -> io::Result<()> {
    // A job failure reported as 0 would read as success in GitLab's exit_codes matching.
    let code = if exit_code == 0 { 1 } else { exit_code };
    std::fs::write(path, format!("{code}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn contract(vars: &[(&str, &str)]) -> ExitContract {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExitContract::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_the_runner_sets_nothing() {
        assert_eq!(contract(&[]), ExitContract::default());
        let c = contract(&[
            ("BUILD_FAILURE_EXIT_CODE", "x"),
            ("SYSTEM_FAILURE_EXIT_CODE", ""),
        ]);
        assert_eq!((c.build_failure, c.system_failure), (1, 2));
    }

    #[test]
    fn job_failure_writes_the_real_code_and_success_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("build_exit_code");
        let c = contract(&[
            ("BUILD_FAILURE_EXIT_CODE", "11"),
            ("SYSTEM_FAILURE_EXIT_CODE", "12"),
            ("BUILD_EXIT_CODE_FILE", file.to_str().unwrap()),
        ]);
        assert_eq!(
            c.conclude(Outcome::JobFailure { exit_code: 42 }).unwrap(),
            11
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "42\n");
        assert_eq!(c.conclude(Outcome::Success).unwrap(), 0);
        assert!(!file.exists());
        c.conclude(Outcome::JobFailure { exit_code: 0 }).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1\n");
        assert_eq!(c.conclude(Outcome::SystemFailure).unwrap(), 12);
        assert!(!file.exists());
    }
}
