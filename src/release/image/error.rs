//! Why the release image could not be had: the registry, the build, the push, the
//! platform checks. The release's error wraps it; the exit tables class each variant.

use super::{context, frontend};
use crate::aws::CallError;
use crate::docker::DockerError;

/// Why building, pushing or finding the release image failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An ECR API call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The Docker engine failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The ECR token was unusable.
    #[error("cannot log in to {registry}: {message}")]
    EcrLogin {
        /// Registry host.
        registry: String,
        /// Why.
        message: String,
    },
    /// The release's registry is not the one the ECR token is for.
    #[error(
        "ECR_REGISTRY {registry} is not the registry the ECR token of these credentials is for \
         ({ecr}): the token was not sent there. Set ECR_REGISTRY to the account's ECR registry, \
         or ask the runner's operator to list a registry mirror in aws.ecr_token_registries"
    )]
    NotEcrRegistry {
        /// The registry the job named.
        registry: String,
        /// What ECR's token is for.
        ecr: String,
    },
    /// The registry refused the credentials.
    #[error(
        "the registry {registry} refused the ECR credentials: {message}. Check that ECR_REGISTRY \
         belongs to the account and region of the job's AWS credentials and that they allow \
         ecr:GetAuthorizationToken and the push actions on ECR_REPOSITORY"
    )]
    RegistryRefused {
        /// Registry host.
        registry: String,
        /// The registry's message.
        message: String,
    },
    /// The registry could not be reached.
    #[error("the registry {registry} cannot be reached: {message}. Check ECR_REGISTRY and the runner host's network")]
    RegistryUnreachable {
        /// Registry host.
        registry: String,
        /// Why.
        message: String,
    },
    /// The Dockerfile asks for a frontend this runner does not run.
    #[error(transparent)]
    Frontend(#[from] frontend::FrontendRefused),
    /// The build context could not be assembled.
    #[error(transparent)]
    Context(#[from] context::ContextError),
    /// The Dockerfile failed to build.
    #[error("the image build failed{}: {message}", if .step.is_empty() { String::new() } else { format!(" at `{}`", .step) })]
    BuildFailed {
        /// The Dockerfile step that failed.
        step: String,
        /// The builder's message.
        message: String,
    },
    /// The push failed for another reason.
    #[error("pushing to {registry} failed: {message}")]
    PushFailed {
        /// Registry host.
        registry: String,
        /// The engine's message.
        message: String,
    },
    /// The image in the registry is for another platform than the task definition's.
    #[error(
        "{image} is built for {has} but the service's task definition runs on {wants}: tasks \
         would fail with `exec format error`. Nothing was registered. Release a new tag built \
         for {wants}"
    )]
    WrongPlatform {
        /// The image.
        image: String,
        /// Its platforms in the registry.
        has: String,
        /// The task definition's.
        wants: String,
    },
    /// A base image of the Dockerfile has no variant for the task definition's platform.
    #[error(
        "the base image {base} is for {has} only, but the service's task definition runs on \
         {wants}: an image for {wants} cannot be built from it. Nothing was built or registered. \
         Use a base with a {wants} variant (a multi-platform image), or a runtimePlatform the \
         base has"
    )]
    BaseWrongPlatform {
        /// The base image, as the Dockerfile names it.
        base: String,
        /// Its platforms.
        has: String,
        /// The task definition's.
        wants: String,
    },
}
