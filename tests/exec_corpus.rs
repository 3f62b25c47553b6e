//! The `exec` corpus: pipelines written from GitLab's documented behaviour, one case per
//! construct and its neighbours (`tests/exec_corpus/*.yml`), each run through
//! `exec --list` and, where it says, `exec JOB` in a project of its own, with the jobs
//! listed, the jobs run and their order, what the log says and the exit code it expects.
//! docs/exec.md's corpus table is checked against the constructs the cases name.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::exec::Project;
use crate::support::*;

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Its name.
    case: String,
    /// The construct it covers, as docs/exec.md's corpus table names it.
    construct: String,
    /// `tag vX` or `branch NAME` (default: the branch `main`).
    #[serde(default)]
    r#ref: Option<String>,
    /// The `origin` remote (CI_PROJECT_PATH comes from it).
    #[serde(default)]
    remote: Option<String>,
    /// The commit message (default `first`).
    #[serde(default)]
    message: Option<String>,
    /// Other files of the commit.
    #[serde(default)]
    files: Vec<(String, String)>,
    /// `--var` values.
    #[serde(default)]
    vars: Vec<String>,
    /// Other projects, each a git checkout of these files given with `--include-project`:
    /// project path and files.
    #[serde(default)]
    projects: Vec<(String, Vec<(String, String)>)>,
    /// `.gitlab-ci.yml`.
    pipeline: String,
    /// Expected `--list` rows: job name and how its RUNS column starts.
    #[serde(default)]
    list: Vec<(String, String)>,
    /// `--list` exit code (default 0).
    #[serde(default)]
    list_exit: Option<i32>,
    /// The job to run with `exec`.
    #[serde(default)]
    exec: Option<String>,
    /// Its exit code (default 0).
    #[serde(default)]
    exit: Option<i32>,
    /// The jobs that run, in order.
    #[serde(default)]
    order: Option<Vec<String>>,
    /// Text the output (of `exec` if the case runs a job, else of `--list`) holds.
    #[serde(default)]
    output: Vec<String>,
    /// Text it does not hold.
    #[serde(default)]
    absent: Vec<String>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exec_corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/exec_corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a corpus file");
        let cases: Vec<Case> =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        all.extend(cases);
    }
    all
}

/// The `--list` rows: (job, verdict).
fn rows(listing: &str) -> Vec<(String, String)> {
    let mut in_table = false;
    let mut out = Vec::new();
    for line in listing.lines() {
        let line = line.trim_start();
        if line.starts_with("STAGE") && line.contains("RUNS") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let cols: Vec<&str> = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if let [_, job, verdict, ..] = cols.as_slice() {
            out.push((job.to_string(), verdict.to_string()));
        }
    }
    out
}

/// The jobs a log ran, in order.
fn ran(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.strip_prefix("Running job `"))
        .filter_map(|rest| rest.split_once("` (stage ").map(|(job, _)| job.to_string()))
        .collect()
}

/// Runs one case; the failures it found, one line each.
fn run(case: &Case) -> Vec<String> {
    let mut files: Vec<(&str, &str)> = vec![(".gitlab-ci.yml", case.pipeline.as_str())];
    files.extend(case.files.iter().map(|(p, c)| (p.as_str(), c.as_str())));
    let project = Project::new(&files);
    let repo = &project.repo;
    if let Some(message) = &case.message {
        stand_ins::git(repo, &["commit", "-q", "--amend", "-m", message]);
    }
    if let Some(remote) = &case.remote {
        stand_ins::git(repo, &["remote", "add", "origin", remote]);
    }
    let mut args: Vec<String> = Vec::new();
    match case.r#ref.as_deref().and_then(|r| r.split_once(' ')) {
        Some(("tag", tag)) => {
            stand_ins::git(repo, &["tag", tag]);
            args.extend(["--tag".into(), tag.into()]);
        }
        Some(("branch", branch)) => {
            stand_ins::git(repo, &["checkout", "-q", "-b", branch]);
            args.extend(["--branch".into(), branch.into()]);
        }
        _ => {}
    }
    for var in &case.vars {
        args.extend(["--var".into(), var.clone()]);
    }
    // Kept until the case ends: the checkouts `--include-project` names.
    let others = tempfile::tempdir().expect("temp dir");
    for (i, (path, files)) in case.projects.iter().enumerate() {
        let dir = others.path().join(i.to_string());
        std::fs::create_dir_all(&dir).expect("project dir");
        stand_ins::git(&dir, &["init", "-q"]);
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        stand_ins::commit(&dir, &files, "templates");
        args.extend([
            "--include-project".into(),
            format!("{path}={}", dir.display()),
        ]);
    }
    let mut problems = Vec::new();
    let mut list_args: Vec<&str> = vec!["--list"];
    list_args.extend(args.iter().map(String::as_str));
    let (out, listing) = project.exec(&list_args);
    let expected = case.list_exit.unwrap_or(0);
    if out.status.code() != Some(expected) {
        problems.push(format!(
            "--list exited {:?}, not {expected}",
            out.status.code()
        ));
    }
    let listed = rows(&listing);
    for (job, verdict) in &case.list {
        match listed.iter().find(|(j, _)| j == job) {
            Some((_, v)) if v.starts_with(verdict.as_str()) => {}
            Some((_, v)) => problems.push(format!("--list says `{job}`: `{v}`, not `{verdict}…`")),
            None => problems.push(format!("--list has no job `{job}`")),
        }
    }
    let log = match &case.exec {
        None => listing,
        Some(job) => {
            let mut exec_args: Vec<&str> = vec![job.as_str()];
            exec_args.extend(args.iter().map(String::as_str));
            let (out, log) = project.exec(&exec_args);
            let expected = case.exit.unwrap_or(0);
            if out.status.code() != Some(expected) {
                problems.push(format!(
                    "exec exited {:?}, not {expected}",
                    out.status.code()
                ));
            }
            if let Some(order) = &case.order {
                let order: Vec<String> = order.clone();
                if ran(&log) != order {
                    problems.push(format!("ran {:?}, not {order:?}", ran(&log)));
                }
            }
            log
        }
    };
    for text in &case.output {
        if !log.contains(text.as_str()) {
            problems.push(format!("the output lacks `{text}`"));
        }
    }
    for text in &case.absent {
        if log.contains(text.as_str()) {
            problems.push(format!("the output has `{text}`"));
        }
    }
    if !problems.is_empty() {
        problems.insert(
            0,
            format!("\n--- case `{}` ({}):\n{log}", case.case, case.construct),
        );
    }
    problems
}

#[test]
fn every_case_of_the_corpus_behaves_as_on_gitlab() {
    base_image();
    let cases = cases();
    assert!(cases.len() >= 60, "the corpus has {} cases", cases.len());
    let names: BTreeSet<&str> = cases.iter().map(|c| c.case.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names repeat");
    let only = std::env::var("EXEC_CORPUS_CASE").ok();
    let failures: Vec<String> = cases
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| c.case.contains(o)))
        .flat_map(run)
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn docs_name_every_construct_the_corpus_covers_and_no_other() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/exec.md"))
        .expect("docs/exec.md");
    let section = docs
        .split("## Checked against GitLab")
        .nth(1)
        .expect("docs/exec.md has a `Checked against GitLab` section");
    let documented: BTreeSet<String> = section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(c, _)| c.to_string()))
        .collect();
    let covered: BTreeSet<String> = cases().into_iter().map(|c| c.construct).collect();
    assert_eq!(
        documented, covered,
        "docs/exec.md's table and the corpus name different constructs"
    );
}
