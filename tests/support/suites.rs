//! Ordinary-job behaviour both job environments must show, each written once and run by
//! each environment's suite with an image that environment can run.

use std::time::{Duration, Instant};

use super::{
    assert_logged, CallResult, Cancel, Job, JobResult, RunJob, Runner, Service, Status, TestJob,
};

/// Cancels a job 2 s into a script that would sleep for minutes (in the background too);
/// the stage must stop on SIGTERM, well under the 5 s grace, and after_script (`after`
/// added to an echo of the status) must see the cancel. Returns the job and its result for
/// the environment's own checks.
pub fn a_cancel_stops_a_long_script_promptly(
    runner: &mut Runner,
    image: &str,
    after: &[&str],
) -> (Job, JobResult) {
    runner.graceful_kill = Duration::from_secs(20);
    let mut job = Job::test(image, &["echo started", "sleep 300 & sleep 300"]);
    job.after_script = ["echo \"after: $CI_JOB_STATUS\""]
        .iter()
        .chain(after)
        .map(|s| s.to_string())
        .collect();
    let started = Instant::now();
    let result = runner.run_with(&job, Cancel::DuringBuildScript(Duration::from_secs(2)));
    let build = result.calls_of("build_script")[0];
    // Well under the 5 s grace after the cancel at 2 s: SIGTERM did it, not the SIGKILL fallback.
    assert!(
        build.elapsed < Duration::from_secs(6),
        "took {:?}",
        build.elapsed
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(result.status, Status::Canceled, "{}", result.log);
    assert!(
        matches!(build.result, CallResult::BuildFailure(_)),
        "{:?}",
        build.result
    );
    assert_logged(&result.log, "after: canceled");
    (job, result)
}

/// The real postgres as a project's test database: `db`, named `<project>_test`, owned by
/// `user` (a variable reference, as jobs write it, or a name).
pub fn project_database(user: &str) -> Service {
    Service {
        name: super::images::POSTGRES.into(),
        alias: "db".into(),
        variables: vec![
            ("POSTGRES_DB".into(), "${CI_PROJECT_NAME}_test".into()),
            ("POSTGRES_USER".into(), user.into()),
        ],
        ..Default::default()
    }
}

/// A script line asking [`project_database`] who and where it is: prints
/// `<user>1|<project>_test`.
pub fn ask_project_database(user: &str) -> String {
    format!(
        "psql -h db -U \"{user}\" -d \"${{CI_PROJECT_NAME}}_test\" -tAc 'select current_user || 1, current_database()'"
    )
}
