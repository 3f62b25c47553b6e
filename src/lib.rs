//! gitlab-ecs-executor: a GitLab Runner custom executor that runs CI jobs in Docker
//! containers and performs tag-triggered releases to Amazon ECR and ECS natively.
//!
//! Data flows one way: [`protocol`] → [`stages`] → [`docker`] / [`release`] → [`aws`];
//! [`settings`], [`joblog`], [`image_ref`] and [`clock`] serve all of them. [`local`] (`exec`) and [`commands`] (the
//! operator verbs) reuse the same modules outside a runner.
#![warn(missing_docs)]

pub mod aws;
pub mod clock;
pub mod commands;
pub mod docker;
pub mod exec;
pub mod glob;
pub mod image_ref;
pub mod joblog;
pub mod private_file;
pub mod protocol;
pub mod release;
pub mod settings;
pub mod stages;
