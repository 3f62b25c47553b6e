//! The requester's words for the inputs a task definition is checked against, so an error
//! deep in the release names the input the requester can change.

/// How the requester names the task-definition inputs: job variables in a job, flags on the
/// command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputNames {
    /// `ECS_CONTAINER` or `--container`.
    pub container: String,
    /// `TASK_DEFINITION` or `--task-definition`.
    pub task_definition: String,
}

impl Default for InputNames {
    fn default() -> Self {
        InputNames {
            container: "ECS_CONTAINER".into(),
            task_definition: "TASK_DEFINITION".into(),
        }
    }
}
