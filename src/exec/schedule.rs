//! Whether a job of the plan runs, given how the jobs it waits for ended: GitLab's
//! composite status of those jobs (`Gitlab::Ci::Status::Composite`) against the statuses
//! its `when:` accepts (`Ci::ProcessBuildService`). Pure: outcomes in, a verdict out.

use super::pipeline::When;

/// How a job ended, as GitLab's composite status counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed and was allowed to (`success_with_warnings`).
    Warned,
    /// It failed with this exit code.
    Failed(i32),
    /// It did not run: what it waits for did not end as its `when:` asks.
    Skipped,
    /// A manual job nobody played that may fail (GitLab's `ignored`): the pipeline goes on.
    Ignored,
}

/// The status GitLab computes over the jobs a job waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    Success,
    Failed,
    Skipped,
}

/// The composite status of `outcomes`; for a DAG job one need that did not run is enough
/// to skip it.
fn upstream(outcomes: &[Outcome], dag: bool) -> Upstream {
    let not_run = |o: &Outcome| matches!(o, Outcome::Skipped | Outcome::Ignored);
    if outcomes.is_empty() {
        Upstream::Success
    } else if (dag && outcomes.iter().any(not_run)) || outcomes.iter().all(not_run) {
        Upstream::Skipped
    } else if outcomes.iter().any(|o| matches!(o, Outcome::Failed(_))) {
        Upstream::Failed
    } else {
        Upstream::Success
    }
}

/// Whether a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It runs.
    Run,
    /// It does not; the reason, in one line.
    Skip(String),
}

/// Whether a job with `when` runs after `waits_for` (each job's name and outcome).
pub fn verdict(when: When, waits_for: &[(&str, Outcome)], dag: bool) -> Verdict {
    let outcomes: Vec<Outcome> = waits_for.iter().map(|(_, o)| *o).collect();
    let status = upstream(&outcomes, dag);
    let runs = match when {
        When::OnSuccess | When::Manual | When::Delayed => {
            status == Upstream::Success || (!dag && status == Upstream::Skipped)
        }
        When::OnFailure => status == Upstream::Failed,
        When::Always => true,
        When::Never => false,
    };
    if runs {
        return Verdict::Run;
    }
    let failed = waits_for.iter().find_map(|(name, o)| match o {
        Outcome::Failed(code) => Some((*name, *code)),
        _ => None,
    });
    let not_run = waits_for
        .iter()
        .find(|(_, o)| matches!(o, Outcome::Skipped | Outcome::Ignored))
        .map(|(name, _)| *name);
    Verdict::Skip(match (status, failed, not_run) {
        (Upstream::Failed, Some((name, code)), _) => {
            format!("`{name}`, which it waits for, failed (exit code {code})")
        }
        (Upstream::Skipped, _, Some(name)) => {
            format!("`{name}`, which it needs, did not run")
        }
        _ if when == When::OnFailure => {
            "it is `when: on_failure` and nothing it waits for failed".into()
        }
        _ => "its `when: never`".into(),
    })
}

/// The exit code a failure in `waits_for` passes on to a job it keeps from running.
pub fn failure_code(waits_for: &[(&str, Outcome)]) -> Option<i32> {
    waits_for.iter().find_map(|(_, o)| match o {
        Outcome::Failed(code) => Some(*code),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    #[test]
    fn when_decides_against_the_composite_status() {
        let ok = [("a", Success), ("b", Warned), ("c", Ignored)];
        let failed = [("a", Success), ("b", Failed(3)), ("c", Skipped)];
        assert_eq!(verdict(When::OnSuccess, &[], true), Verdict::Run);
        assert_eq!(verdict(When::OnSuccess, &ok, false), Verdict::Run);
        assert_eq!(
            verdict(When::OnSuccess, &failed, false),
            Verdict::Skip("`b`, which it waits for, failed (exit code 3)".into())
        );
        assert_eq!(verdict(When::OnFailure, &failed, false), Verdict::Run);
        assert!(
            matches!(verdict(When::OnFailure, &ok, false), Verdict::Skip(s) if s.contains("on_failure"))
        );
        assert_eq!(verdict(When::Always, &failed, true), Verdict::Run);
        assert_eq!(failure_code(&failed), Some(3));
    }

    #[test]
    fn a_need_that_did_not_run_skips_a_dag_job_but_not_a_stage_job() {
        let skipped = [("a", Skipped), ("b", Ignored)];
        assert_eq!(verdict(When::OnSuccess, &skipped, false), Verdict::Run);
        assert_eq!(
            verdict(When::OnSuccess, &[("a", Success), ("m", Ignored)], true),
            Verdict::Skip("`m`, which it needs, did not run".into())
        );
        assert_eq!(
            verdict(When::OnSuccess, &[("a", Success), ("m", Ignored)], false),
            Verdict::Run
        );
    }
}
