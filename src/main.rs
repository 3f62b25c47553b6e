//! The binary gitlab-runner calls for each custom-executor stage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gitlab_ecs_executor::joblog::JobLog;
use gitlab_ecs_executor::local::{self, ExecRequest};
use gitlab_ecs_executor::protocol::{ExitContract, JobContext, Outcome, Stage};
use gitlab_ecs_executor::settings::Settings;
use gitlab_ecs_executor::stages::{self, StageError};

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
        /// The script file the runner wrote.
        script: PathBuf,
        /// The stage name (build_script, get_sources, step_<name>, …).
        stage: String,
    },
    /// cleanup_exec: remove the job's containers and network.
    Cleanup,
    /// Run a job of a .gitlab-ci.yml on this machine through config / prepare / run / cleanup.
    Exec {
        /// The job's name.
        job: String,
        /// The pipeline file.
        #[arg(long, default_value = ".gitlab-ci.yml")]
        file: PathBuf,
        /// Run as a tag pipeline for this tag (e.g. v1.2.3).
        #[arg(long, conflicts_with = "branch")]
        tag: Option<String>,
        /// Run as a branch pipeline for this branch (default: the checkout's branch).
        #[arg(long)]
        branch: Option<String>,
        /// A job variable, KEY=VALUE (repeatable; wins over the file's variables).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Release jobs stop before their first change (no push, no register, no update).
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let contract = ExitContract::from_env();
    let outcome = match cli.command {
        Command::Config => config(cli.config),
        Command::Exec {
            job,
            file,
            tag,
            branch,
            vars,
            dry_run,
        } => {
            let request = ExecRequest {
                job,
                file,
                tag,
                branch,
                vars,
                dry_run,
                settings: cli.config,
            };
            return match local::exec(&request) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("ERROR: {e}");
                    ExitCode::from(2)
                }
            };
        }
        command => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("ERROR: cannot start the async runtime: {e}");
                    return exit(&contract, Outcome::SystemFailure);
                }
            };
            runtime.block_on(job_stage(cli.config, command))
        }
    };
    exit(&contract, outcome)
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

async fn job_stage(path: Option<PathBuf>, command: Command) -> Outcome {
    let ctx = match JobContext::from_env() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return Outcome::SystemFailure;
        }
    };
    let log = JobLog::stdout(ctx.secret_values());
    let is_cleanup = matches!(command, Command::Cleanup);
    init_operator_log(is_cleanup);
    let result = async {
        let settings = Settings::load(path.as_deref())?;
        match command {
            Command::Prepare => stages::prepare(&settings, &ctx, &log).await,
            Command::Run { script, stage } => {
                let stage: Stage = stage.parse()?;
                stages::run(&settings, &ctx, &script, &stage, &log).await
            }
            Command::Cleanup => stages::cleanup(&settings, &ctx).await,
            Command::Config | Command::Exec { .. } => {
                unreachable!("handled before a job context exists")
            }
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
