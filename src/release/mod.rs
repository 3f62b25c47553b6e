//! Native releases: build the image, push it to ECR and (for the `release` action) roll it
//! out on ECS, from one typed [`ReleaseRequest`]. Nothing here knows the runner protocol:
//! the runner stage, the operator commands and `exec` each build the request, connect an
//! [`App`] and call a verb of [`verbs`].

pub(crate) mod app;
pub(crate) mod authorize;
pub(crate) mod deadline;
pub mod deploy;
pub(crate) mod deploy_report;
pub mod ecs;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod grant;
pub mod image;
pub(crate) mod input;
pub mod inputs;
pub(crate) mod platform;
pub(crate) mod pre_deploy;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod request;
pub(crate) mod strategy;
pub mod taskdef;
#[cfg(test)]
pub(crate) mod testing;
pub mod trigger;
pub(crate) mod undo;
pub mod verbs;
pub(crate) mod verdict;
pub(crate) mod watch;

pub use app::App;
pub use deadline::{LimitSource, RolloutDeadline};
pub use error::ReleaseError;
pub use request::{BuildScope, ProjectSource, Provenance, ReleaseRequest, LOCAL_REPOSITORY};
