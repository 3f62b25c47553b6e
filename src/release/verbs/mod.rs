//! What an adapter can ask of a release, one file per verb (as ecspresso's `deploy.go`,
//! `rollback.go`): each takes the [`App`](super::App) the adapter connected and a typed
//! request, logs its progress and returns a typed outcome for the adapter to report.

pub(crate) mod continue_deployment;
pub(crate) mod plan;
pub(crate) mod release;
pub mod rollback;
