//! `run <script> <stage>`: user steps in the job container, housekeeping on the host.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::docker::{self, run_script, Cancel, JobNames, ScriptShell};
use crate::joblog::JobLog;
use crate::protocol::{JobContext, Outcome, Placement, Stage};
use crate::release;
use crate::settings::{Settings, Shell};

use super::release::{classify, request, JobKind};
use super::StageError;

/// How the operator configured `run` (`[runners.custom] run_args`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Release jobs stop before their first change (`run --dry-run`, which `exec --dry-run`
    /// passes).
    pub dry_run: bool,
}

/// Runs one stage script.
pub async fn run(
    settings: &Settings,
    ctx: &JobContext,
    script_path: &Path,
    stage: &Stage,
    options: RunOptions,
    log: &JobLog,
) -> Result<Outcome, StageError> {
    // Installed before any work so that the runner's SIGTERM never kills us mid-stage with
    // the default action, leaving the script running in the container.
    let mut cancel = sigterm()?;
    if *stage == Stage::BuildScript {
        if let JobKind::Release(inputs) = classify(settings, ctx)? {
            let req = request(ctx, *inputs, options.dry_run)?;
            release::execute(settings, &req, log, &mut cancel).await?;
            return Ok(Outcome::Success);
        }
    }
    match stage.placement() {
        Placement::JobContainer => run_in_container(settings, ctx, script_path, log, cancel).await,
        Placement::Host => run_on_host(settings, script_path, log, cancel).await,
    }
}

fn sigterm() -> Result<Cancel, StageError> {
    let mut term =
        signal(SignalKind::terminate()).map_err(StageError::host("install the SIGTERM handler"))?;
    Ok(Box::pin(async move {
        term.recv().await;
    }))
}

async fn run_in_container(
    settings: &Settings,
    ctx: &JobContext,
    script_path: &Path,
    log: &JobLog,
    cancel: Cancel,
) -> Result<Outcome, StageError> {
    let script = std::fs::read(script_path).map_err(StageError::host(format!(
        "read the stage script {}",
        script_path.display()
    )))?;
    let docker = docker::connect(&settings.docker).await?;
    let container = JobNames::new(&ctx.identity).job_container();
    let shell = match settings.shell {
        Shell::Bash => ScriptShell::Bash,
        Shell::Sh => ScriptShell::Sh,
    };
    let exit = run_script(
        &docker,
        &container,
        shell,
        script,
        settings.docker.cancel_grace,
        log,
        cancel,
    )
    .await?;
    if exit.cancelled {
        log.warn("the script was stopped: the job was cancelled or timed out");
    }
    Ok(match exit.code {
        0 if !exit.cancelled => Outcome::Success,
        code => Outcome::JobFailure {
            exit_code: i32::try_from(code).unwrap_or(1),
        },
    })
}

/// Housekeeping scripts (git, caches, artifacts) run on the host in the bind-mounted
/// project directory: job images need neither git nor gitlab-runner.
async fn run_on_host(
    settings: &Settings,
    script_path: &Path,
    log: &JobLog,
    mut cancel: Cancel,
) -> Result<Outcome, StageError> {
    let mut child = tokio::process::Command::new(settings.shell.as_str())
        .arg(script_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(StageError::host(format!(
            "start {} on the runner host",
            settings.shell.as_str()
        )))?;
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(StageError::Host {
            action: "capture the output of the stage script".into(),
            source: std::io::Error::other("pipes missing"),
        });
    };
    let pump = async {
        let (mut ob, mut eb) = ([0u8; 8192], [0u8; 8192]);
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            tokio::select! {
                n = out.read(&mut ob), if out_open => match n {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => log.raw(&ob[..n]),
                },
                n = err.read(&mut eb), if err_open => match n {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => log.raw(&eb[..n]),
                },
            }
        }
    };
    let mut cancelled = false;
    tokio::select! {
        _ = pump => {}
        _ = &mut cancel => {
            cancelled = true;
            // The script shares our process group and got the runner's SIGTERM too; this
            // covers callers that signal only us.
            if let Some(pid) = child.id() {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
    }
    log.end_raw();
    let status = child
        .wait()
        .await
        .map_err(StageError::host("wait for the stage script"))?;
    Ok(match status.code() {
        Some(0) if !cancelled => Outcome::Success,
        Some(code) if code != 0 => Outcome::JobFailure { exit_code: code },
        _ => Outcome::JobFailure {
            exit_code: 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(15),
        },
    })
}
