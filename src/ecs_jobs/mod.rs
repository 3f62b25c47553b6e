//! CI jobs as ECS tasks ([docs/ecs-jobs.md]): one task per job, from a task definition
//! made from the job (`shape.rs` decides it, `task_definition.rs` writes it), started and
//! followed by `tasks.rs` with the intent recorded first (`record.rs`), its stages served by
//! the task's agents (`stage.rs`, through [`crate::agent`]), stopped at cleanup, with an
//! orphan sweep by tag. `job.rs` composes them into the runner's stages.

mod error;
mod job;
mod record;
mod shape;
mod stage;
pub mod task_definition;
mod tasks;

pub use error::{ContainerRole, EcsJobError};
pub use job::{cleanup, connect, prepare, prune_definitions, run, PrunedDefinitions};
pub use record::TaskRecord;
pub use tasks::{started_by, JobTasks, TAG_DEADLINE, TAG_JOB, TAG_PROJECT, TAG_RUNNER};
