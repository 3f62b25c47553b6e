//! gitlab-ecs-executor: a GitLab Runner custom executor that runs CI jobs in Docker
//! containers and performs tag-triggered releases to Amazon ECR and ECS natively.
//!
//! Data flows one way: [`protocol`] → [`stages`] → [`docker`] / [`release`] → [`aws`];
//! [`settings`], [`joblog`], [`image_ref`] and the clock serve all of them. [`exec`] and
//! [`commands`] (the operator verbs) reuse the same modules outside a runner.
//!
//! Modules are `pub(crate)` unless the binary, the integration tests or the benchmark use
//! them, so the dead-code lint sees what nothing calls.
#![warn(missing_docs)]

pub mod agent;
pub mod aws;
pub(crate) mod clock;
pub mod commands;
pub mod docker;
pub mod ecs_jobs;
pub mod exec;
pub(crate) mod git;
pub(crate) mod glob;
pub mod image_ref;
pub mod joblog;
pub(crate) mod private_file;
pub mod protocol;
pub mod release;
pub mod settings;
pub mod stages;
