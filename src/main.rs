//! The binary gitlab-runner calls for each custom-executor stage, and the operator commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gitlab_ecs_executor::agent;
use gitlab_ecs_executor::commands::{self, CommandError, Target};
use gitlab_ecs_executor::exec::{self, ExecRequest};
use gitlab_ecs_executor::joblog::JobLog;
use gitlab_ecs_executor::protocol::{ExitContract, JobContext, Outcome, Stage};
use gitlab_ecs_executor::release::ecs::HookAction;
use gitlab_ecs_executor::release::verbs::rollback::RollbackTo;
use gitlab_ecs_executor::settings::Settings;
use gitlab_ecs_executor::stages::{self, RunOptions, StageError};

/// GitLab Runner custom executor: CI jobs in Docker containers, native ECR/ECS releases.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Executor settings file (default: $GITLAB_ECS_EXECUTOR_CONFIG, then
    /// /etc/gitlab-ecs-executor/config.toml, then built-in defaults).
    #[arg(long, global = true, value_name = "settings.toml")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// config_exec: print the runner configuration as one JSON object.
    Config,
    /// prepare_exec: pull images and start the job container and services.
    Prepare,
    /// run_exec: run one stage script.
    Run {
        /// Release jobs stop before their first change (for `exec --dry-run`).
        #[arg(long)]
        dry_run: bool,
        /// The script file the runner wrote.
        script: PathBuf,
        /// The stage name (build_script, get_sources, step_<name>, …).
        stage: String,
    },
    /// cleanup_exec: remove the job's containers and network.
    Cleanup,
    /// Run a job of a .gitlab-ci.yml on this machine through config / prepare / run / cleanup.
    Exec(ExecArgs),
    /// The native release outside GitLab: build, push, register, roll out, report.
    Release(ReleaseArgs),
    /// Show the task-definition change a release would register, changing nothing.
    Plan(PlanArgs),
    /// Return the service to the previous release's revision (or a named one).
    Rollback(RollbackArgs),
    /// Decide the approval gate (PAUSE lifecycle hook) the service's deployment waits at:
    /// continue it (or roll it back) and follow it.
    Continue(ContinueArgs),
    /// Check settings, the Docker engine, AWS identity, the ECR repository and the service.
    Doctor(DoctorArgs),
    /// Print the `[[runners]]` entry for gitlab-runner's config.toml that calls this binary.
    RunnerConfig,
    /// Write the man pages or print a shell's completions (for packagers).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generated,
    },
    /// Remove project volumes (checkouts, caches) that no job used for a while.
    Prune(PruneArgs),
    /// Inside a job's ECS task: serve the job's stages to the runner-side executor.
    #[command(hide = true)]
    Agent(AgentArgs),
}

/// What `generate` makes.
#[derive(Subcommand)]
enum Generated {
    /// A man page per command, into this directory.
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
    /// The completion script of a shell, on stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `exec`'s arguments.
#[derive(Args)]
struct ExecArgs {
    /// The job's name (a `parallel:` job's name runs every instance); the jobs it needs run
    /// first.
    #[arg(required_unless_present = "list")]
    job: Option<String>,
    /// The pipeline file (read from the working tree; the jobs check out the commit).
    #[arg(long, default_value = ".gitlab-ci.yml")]
    file: PathBuf,
    /// Run as a tag pipeline for this tag (e.g. v1.2.3), at the tag's commit.
    #[arg(long, conflicts_with = "branch")]
    tag: Option<String>,
    /// Run as a branch pipeline for this branch (default: the checkout's branch).
    #[arg(long)]
    branch: Option<String>,
    /// A job variable, KEY=VALUE (repeatable; wins over the file's variables).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Only the `parallel: matrix:` instances with these values: KEY=VALUE,KEY=VALUE.
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_matrix)]
    matrix: Option<MatrixValues>,
    /// List the jobs, their stages and whether their rules run them for the ref.
    #[arg(long, conflicts_with_all = ["matrix", "dry_run"])]
    list: bool,
    /// Release jobs stop before their first change (no push, no register, no update).
    #[arg(long)]
    dry_run: bool,
    /// A checkout of another project for `include: project`, GROUP/PROJECT=PATH
    /// (repeatable); its files are read at the include's `ref` (default its HEAD).
    #[arg(long = "include-project", value_name = "GROUP/PROJECT=PATH", value_parser = parse_include_project)]
    include_projects: Vec<(String, PathBuf)>,
}

impl ExecArgs {
    fn into_request(self, settings: Option<PathBuf>) -> ExecRequest {
        ExecRequest {
            job: self.job,
            file: self.file,
            tag: self.tag,
            branch: self.branch,
            vars: self.vars,
            matrix: self.matrix.map(|m| m.0).unwrap_or_default(),
            list: self.list,
            dry_run: self.dry_run,
            settings,
            include_projects: self.include_projects,
        }
    }
}

/// `release`'s arguments.
#[derive(Args)]
struct ReleaseArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    tag: TagArg,
    /// The git checkout to build: its tag's commit is built, not the working tree.
    #[arg(long, default_value = ".")]
    project_dir: PathBuf,
    /// Only build and push the image.
    #[arg(long)]
    push_only: bool,
    /// Stop before the first change and show what would change.
    #[arg(long)]
    dry_run: bool,
}

/// `plan`'s arguments.
#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    tag: TagArg,
}

/// `rollback`'s arguments.
#[derive(Args)]
struct RollbackArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The release (image tag) to return to.
    #[arg(long = "to", value_name = "vX.Y.Z", conflicts_with = "to_revision")]
    to_tag: Option<String>,
    /// The task definition revision to return to.
    #[arg(long, value_name = "N")]
    to_revision: Option<i32>,
    /// Say which revision it would return to, change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl RollbackArgs {
    fn to(&self) -> RollbackTo {
        match (&self.to_tag, self.to_revision) {
            (Some(tag), _) => RollbackTo::Tag(tag.clone()),
            (None, Some(n)) => RollbackTo::Revision(n),
            (None, None) => RollbackTo::Previous,
        }
    }
}

/// `continue`'s arguments.
#[derive(Args)]
struct ContinueArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The service deployment (default: the service's current one).
    #[arg(long, env = "ECS_RELEASE_DEPLOYMENT_ARN", value_name = "ARN")]
    deployment: Option<String>,
    /// Roll the deployment back instead of continuing it.
    #[arg(long)]
    rollback: bool,
}

impl ContinueArgs {
    fn action(&self) -> HookAction {
        match self.rollback {
            true => HookAction::Rollback,
            false => HookAction::Continue,
        }
    }
}

/// `doctor`'s arguments.
#[derive(Args)]
struct DoctorArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// A version tag to check against release.tag_pattern (e.g. v1.2.3).
    #[arg(long, env = "CI_COMMIT_TAG")]
    tag: Option<String>,
}

/// `agent`'s arguments.
#[derive(Args)]
struct AgentArgs {
    #[command(subcommand)]
    verb: AgentVerb,
}

/// What the agent does in a task.
#[derive(Subcommand)]
enum AgentVerb {
    /// Serve the job's stages (the entrypoint of the build and helper containers).
    Serve {
        /// The address and port to listen on.
        #[arg(long, default_value = "0.0.0.0:8473")]
        listen: String,
        /// A service alias to answer on 127.0.0.1 (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// Copy this binary into a task volume (the init container's command).
    Install {
        /// The volume's mount point.
        dir: PathBuf,
    },
}

/// `prune`'s arguments.
#[derive(Args)]
struct PruneArgs {
    /// Remove volumes no job used for this long: 90m, 12h, 7d.
    #[arg(long, default_value = "7d", value_parser = parse_age)]
    older_than: std::time::Duration,
    /// List what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Release inputs: flags, else the job variables' names in the environment.
#[derive(Args)]
struct TargetArgs {
    /// ECR registry host.
    #[arg(long, env = "ECR_REGISTRY")]
    registry: Option<String>,
    /// ECR repository.
    #[arg(long, env = "ECR_REPOSITORY")]
    repository: Option<String>,
    /// ECS cluster.
    #[arg(long, env = "ECS_CLUSTER")]
    cluster: Option<String>,
    /// ECS service.
    #[arg(long, env = "ECS_SERVICE")]
    service: Option<String>,
    /// Task definition family the service must run.
    #[arg(long, env = "TASK_DEFINITION")]
    task_definition: Option<String>,
    /// Container whose image a release replaces.
    #[arg(long, env = "ECS_CONTAINER")]
    container: Option<String>,
    /// AWS region.
    #[arg(long, env = "AWS_DEFAULT_REGION")]
    region: Option<String>,
}

/// The version tag of `release` and `plan`.
#[derive(Args)]
struct TagArg {
    /// Version tag to release (e.g. v1.2.3).
    #[arg(long, env = "CI_COMMIT_TAG")]
    tag: Option<String>,
}

impl TargetArgs {
    fn with_tag(self, tag: Option<String>) -> Target {
        Target { tag, ..self.into() }
    }
}

impl From<TargetArgs> for Target {
    fn from(a: TargetArgs) -> Self {
        Target {
            registry: a.registry,
            repository: a.repository,
            cluster: a.cluster,
            service: a.service,
            task_definition: a.task_definition,
            container: a.container,
            region: a.region,
            tag: None,
            deployment: None,
        }
    }
}

fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    gitlab_ecs_executor::release::inputs::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration like 90m, 12h or 7d"))
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn parse_include_project(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((project, path)) if project.contains('/') && !path.is_empty() => {
            Ok((project.trim_matches('/').to_string(), PathBuf::from(path)))
        }
        _ => Err(format!(
            "`{s}` is not GROUP/PROJECT=PATH (the project's path on GitLab, then its checkout)"
        )),
    }
}

/// `--matrix` values: one argument holding several pairs (clap would read a bare list as
/// several arguments).
#[derive(Clone)]
struct MatrixValues(Vec<(String, String)>);

fn parse_matrix(s: &str) -> Result<MatrixValues, String> {
    s.split(',')
        .map(parse_var)
        .collect::<Result<_, _>>()
        .map(MatrixValues)
}

/// A runner stage that needs the job context.
enum JobStage {
    Prepare,
    Run {
        script: PathBuf,
        stage: String,
        options: RunOptions,
    },
    Cleanup,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let contract = ExitContract::from_env();
    let job_stage = match cli.command {
        Command::Config => return exit(&contract, config(cli.config)),
        Command::Prepare => JobStage::Prepare,
        Command::Run {
            dry_run,
            script,
            stage,
        } => JobStage::Run {
            script,
            stage,
            options: RunOptions { dry_run },
        },
        Command::Cleanup => JobStage::Cleanup,
        Command::Exec(args) => {
            let request = args.into_request(cli.config);
            return match exec::exec(&request) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("ERROR: {e}");
                    ExitCode::from(e.exit_code())
                }
            };
        }
        Command::Release(args) => {
            return operate(cli.config, |settings| async move {
                let options = commands::ReleaseOptions {
                    project_dir: &args.project_dir,
                    push_only: args.push_only,
                    dry_run: args.dry_run,
                };
                let target = args.target.with_tag(args.tag.tag);
                commands::release(&settings, &target, &options).await
            })
        }
        Command::Plan(args) => {
            return operate(cli.config, |settings| async move {
                commands::plan(&settings, &args.target.with_tag(args.tag.tag))
                    .await
                    .map(|_| ())
            })
        }
        Command::Rollback(args) => {
            let to = args.to();
            return operate(cli.config, |settings| async move {
                commands::rollback(&settings, &args.target.into(), to, args.dry_run).await
            });
        }
        Command::Continue(args) => {
            let action = args.action();
            let target = Target {
                deployment: args.deployment,
                ..args.target.into()
            };
            return operate(cli.config, |settings| async move {
                commands::continue_deployment(&settings, &target, action).await
            });
        }
        Command::Doctor(args) => return doctor(cli.config, args.target.with_tag(args.tag)),
        Command::RunnerConfig => {
            return match std::env::current_exe() {
                Ok(binary) => {
                    print!("{}", commands::runner_config(&binary));
                    ExitCode::SUCCESS
                }
                Err(e) => host_failure("tell where this binary is installed", e),
            }
        }
        Command::Generate { what } => return generate(what),
        Command::Agent(args) => return agent(args.verb),
        Command::Prune(args) => {
            return operate(cli.config, |settings| async move {
                let options = commands::PruneOptions {
                    older_than: args.older_than,
                    dry_run: args.dry_run,
                };
                commands::prune(&settings, options).await
            })
        }
    };
    let outcome = match runtime() {
        Ok(rt) => rt.block_on(run_job_stage(cli.config, job_stage)),
        Err(e) => {
            eprintln!("ERROR: cannot start the async runtime: {e}");
            Outcome::SystemFailure
        }
    };
    exit(&contract, outcome)
}

/// Man pages (the command's and one per visible subcommand) or a completion script.
fn generate(what: Generated) -> ExitCode {
    use clap::CommandFactory;
    let command = Cli::command();
    let written = match what {
        Generated::Completions { shell } => {
            let mut command = command;
            clap_complete::generate(
                shell,
                &mut command,
                "gitlab-ecs-executor",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Generated::Man { dir } => write_man_pages(&command, &dir),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => host_failure("write the man pages", e),
    }
}

fn write_man_pages(command: &clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let version = env!("CARGO_PKG_VERSION");
    let name = command.get_name().to_string();
    let mut pages = vec![(name.clone(), command.clone())];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = format!("{name}-{}", sub.get_name());
        pages.push((page.clone(), sub.clone().name(page).version(version)));
    }
    for (page, command) in pages {
        let mut text = Vec::new();
        clap_mangen::Man::new(command).render(&mut text)?;
        std::fs::write(dir.join(format!("{page}.1")), text)?;
    }
    Ok(())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn exit(contract: &ExitContract, outcome: Outcome) -> ExitCode {
    match contract.conclude(outcome) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("ERROR: cannot write BUILD_EXIT_CODE_FILE: {e}");
            ExitCode::from(u8::try_from(contract.system_failure).unwrap_or(2))
        }
    }
}

/// `config` prints JSON and nothing else on stdout; errors go to stderr (the job log).
fn config(path: Option<PathBuf>) -> Outcome {
    let settings = match Settings::load(path.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return Outcome::SystemFailure;
        }
    };
    match stages::config(&settings).to_json_line() {
        Ok(line) => {
            print!("{line}");
            Outcome::Success
        }
        Err(e) => {
            eprintln!("ERROR: cannot encode the config output: {e}");
            Outcome::SystemFailure
        }
    }
}

async fn run_job_stage(path: Option<PathBuf>, stage: JobStage) -> Outcome {
    let ctx = match JobContext::from_env() {
        Ok(ctx) => ctx,
        Err(e) => {
            // No job log yet: its secrets are what the context would have told.
            eprintln!("ERROR: {e}");
            return StageError::from(e).outcome();
        }
    };
    let log = JobLog::stdout(ctx.secret_values());
    let is_cleanup = matches!(stage, JobStage::Cleanup);
    init_operator_log(is_cleanup);
    let result = async {
        let settings = Settings::load(path.as_deref())?;
        match stage {
            JobStage::Prepare => stages::prepare(&settings, &ctx, &log).await,
            JobStage::Run {
                script,
                stage,
                options,
            } => {
                let stage: Stage = stage.parse()?;
                stages::run(&settings, &ctx, &script, &stage, options, &log).await
            }
            JobStage::Cleanup => stages::cleanup(&settings, &ctx).await,
        }
    }
    .await;
    match result {
        Ok(outcome) => outcome,
        Err(e) => report(&log, is_cleanup, &e),
    }
}

fn report(log: &JobLog, is_cleanup: bool, e: &StageError) -> Outcome {
    if is_cleanup {
        // Cleanup output belongs to the runner's log, not the job's.
        tracing::error!("{e}");
    } else {
        log.error(&e.to_string());
    }
    e.outcome()
}

/// Runs an operator command: exit 0 on success, else the error's documented exit code with
/// the cause on stdout.
fn operate<F, Fut>(config: Option<PathBuf>, command: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = Result<(), CommandError>>,
{
    let result = Settings::load(config.as_deref())
        .map_err(CommandError::from)
        .and_then(|settings| {
            let rt = runtime().map_err(|source| CommandError::Host {
                action: "start the async runtime".into(),
                source,
            })?;
            rt.block_on(command(settings))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

/// Says why an operator command stopped and exits with the error's documented code.
fn failed(e: &CommandError) -> ExitCode {
    commands::operator_log().error(&commands::operator_message(e));
    ExitCode::from(e.exit_code())
}

/// `agent`: serves until stopped, or installs itself; any failure is the container's exit
/// code 1, its cause on stderr (the container's log).
fn agent(verb: AgentVerb) -> ExitCode {
    // Refused peers and lost runners are worth a line in the container's log.
    init_operator_log(true);
    let done = match verb {
        AgentVerb::Install { dir } => agent::install(&dir)
            .map(|at| println!("installed {}", at.display()))
            .map_err(|e| e.to_string()),
        AgentVerb::Serve { listen, aliases } => {
            let digest = std::env::var(agent::SECRET_DIGEST_VARIABLE).unwrap_or_default();
            let how = agent::Serve {
                listen: &listen,
                digest: &digest,
                aliases: &aliases,
                hosts_file: Path::new("/etc/hosts"),
            };
            runtime()
                .map_err(|e| format!("cannot start the async runtime: {e}"))
                .and_then(|rt| {
                    rt.block_on(agent::serve(&how, |address| {
                        println!("gitlab-ecs-executor agent listening on {address}");
                    }))
                    .map_err(|e| e.to_string())
                })
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A host resource the command needed could not be had.
fn host_failure(action: &str, source: std::io::Error) -> ExitCode {
    failed(&CommandError::Host {
        action: action.into(),
        source,
    })
}

/// `doctor`: a broken settings file is one of its failed checks, not a reason to stop.
fn doctor(config: Option<PathBuf>, target: Target) -> ExitCode {
    let source =
        Settings::locate(config.as_deref()).unwrap_or_else(|| PathBuf::from("built-in defaults"));
    let loaded = Settings::load(config.as_deref()).map_err(|e| e.to_string());
    match runtime() {
        Ok(rt) => {
            let findings = rt.block_on(commands::doctor(loaded, &source, &target));
            ExitCode::from(commands::doctor_exit_code(&findings))
        }
        Err(e) => host_failure("start the async runtime", e),
    }
}

/// Operator logs go to stderr only for cleanup, whose stderr is the runner's own log; the
/// other stages' stderr is the job log.
fn init_operator_log(to_stderr: bool) {
    if !to_stderr {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("GITLAB_ECS_EXECUTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
