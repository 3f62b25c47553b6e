//! The names in the driver's environment, written once: the executor reads them, the local
//! runner stand-in (`exec`, the test suite) sets them, so the two cannot drift apart.

/// Prefix of every job variable (`CUSTOM_ENV_CI_JOB_ID`).
pub const JOB_VARIABLE_PREFIX: &str = "CUSTOM_ENV_";
/// The job payload file the runner writes from what GitLab sent.
pub const JOB_RESPONSE_FILE: &str = "JOB_RESPONSE_FILE";
/// The runner's per-attempt temp dir, removed by the runner after cleanup.
pub const TMPDIR: &str = "TMPDIR";
/// The exit code that fails the job.
pub const BUILD_FAILURE_EXIT_CODE: &str = "BUILD_FAILURE_EXIT_CODE";
/// The exit code that fails the job as the host's fault (retried by the runner).
pub const SYSTEM_FAILURE_EXIT_CODE: &str = "SYSTEM_FAILURE_EXIT_CODE";
/// The file a stage writes the job's own exit code into.
pub const BUILD_EXIT_CODE_FILE: &str = "BUILD_EXIT_CODE_FILE";
/// The job variable the runner adds with the job's services (names, aliases, entrypoints).
pub const JOB_SERVICES: &str = "CI_JOB_SERVICES";

/// The environment name of job variable `name`.
pub fn job_variable(name: &str) -> String {
    format!("{JOB_VARIABLE_PREFIX}{name}")
}
