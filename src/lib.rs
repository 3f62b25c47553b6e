//! gitlab-ecs-executor: a GitLab Runner custom executor that runs CI jobs in Docker
//! containers and performs tag-triggered releases to Amazon ECR and ECS natively.
//!
//! Data flows one way: [`protocol`] → [`stages`] → [`docker`]; [`settings`] and [`joblog`]
//! serve all of them.

pub mod aws;
pub mod commands;
pub mod docker;
pub mod joblog;
pub mod local;
pub mod protocol;
pub mod release;
pub mod settings;
pub mod stages;
