//! CI jobs as ECS tasks, in progress ([docs/ecs-jobs.md]): the task definition a job runs
//! as (`task_definition.rs`). The stages reach the task through [`crate::agent`]; the task's
//! lifecycle, the settings and the stage driver that will use both are still to come.

pub mod task_definition;
