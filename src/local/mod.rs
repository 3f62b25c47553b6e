//! Running GitLab CI jobs on this machine through the executor, the way gitlab-runner would:
//! `gitlab-ecs-executor exec <job>` (gitlab-runner's own `exec` was removed).

pub mod pipeline;
pub mod rules;
pub mod runner;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::settings::{parse_volume, Settings, VolumeSpec};
use pipeline::{Decision, Pipeline, PipelineError};
use runner::{unique_id, Cancel, GitSource, Job, Runner, Service, Var};

/// GitLab's default job timeout.
const DEFAULT_JOB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Set by the SIGINT handler: Ctrl-C cancels the job like GitLab's cancel button.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// `exec` cannot run the job.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The pipeline file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The pipeline file is not usable.
    #[error("{path}: {source}")]
    Pipeline {
        /// The file.
        path: PathBuf,
        /// Why.
        source: PipelineError,
    },
    /// The project is not a usable git checkout.
    #[error("{0}")]
    Git(String),
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// The local runner could not work.
    #[error("the local runner failed: {0}")]
    Runner(std::io::Error),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Job name.
    pub job: String,
    /// The pipeline file.
    pub file: PathBuf,
    /// Run as a tag pipeline for this tag.
    pub tag: Option<String>,
    /// Run as a branch pipeline for this branch (default: the checkout's branch).
    pub branch: Option<String>,
    /// Extra variables, highest precedence.
    pub vars: Vec<(String, String)>,
    /// Release jobs stop before their first change.
    pub dry_run: bool,
    /// Executor settings passed to every stage.
    pub settings: Option<PathBuf>,
}

/// Facts about the local checkout that GitLab would provide.
struct Checkout {
    root: PathBuf,
    sha: String,
    timestamp: String,
    branch: String,
    project_path: String,
}

/// Runs one job of a pipeline file through config / prepare / run / cleanup; returns the
/// exit code: 0 on success (or when the job's rules exclude it), the job's own code on a
/// job failure, 2 on a system failure.
pub fn exec(req: &ExecRequest) -> Result<i32, ExecError> {
    if req.tag.is_some() && req.branch.is_some() {
        return Err(ExecError::Usage(
            "--tag and --branch exclude each other".into(),
        ));
    }
    let text = std::fs::read_to_string(&req.file).map_err(|source| ExecError::Read {
        path: req.file.clone(),
        source,
    })?;
    let pipeline_error = |source| ExecError::Pipeline {
        path: req.file.clone(),
        source,
    };
    let pipeline = Pipeline::parse(&text).map_err(pipeline_error)?;
    let def = pipeline.job(&req.job).map_err(pipeline_error)?;
    let checkout = checkout(&req.file)?;
    let (ref_name, is_tag) = match (&req.tag, &req.branch) {
        (Some(tag), _) => (tag.clone(), true),
        (None, Some(branch)) => (branch.clone(), false),
        (None, None) => (checkout.branch.clone(), false),
    };

    if !pipeline.ignored.is_empty() {
        println!(
            "WARNING: exec does not act on the top-level keys: {}",
            pipeline.ignored.join(", ")
        );
    }
    if !def.ignored.is_empty() {
        println!(
            "WARNING: exec does not act on these keys of `{}`: {}",
            def.name,
            def.ignored.join(", ")
        );
    }

    // What rules see: the predefined ref variables, then pipeline, job and --var values.
    let mut rule_vars: Vec<(String, String)> = vec![
        ("CI_COMMIT_REF_NAME".into(), ref_name.clone()),
        ("CI_PIPELINE_SOURCE".into(), "push".into()),
        ("CI_DEFAULT_BRANCH".into(), "main".into()),
        (
            if is_tag {
                "CI_COMMIT_TAG"
            } else {
                "CI_COMMIT_BRANCH"
            }
            .into(),
            ref_name.clone(),
        ),
    ];
    rule_vars.extend(def.variables.iter().cloned());
    rule_vars.extend(req.vars.iter().cloned());
    let lookup = |name: &str| {
        rule_vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let rule_variables = match def.decide(&lookup).map_err(pipeline_error)? {
        Decision::Excluded(why) => {
            println!(
                "Job `{}` is not run for {} `{ref_name}`: its rules exclude it ({why})",
                def.name,
                if is_tag { "tag" } else { "branch" }
            );
            return Ok(0);
        }
        Decision::Run { variables, .. } => variables,
    };

    let mut variables: Vec<(String, String)> = def.variables.clone();
    variables.extend(rule_variables);
    variables.extend(req.vars.iter().cloned());
    let expand = |s: &str| expand_vars(s, &variables);
    let id = unique_id();
    let job = Job {
        id,
        project_id: project_id(&checkout.project_path),
        project_path: checkout.project_path.clone(),
        concurrent_id: 0,
        name: def.name.clone(),
        stage: def.stage.clone(),
        commit_sha: checkout.sha.clone(),
        commit_timestamp: checkout.timestamp.clone(),
        image: def.image.as_ref().map(|i| expand(&i.name)),
        image_entrypoint: def.image.as_ref().and_then(|i| i.entrypoint.clone()),
        pull_policy: def
            .image
            .as_ref()
            .map(|i| i.pull_policy.clone())
            .unwrap_or_default(),
        services: def
            .services
            .iter()
            .map(|s| Service {
                name: expand(&s.name),
                alias: s.alias.clone(),
                entrypoint: s.entrypoint.clone(),
                command: s.command.clone(),
                variables: s.variables.clone(),
            })
            .collect(),
        variables: variables
            .iter()
            .map(|(key, value)| Var {
                key: key.clone(),
                value: value.clone(),
                masked: false,
                file: false,
                raw: false,
            })
            .collect(),
        image_user: None,
        script: def.script.clone(),
        steps: Vec::new(),
        after_script: def.after_script.clone(),
        pre_get_sources: Vec::new(),
        post_get_sources: Vec::new(),
        cache: Vec::new(),
        artifacts: Vec::new(),
        dependencies: Vec::new(),
        git: Some(GitSource {
            repo: checkout.root.clone(),
            sha: checkout.sha.clone(),
            ref_name: ref_name.clone(),
            is_tag,
        }),
        timeout: DEFAULT_JOB_TIMEOUT.as_secs(),
    };

    let binary = std::env::current_exe().map_err(ExecError::Runner)?;
    let overlay = settings_with_checkout(req.settings.as_deref(), &checkout.root)?;
    let mut runner = Runner::new(&binary, Some(overlay.path()));
    if req.dry_run {
        runner.run_args.push("--dry-run".into());
    }
    runner.runner_id = 0;
    runner.short_token = "local".into();
    runner.echo = true;
    runner.cancel_flag = Some(&INTERRUPTED);
    install_interrupt_handler();
    println!(
        "Running job `{}` (stage {}) of {} for {} {} at {} through gitlab-ecs-executor",
        def.name,
        def.stage,
        req.file.display(),
        if is_tag { "tag" } else { "branch" },
        ref_name,
        &checkout.sha[..checkout.sha.len().min(8)]
    );
    let result = runner.drive(&job, Cancel::No).map_err(ExecError::Runner)?;
    Ok(result.status.exit_code())
}

/// The operator's settings plus a read-only bind of the checkout at its own path: the job's
/// helper container clones it from there as it would clone from GitLab (nothing else of
/// the host is mounted).
fn settings_with_checkout(
    explicit: Option<&Path>,
    root: &Path,
) -> Result<tempfile::NamedTempFile, ExecError> {
    let mut table = match Settings::locate(explicit) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ExecError::Read {
                path: path.clone(),
                source,
            })?;
            text.parse::<toml::Table>().map_err(|e| {
                ExecError::Usage(format!("{}: {}", path.display(), e.to_string().trim_end()))
            })?
        }
        None => toml::Table::new(),
    };
    let docker = table
        .entry("docker")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let bind = format!("{0}:{0}:ro", root.display());
    let mounts_root = |entry: &toml::Value| {
        entry
            .as_str()
            .and_then(|e| parse_volume(e).ok())
            .is_some_and(|v| match v {
                VolumeSpec::Cache { destination } | VolumeSpec::Bind { destination, .. } => {
                    Path::new(&destination) == root
                }
            })
    };
    match docker {
        toml::Value::Table(docker) => match docker
            .entry("volumes")
            .or_insert_with(|| toml::Value::Array(Vec::new()))
        {
            // The operator's settings may already mount it.
            toml::Value::Array(volumes) if volumes.iter().any(mounts_root) => {}
            toml::Value::Array(volumes) => volumes.push(toml::Value::String(bind)),
            _ => {
                return Err(ExecError::Usage(
                    "settings: docker.volumes must be a list".into(),
                ))
            }
        },
        _ => {
            return Err(ExecError::Usage(
                "settings: [docker] must be a table".into(),
            ))
        }
    }
    let mut file = tempfile::Builder::new()
        .prefix("gitlab-ecs-executor-exec-")
        .suffix(".toml")
        .tempfile()
        .map_err(ExecError::Runner)?;
    std::io::Write::write_all(&mut file, table.to_string().as_bytes())
        .map_err(ExecError::Runner)?;
    Ok(file)
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
}

/// `$NAME` and `${NAME}` from `vars` (later entries win); unknown names expand to nothing,
/// as in GitLab.
fn expand_vars(s: &str, vars: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            let braced = chars.get(i + 1) == Some(&'{');
            let start = i + 1 + usize::from(braced);
            let mut end = start;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            if end > start && (!braced || chars.get(end) == Some(&'}')) {
                out.push_str(&lookup(&chars[start..end].iter().collect::<String>()));
                i = end + usize::from(braced);
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn git(dir: &Path, args: &[&str]) -> Result<String, ExecError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| ExecError::Git(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(ExecError::Git(format!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The git checkout holding `file`: the job runs its committed HEAD, as gitlab-runner's old
/// `exec` did (uncommitted changes are not part of a pipeline).
fn checkout(file: &Path) -> Result<Checkout, ExecError> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let root = git(dir, &["rev-parse", "--show-toplevel"])
        .map_err(|e| ExecError::Git(format!("exec runs jobs of a git checkout: {e}")))?;
    let root = PathBuf::from(root);
    let sha = git(&root, &["rev-parse", "HEAD"])
        .map_err(|e| ExecError::Git(format!("the checkout has no commit to run: {e}")))?;
    let timestamp = git(&root, &["log", "-1", "--format=%cI"])?;
    let branch =
        git(&root, &["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|_| "main".into());
    let branch = if branch == "HEAD" {
        "main".into()
    } else {
        branch
    };
    let project_path = git(&root, &["config", "--get", "remote.origin.url"])
        .ok()
        .and_then(|url| project_path_of(&url))
        .unwrap_or_else(|| {
            format!(
                "local/{}",
                root.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "project".into())
            )
        });
    Ok(Checkout {
        root,
        sha,
        timestamp,
        branch,
        project_path,
    })
}

/// A project id that stays the same for a project path: GitLab's ids are not known locally.
fn project_id(project_path: &str) -> u64 {
    // FNV-1a, small enough to read as an id.
    let hash = project_path
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    hash % 1_000_000
}

/// `group/project` from a clone URL (`https://host/group/project.git`, `git@host:group/project.git`).
fn project_path_of(url: &str) -> Option<String> {
    let path = url.trim_end_matches('/').trim_end_matches(".git");
    let path = path
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.starts_with("//"))
        .unwrap_or(path);
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [.., group, project] => Some(format!("{group}/{project}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_expansion() {
        let vars = vec![
            ("A".to_string(), "x".to_string()),
            ("A".to_string(), "y".to_string()),
        ];
        assert_eq!(expand_vars("img:$A-${A}-$B-$", &vars), "img:y-y--$");
    }

    #[test]
    fn project_paths_from_remotes() {
        assert_eq!(
            project_path_of("https://gitlab.example.com/group/app.git").as_deref(),
            Some("group/app")
        );
        assert_eq!(
            project_path_of("git@gitlab.example.com:group/sub/app.git").as_deref(),
            Some("sub/app")
        );
        assert_eq!(
            project_path_of("/srv/repos/app").as_deref(),
            Some("repos/app")
        );
    }
}
