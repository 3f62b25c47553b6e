//! `exec --list`: every job of the pipeline (after includes, `extends` and `parallel`), by
//! stage, and whether its rules put it in the pipeline for the ref, or why `exec` cannot
//! run it.

use super::assemble::Assembler;
use super::pipeline::{Decision, Pipeline, Repository, When};
use super::ExecError;

/// One line of the listing.
struct Line {
    stage: String,
    name: String,
    verdict: String,
}

/// The listing, as lines of text.
pub fn listing(
    pipeline: &Pipeline,
    assembler: &mut Assembler,
    repository: &dyn Repository,
    created: bool,
) -> Result<Vec<String>, ExecError> {
    let mut lines: Vec<(usize, usize, Line)> = Vec::new();
    for (order, job) in pipeline.jobs.iter().enumerate() {
        let (stage, verdict) = match &job.def {
            Err(e) => (String::from("?"), format!("cannot run: {e}")),
            Ok(def) if !created => (
                def.stage.clone(),
                "no: no pipeline for this ref (workflow: rules)".to_string(),
            ),
            Ok(def) => {
                let verdict = match assembler.decide(def, repository) {
                    Ok(Decision::Run { when, .. }) => match when {
                        When::OnSuccess => "yes".to_string(),
                        When::Manual => "yes (manual)".to_string(),
                        When::Delayed => "yes (delayed)".to_string(),
                        When::Always => "yes (always)".to_string(),
                        When::OnFailure => "yes (on failure)".to_string(),
                        When::Never => "no".to_string(),
                    },
                    Ok(Decision::Excluded(why)) => format!("no: {why}"),
                    Err(ExecError::Pipeline { source, .. }) => format!("cannot run: {source}"),
                    Err(e) => return Err(e),
                };
                (def.stage.clone(), verdict)
            }
        };
        let stage_index = pipeline.stage_index(&stage);
        lines.push((
            stage_index,
            order,
            Line {
                stage,
                name: job.name.clone(),
                verdict,
            },
        ));
    }
    lines.sort_by_key(|(stage, order, _)| (*stage, *order));
    let width = |f: fn(&Line) -> &str, title: &str| {
        lines
            .iter()
            .map(|(_, _, l)| f(l).chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let stage_w = width(|l| &l.stage, "STAGE");
    let name_w = width(|l| &l.name, "JOB");
    let row = |stage: &str, name: &str, verdict: &str| {
        format!("{stage:<stage_w$}  {name:<name_w$}  {verdict}")
            .trim_end()
            .to_string()
    };
    let mut out = vec![row("STAGE", "JOB", "RUNS")];
    out.extend(
        lines
            .iter()
            .map(|(_, _, l)| row(&l.stage, &l.name, &l.verdict)),
    );
    Ok(out)
}
