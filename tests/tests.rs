//! The integration tests, one binary with a module per area (as ripgrep's `tests/tests.rs`):
//! one link step, one moto server and one set of images for the whole suite.

mod support;

mod agent;
mod docker_jobs;
mod docker_parity;
mod docs;
mod ecs_jobs;
mod ecs_standin;
mod exec;
mod exec_corpus;
mod fuzz;
mod isolation;
mod job_environment;
mod layering;
mod operator;
mod package;
mod protocol;
mod release_build;
mod release_cancel;
mod release_image;
mod release_rollout;
mod release_services;
mod release_strategies;
mod reliability;
mod services;
mod shared_runner;
mod shared_runner_release;
