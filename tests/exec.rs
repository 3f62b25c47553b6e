//! `gitlab-ecs-executor exec`: jobs of a `.gitlab-ci.yml` run on this machine through the
//! same config / prepare / run / cleanup path gitlab-runner uses.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::release::{Fixture, CLUSTER, FAMILY, SERVICE};
use crate::support::scripted_ecs::Script;
use crate::support::*;

const SEED_PIPELINE: &str = include_str!("fixtures/seed.gitlab-ci.yml");

fn exec(settings: &Path, dir: &Path, args: &[&str], env: &[(String, String)]) -> (Output, String) {
    output_of(
        Command::new(binary())
            .arg("--config")
            .arg(settings)
            .arg("exec")
            .args(args)
            .current_dir(dir)
            .envs(env.iter().cloned()),
    )
}

#[test]
fn the_example_pipelines_jobs_run_on_the_engine() {
    base_image();
    let env = TestEnv::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for job in ["hello", "service-check"] {
        let (out, log) = exec(
            &env.settings,
            repo,
            &[job, "--file", "runner-config/.gitlab-ci.yml"],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{job}: {log}");
        assert!(log.contains("Job succeeded"), "{job}: {log}");
    }
    let (_, log) = exec(
        &env.settings,
        repo,
        &["hello", "--file", "runner-config/.gitlab-ci.yml"],
        &[],
    );
    assert!(
        log.contains("Hello from job") && log.contains("hello finished with status success"),
        "{log}"
    );
}

#[test]
fn a_job_excluded_by_its_rules_says_so() {
    let env = TestEnv::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (out, log) = exec(
        &env.settings,
        repo,
        &[
            "task-deploy",
            "--file",
            "runner-config/.gitlab-ci.yml",
            "--branch",
            "main",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        "Job `task-deploy` is not run for branch `main`: its rules exclude it",
    );
    assert_logged(
        &log,
        "does not act on these keys of `task-deploy`: environment, resource_group",
    );
    let (out, log) = exec(
        &env.settings,
        repo,
        &["nope", "--file", "runner-config/.gitlab-ci.yml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        log.contains("no job `nope`") && log.contains("hello"),
        "{log}"
    );
}

#[test]
fn a_failing_job_exits_with_its_own_code() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        &format!(
            "fail:\n  image: {}\n  script:\n    - exit 7\n",
            base_image()
        ),
    )]);
    let (out, log) = p.exec(&["fail"]);
    assert_eq!(out.status.code(), Some(7), "{log}");
    assert_logged(&log, "ERROR: Job failed: exit status 7");
}

#[test]
fn the_seed_articles_pipeline_releases_natively_on_a_version_tag() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v0.9.0", f.repository()), Script::default());
    f.use_ecs(&ecs);
    f.commit_file(".gitlab-ci.yml", SEED_PIPELINE);
    f.tag("v1.0.0");
    let vars = [
        format!("ECR_REGISTRY={}", f.registry.host),
        "ECR_REPOSITORY=group/app".into(),
        format!("ECS_CLUSTER={CLUSTER}"),
        format!("ECS_SERVICE={SERVICE}"),
        format!("TASK_DEFINITION={FAMILY}"),
    ];
    let mut args = vec!["--tag", "v1.0.0"];
    for v in &vars {
        args.extend(["--var", v.as_str()]);
    }
    let env = f.env.runner.process_env.clone();
    let (out, log) = exec(
        &f.env.settings,
        &f.repo,
        &[&["image-build"], args.as_slice()].concat(),
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        !log.contains("docker login"),
        "the job's script must not run: {log}"
    );
    assert!(
        f.registry.manifest("group/app", "v1.0.0").is_some(),
        "{log}"
    );

    let (out, log) = exec(
        &f.env.settings,
        &f.repo,
        &[&["task-deploy"], args.as_slice()].concat(),
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, "already in the registry");
    assert_logged(&log, "The job's image and services are not started");
    assert!(!log.contains("services-stable"), "{log}");
    let (td, _) = ecs.task_definition(&ecs.service_task_definition());
    assert_eq!(
        td["containerDefinitions"][1]["image"],
        format!("{}:v1.0.0", f.repository())
    );
}

/// A project of its own for an `exec` test: a git repository under a unique name (so its
/// project volumes are its own, whatever runs beside it), removed with its volumes when the
/// test ends.
pub(crate) struct Project {
    /// Holds the repository for the test's lifetime.
    _dir: tempfile::TempDir,
    pub(crate) repo: std::path::PathBuf,
    env: TestEnv,
    /// Every log, to find the project's volumes by name at the end.
    logs: std::cell::RefCell<Vec<String>>,
}

impl Project {
    /// A project whose first commit holds `files`.
    pub(crate) fn new(files: &[(&str, &str)]) -> Project {
        base_image();
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join(format!("app-{}", runner::unique_id()));
        std::fs::create_dir_all(&repo).expect("repo dir");
        stand_ins::git(&repo, &["init", "-q"]);
        stand_ins::commit(&repo, files, "first");
        Project {
            _dir: dir,
            repo,
            env: TestEnv::new(),
            logs: Default::default(),
        }
    }

    /// `exec ARGS` in the project's root with the test settings.
    pub(crate) fn exec(&self, args: &[&str]) -> (Output, String) {
        self.exec_in(&self.repo, &self.env.settings, args)
    }

    /// `exec ARGS` in `dir` with `--config settings` as given (relative to `dir`).
    fn exec_in(&self, dir: &Path, settings: &Path, args: &[&str]) -> (Output, String) {
        let (out, log) = exec(settings, dir, args, &[]);
        self.logs.borrow_mut().push(log.clone());
        (out, log)
    }

    /// The id of `rev`.
    fn sha(&self, rev: &str) -> String {
        let out = Command::new("git")
            .args(["rev-parse", rev])
            .current_dir(&self.repo)
            .output()
            .expect("git");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        // `exec` names the project's volumes in every job log ("Running on runner-local-…").
        let marker = "runner-local-project-";
        let mut prefixes: Vec<String> = Vec::new();
        for log in self.logs.borrow().iter() {
            for (at, _) in log.match_indices(marker) {
                let rest = &log[at + marker.len()..];
                let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let prefix = format!("{marker}{id}-");
                if !id.is_empty() && !prefixes.contains(&prefix) {
                    prefixes.push(prefix);
                }
            }
        }
        for prefix in prefixes {
            let names: Vec<String> = volumes()
                .into_iter()
                .filter(|v| v.starts_with(&prefix))
                .collect();
            if !names.is_empty() {
                let _ = Command::new("docker")
                    .args(["volume", "rm", "-f"])
                    .args(&names)
                    .output();
            }
        }
    }
}

/// Fails unless `log` holds `needle` exactly `times` times.
#[track_caller]
fn assert_logged_times(log: &str, needle: &str, times: usize) {
    assert_eq!(log.matches(needle).count(), times, "`{needle}` in:\n{log}");
}

const VERSION_PIPELINE: &str = r#"
stages: [build, release]
variables:
  APP: shop
version:
  stage: build
  image: gitlab-ecs-executor/example:1
  script:
    - echo "version $(cat VERSION) of $APP"
    - echo "sha=$CI_COMMIT_SHA tag=$CI_COMMIT_TAG ref=$CI_COMMIT_REF_NAME"
"#;

#[test]
fn a_tag_runs_at_the_tags_commit_not_head() {
    let p = Project::new(&[(".gitlab-ci.yml", VERSION_PIPELINE), ("VERSION", "1.0.0")]);
    stand_ins::git(&p.repo, &["tag", "v1.0.0"]);
    stand_ins::commit(&p.repo, &[("VERSION", "2.0.0")], "second");
    let tagged = p.sha("v1.0.0");

    let (out, log) = p.exec(&["version", "--tag", "v1.0.0"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, "version 1.0.0 of shop");
    assert_logged(&log, &format!("sha={tagged} tag=v1.0.0 ref=v1.0.0"));
    assert_logged(
        &log,
        &format!("the jobs check out commit {} (tag `v1.0.0`)", &tagged[..8]),
    );

    let (out, log) = p.exec(&["version"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, "version 2.0.0 of shop");
    assert_logged(&log, &format!("sha={} tag= ref=main", p.sha("HEAD")));

    let (out, log) = p.exec(&["version", "--tag", "v9.9.9"]);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert_logged(&log, "there is no tag `v9.9.9`");
    assert!(!log.contains("Running job"), "{log}");
}

#[test]
fn relative_paths_the_working_tree_and_a_dry_run_that_does_nothing_are_said() {
    let p = Project::new(&[
        (".gitlab-ci.yml", VERSION_PIPELINE),
        ("VERSION", "1.0.0"),
        ("sub/README.md", "a subdirectory"),
    ]);
    std::fs::copy(&p.env.settings, p.repo.join("ci-settings.toml")).expect("settings");
    std::fs::write(p.repo.join("VERSION"), "1.1.0-edited").expect("edit");

    // From a subdirectory, with --file and --config relative to it: stages run elsewhere.
    let (out, log) = p.exec_in(
        &p.repo.join("sub"),
        Path::new("../ci-settings.toml"),
        &["version", "--file", "../.gitlab-ci.yml", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        "Using locally found image gitlab-ecs-executor/example:1 (pull policy never)",
    );
    assert_logged_times(
        &log,
        "read from the working tree; the jobs check out commit",
        1,
    );
    assert_logged(
        &log,
        "WARNING: the working tree has uncommitted changes to tracked files (VERSION): the jobs check out commit",
    );
    assert_logged(&log, "version 1.0.0 of shop");
    assert!(!log.contains("1.1.0-edited"), "{log}");
    assert_logged(
        &log,
        "--dry-run has no effect on `version`: it is not a release (its stage `build` is not a release stage)",
    );

    // The pipeline file itself is read from the working tree, and said to differ.
    std::fs::write(
        p.repo.join(".gitlab-ci.yml"),
        VERSION_PIPELINE.replace("APP: shop", "APP: edited-shop"),
    )
    .expect("edit");
    let (out, log) = p.exec(&["version"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, "version 1.0.0 of edited-shop");
    assert_logged(
        &log,
        "WARNING: .gitlab-ci.yml in the working tree differs from commit",
    );
}

#[test]
fn variables_expand_as_on_gitlab() {
    let pipeline = r#"
variables:
  REGISTRY: registry.example.com
  IMAGE: ${IMAGE_NAME}:$CI_COMMIT_REF_SLUG
  IMAGE_NAME: $REGISTRY/group/app
  BASE_IMAGE: gitlab-ecs-executor/example:1
  SVC: gitlab-ecs-executor/example
  PRICE: "costs $$5"
  RAW:
    value: "keep $IMAGE_NAME and $$ as written"
    expand: false
  DEPLOY_ENV: staging
stages: [build]
show:
  stage: build
  image: $BASE_IMAGE
  services:
    - name: ${SVC}:1
      alias: web
      command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
  variables:
    DEPLOY_ENV: production
    TARGET: "$DEPLOY_ENV-$CI_COMMIT_REF_NAME"
    FROM_CLI: "cli says $GREETING"
    OUT_DIR: $CI_PROJECT_DIR/out
  script:
    - echo "image=$IMAGE"
    - echo "price=$PRICE"
    - echo "raw=$RAW"
    - echo "target=$TARGET"
    - echo "cli=$FROM_CLI"
    - echo "out=$OUT_DIR"
    - echo "job image=$CI_JOB_IMAGE"
    - wget -qO- http://web:8080/ > /dev/null && echo "service answered"
"#;
    let p = Project::new(&[(".gitlab-ci.yml", pipeline)]);
    let (out, log) = p.exec(&["show", "--var", "GREETING=hello"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    for line in [
        "image=registry.example.com/group/app:main",
        "price=costs $5",
        "raw=keep $IMAGE_NAME and $$ as written",
        "target=production-main",
        "cli=cli says hello",
        "job image=gitlab-ecs-executor/example:1",
        "service answered",
    ] {
        assert_logged(&log, &format!("\n{line}\n"));
    }
    let project = p.repo.file_name().unwrap().to_string_lossy().into_owned();
    assert_logged(&log, &format!("out=/builds/local/{project}/out"));
}

#[test]
fn included_templates_extends_and_references_build_the_jobs() {
    let main = r#"
include:
  - local: ci/templates.yml
  - 'ci/jobs/*.yml'
stages: [lint, test]
variables:
  APP: shop
unit:
  extends: .node-job
  stage: test
  script:
    - !reference [.setup, script]
    - echo "unit tests of $APP with $RUNTIME"
"#;
    let templates = r#"
.node-job:
  image: gitlab-ecs-executor/example:1
  variables:
    RUNTIME: node-22
  before_script:
    - echo "template before_script"
.setup:
  script:
    - echo "setup from a reference"
"#;
    let lint = "lint:\n  extends: .node-job\n  stage: lint\n  script: [echo \"lint $APP\"]\n";
    let p = Project::new(&[
        (".gitlab-ci.yml", main),
        ("ci/templates.yml", templates),
        ("ci/jobs/lint.yml", lint),
    ]);
    let (out, log) = p.exec(&["unit"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        "Pipeline .gitlab-ci.yml (with ci/templates.yml, ci/jobs/lint.yml) read from the working tree",
    );
    let before = log
        .find("\ntemplate before_script\n")
        .expect("before_script ran");
    let setup = log
        .find("\nsetup from a reference\n")
        .expect("the reference ran");
    let own = log
        .find("\nunit tests of shop with node-22\n")
        .expect("the script ran");
    assert!(before < setup && setup < own, "{log}");

    let (out, log) = p.exec(&["lint"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, "\nlint shop\n");
}

#[test]
fn rules_changes_compare_with_the_parent_commit() {
    let pipeline = r#"
default:
  image: gitlab-ecs-executor/example:1
docs:
  script: [echo docs built]
  rules:
    - changes: [docs/**/*.md]
backend:
  script: [echo backend built]
  rules:
    - changes: ["src/**/*.{rs,toml}"]
"#;
    let p = Project::new(&[
        (".gitlab-ci.yml", pipeline),
        ("docs/index.md", "# Docs"),
        ("src/main.rs", "fn main() {}"),
    ]);
    let first = p.sha("HEAD");
    stand_ins::commit(&p.repo, &[("docs/guide/intro.md", "# Intro")], "docs only");
    let second = p.sha("HEAD");

    let (out, log) = p.exec(&["docs"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        &format!(
            "`rules: changes` compare commit {} with its parent {}",
            &second[..8],
            &first[..8]
        ),
    );
    assert_logged(&log, "\ndocs built\n");

    let (out, log) = p.exec(&["backend"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        "Job `backend` is not run for branch `main`: its rules exclude it (no rule matched (changes: src/**/*.{rs,toml}))",
    );
    assert!(!log.contains("backend built"), "{log}");

    // A tag pipeline has nothing to compare with: changes match, as on GitLab.
    stand_ins::git(&p.repo, &["tag", "v1.0.0"]);
    let (out, log) = p.exec(&["backend", "--tag", "v1.0.0"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, "\nbackend built\n");
}

#[test]
fn needed_jobs_run_first_and_pass_artifacts_caches_and_dotenv_variables() {
    let pipeline = r#"
stages: [build, test, deploy]
default:
  image: gitlab-ecs-executor/example:1
variables:
  APP: shop
compile:
  stage: build
  script:
    - mkdir -p dist .deps
    - echo "binary of $APP at $CI_COMMIT_SHORT_SHA" > dist/app
    - echo "library" > .deps/lib
    - printf 'BUILD_VERSION=1.4.%s\nBUILT_BY=compile\n' "$CI_JOB_ID" > build.env
  cache:
    key: deps-$CI_COMMIT_REF_SLUG
    paths: [.deps/]
  artifacts:
    paths: [dist/]
    reports:
      dotenv: build.env
lint:
  stage: build
  script: [echo linted]
test:
  stage: test
  needs: [compile]
  cache:
    key: deps-$CI_COMMIT_REF_SLUG
    paths: [.deps/]
    policy: pull
  script:
    - cat dist/app
    - test -f .deps/lib && echo "cache restored"
    - echo "testing version $BUILD_VERSION built by $BUILT_BY"
deploy:
  stage: deploy
  needs: [test, {job: compile, artifacts: true}]
  script:
    - test -f dist/app && echo "deploying $BUILD_VERSION"
fails:
  stage: build
  script: [exit 3]
after-failure:
  stage: test
  needs: [fails]
  script: [echo should not run]
"#;
    let p = Project::new(&[(".gitlab-ci.yml", pipeline)]);
    let (out, log) = p.exec(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        "Running 3 jobs in this order: `compile`, `test`, `deploy`",
    );
    assert!(!log.contains("linted"), "{log}");
    let sha = p.sha("HEAD");
    assert_logged(&log, &format!("\nbinary of shop at {}\n", &sha[..8]));
    assert_logged(&log, "\ncache restored\n");
    assert_logged(
        &log,
        "Passing build.env of `compile` on to the jobs that need it: BUILD_VERSION, BUILT_BY",
    );
    let version = log
        .split("\ntesting version 1.4.")
        .nth(1)
        .and_then(|rest| rest.split(" built by compile\n").next())
        .unwrap_or_else(|| panic!("test got the dotenv variables:\n{log}"));
    assert_logged(&log, &format!("\ndeploying 1.4.{version}\n"));

    let (out, log) = p.exec(&["after-failure"]);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert_logged(
        &log,
        "ERROR: job `after-failure` is not run: `fails`, which it waits for, failed (exit code 3)",
    );
    assert!(!log.contains("should not run"), "{log}");
}

const MATRIX_PIPELINE: &str = r#"
stages: [build, deploy]
default:
  image: gitlab-ecs-executor/example:1
deploy:
  stage: deploy
  parallel:
    matrix:
      - PROVIDER: aws
        REGION: [eu-west-1, us-east-1]
      - PROVIDER: gcp
        REGION: europe-west4
  script:
    - echo "deploying to $PROVIDER $REGION as $CI_JOB_NAME ($CI_NODE_INDEX/$CI_NODE_TOTAL)"
"#;

#[test]
fn a_matrix_job_runs_every_instance_or_the_ones_asked_for() {
    let p = Project::new(&[(".gitlab-ci.yml", MATRIX_PIPELINE)]);
    let (out, log) = p.exec(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    for line in [
        "deploying to aws eu-west-1 as deploy: [aws, eu-west-1] (1/3)",
        "deploying to aws us-east-1 as deploy: [aws, us-east-1] (2/3)",
        "deploying to gcp europe-west4 as deploy: [gcp, europe-west4] (3/3)",
    ] {
        assert_logged(&log, &format!("\n{line}\n"));
    }
    assert_logged_times(&log, "Job succeeded", 3);

    let (out, log) = p.exec(&["deploy", "--matrix", "PROVIDER=aws,REGION=us-east-1"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        "\ndeploying to aws us-east-1 as deploy: [aws, us-east-1] (2/3)\n",
    );
    assert_logged_times(&log, "Job succeeded", 1);

    let (out, log) = p.exec(&["deploy: [gcp, europe-west4]"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged_times(&log, "Job succeeded", 1);

    let (out, log) = p.exec(&["deploy", "--matrix", "PROVIDER=azure"]);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert_logged(&log, "no instance has PROVIDER=azure");
}

#[test]
fn list_shows_every_job_its_stage_and_whether_it_runs_for_the_ref() {
    let main = r#"
include: ci/release.yml
stages: [build, test, deploy]
default:
  image: gitlab-ecs-executor/example:1
compile:
  stage: build
  script: [make]
  parallel:
    matrix:
      - ARCH: [amd64, arm64]
unit:
  stage: test
  script: [make test]
container:
  stage: build
  script: [docker build .]
  rules:
    - exists: [Dockerfile]
review:
  stage: deploy
  script: [deploy review]
  when: manual
downstream:
  stage: deploy
  trigger: group/other
"#;
    let release = r#"
production:
  stage: deploy
  script: [deploy]
  rules:
    - if: $CI_COMMIT_TAG =~ /^v\d+\.\d+\.\d+$/
"#;
    let p = Project::new(&[(".gitlab-ci.yml", main), ("ci/release.yml", release)]);
    stand_ins::git(&p.repo, &["tag", "v2.0.0"]);
    let (out, log) = p.exec(&["--list"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let rows: Vec<Vec<&str>> = log
        .lines()
        .skip_while(|l| !l.starts_with("Jobs for branch `main`:"))
        .skip(2)
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    let row = |job: &str| {
        rows.iter()
            .find(|r| r.get(1) == Some(&job))
            .unwrap_or_else(|| panic!("no row for {job}:\n{log}"))
            .clone()
    };
    assert_eq!(
        row("compile: [amd64]"),
        ["build", "compile: [amd64]", "yes"]
    );
    assert_eq!(
        row("compile: [arm64]"),
        ["build", "compile: [arm64]", "yes"]
    );
    assert_eq!(
        row("container")[2],
        "no: no rule matched (exists: Dockerfile)"
    );
    assert_eq!(row("unit"), ["test", "unit", "yes"]);
    assert_eq!(row("review"), ["deploy", "review", "yes (manual)"]);
    assert!(
        row("production")[2].starts_with("no: no rule matched"),
        "{log}"
    );
    assert!(
        row("downstream")[2].starts_with("cannot run: job `downstream`: `trigger`"),
        "{log}"
    );
    // In stage order, then in the merged file's order (included files first).
    let order: Vec<&str> = rows.iter().filter_map(|r| r.get(1).copied()).collect();
    assert_eq!(
        order,
        [
            "compile: [amd64]",
            "compile: [arm64]",
            "container",
            "unit",
            "production",
            "review",
            "downstream"
        ]
    );

    let (out, log) = p.exec(&["--list", "--tag", "v2.0.0"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, "Jobs for tag `v2.0.0`:");
    let production = log
        .lines()
        .find(|l| l.contains(" production "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(production.trim_end().ends_with("yes"), "{log}");
}

#[test]
fn an_unsupported_job_does_not_block_the_others_and_timeouts_are_honoured() {
    let pipeline = r#"
default:
  image: gitlab-ecs-executor/example:1
  tags: [docker]
  retry: 2
  interruptible: true
  timeout: 10 minutes
build:
  script: [echo built]
  environment: production
downstream:
  trigger: group/other-project
slow:
  timeout: 3 seconds
  script:
    - echo "started"
    - sleep 30
    - echo "never printed"
"#;
    let p = Project::new(&[(".gitlab-ci.yml", pipeline)]);
    let (out, log) = p.exec(&["build"]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        "WARNING: exec does not act on: default: tags, default: retry, default: interruptible",
    );
    assert_logged(
        &log,
        "WARNING: exec does not act on these keys of `build`: environment",
    );
    assert_logged(&log, "\nbuilt\n");

    let (out, log) = p.exec(&["downstream"]);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert_logged(
        &log,
        "job `downstream`: `trigger` is not supported by exec: a trigger job starts a downstream pipeline on GitLab",
    );

    let started = std::time::Instant::now();
    let (out, log) = p.exec(&["slow"]);
    assert_eq!(out.status.code(), Some(124), "{log}");
    assert_logged(&log, "\nstarted\n");
    assert_logged(
        &log,
        "ERROR: Job failed: execution took longer than 3s seconds",
    );
    assert!(!log.contains("never printed"), "{log}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "{log}"
    );
}
