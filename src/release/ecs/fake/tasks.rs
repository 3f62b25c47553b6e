//! The fake's one-off tasks (`RunTask`, `DescribeTasks`, `StopTask`): each moves one step
//! per `DescribeTasks` and stops as its scenario says, or when stopped.

use aws_sdk_ecs::types::{Container, Task};

use crate::release::ecs::TaskRun;

/// How a task started by `RunTask` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskScenario {
    /// Its container exits with `code` at this `DescribeTasks`.
    ExitsAt {
        /// The poll it stops at.
        poll: u32,
        /// The container's exit code.
        code: i32,
    },
    /// It runs until stopped.
    Runs,
}

/// A task the fake started: what it was asked to run and where it is.
#[derive(Debug, Clone)]
pub(crate) struct FakeTask {
    /// Its ARN.
    pub arn: String,
    /// The revision it runs.
    pub task_definition: String,
    /// The container whose command was replaced.
    pub container: String,
    /// That command.
    pub command: Vec<String>,
    /// Why it was stopped by `StopTask`, if it was.
    pub stopped_by: Option<String>,
    polls: u32,
    exit_code: Option<i32>,
    stopped: bool,
}

/// Every task the fake started.
pub(super) struct Tasks {
    pub scenario: TaskScenario,
    pub started: Vec<FakeTask>,
}

impl Tasks {
    pub fn new() -> Self {
        Tasks {
            scenario: TaskScenario::ExitsAt { poll: 2, code: 0 },
            started: Vec::new(),
        }
    }

    pub fn run(&mut self, run: &TaskRun) -> String {
        let arn = format!(
            "arn:aws:ecs:eu-west-1:123456789012:task/prod/{:032x}",
            self.started.len() + 1
        );
        self.started.push(FakeTask {
            arn: arn.clone(),
            task_definition: run.task_definition.clone(),
            container: run.container.clone(),
            command: run.command.clone(),
            stopped_by: None,
            polls: 0,
            exit_code: None,
            stopped: false,
        });
        arn
    }

    /// One step of the task, then what `DescribeTasks` reports.
    pub fn describe(&mut self, arn: &str) -> Option<Task> {
        let scenario = self.scenario;
        let task = self.started.iter_mut().find(|t| t.arn == arn)?;
        if !task.stopped {
            task.polls += 1;
            if let TaskScenario::ExitsAt { poll, code } = scenario {
                if task.polls >= poll {
                    task.stopped = true;
                    task.exit_code = Some(code);
                }
            }
        }
        Some(reported(task))
    }

    /// `StopTask`: ECS sends SIGTERM then SIGKILL, so the container exits 137.
    pub fn stop(&mut self, arn: &str, reason: &str) -> bool {
        let Some(task) = self.started.iter_mut().find(|t| t.arn == arn) else {
            return false;
        };
        if !task.stopped {
            task.stopped = true;
            task.exit_code = Some(137);
            task.stopped_by = Some(reason.to_string());
        }
        true
    }
}

fn reported(task: &FakeTask) -> Task {
    let container = Container::builder()
        .name(&task.container)
        .last_status(if task.stopped { "STOPPED" } else { "RUNNING" })
        .set_exit_code(task.exit_code)
        .build();
    let stopped_reason = match (&task.stopped_by, task.stopped) {
        (Some(reason), _) => Some(reason.clone()),
        (None, true) => Some("Essential container in task exited".to_string()),
        (None, false) => None,
    };
    Task::builder()
        .task_arn(&task.arn)
        .task_definition_arn(&task.task_definition)
        .last_status(if task.stopped { "STOPPED" } else { "RUNNING" })
        .containers(container)
        .set_stopped_reason(stopped_reason)
        .build()
}
