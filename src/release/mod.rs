//! Native releases: build the image, push it to ECR and (for the `release` action) roll it
//! out on ECS, from one typed [`ReleaseRequest`]. Nothing here knows the runner protocol:
//! the runner stage, the operator commands and `exec` each build the request, connect an
//! [`App`] and call a verb of [`verbs`].

pub mod app;
pub mod authorize;
pub mod deadline;
pub mod deploy;
pub mod deploy_report;
pub mod ecs;
pub mod error;
pub mod fleet;
pub mod grant;
pub mod image;
pub mod input_names;
pub mod inputs;
pub mod platform;
pub mod pre_deploy;
pub mod progress;
pub mod report;
pub mod request;
pub mod strategy;
pub mod taskdef;
pub mod trigger;
pub mod undo;
pub mod verbs;
pub mod verdict;
pub mod watch;

pub use app::App;
pub use deadline::{LimitSource, RolloutDeadline};
pub use error::ReleaseError;
pub use request::{BuildScope, ProjectSource, Provenance, ReleaseRequest, LOCAL_REPOSITORY};
