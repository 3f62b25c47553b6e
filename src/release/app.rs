//! The clients a release verb works through, built once per command from the credentials
//! its inputs name, so every verb (and every adapter) reaches AWS the same way.

use std::path::Path;

use aws_config::SdkConfig;

use super::ecs::SdkEcs;
use super::ReleaseError;
use crate::aws::{self, AwsSession, CredentialRequest};
use crate::joblog::JobLog;

/// One command's AWS session and the ECS client every service of it shares.
pub struct App {
    // Holds the web identity token file, which must outlive every call.
    session: AwsSession,
    ecs: aws_sdk_ecs::Client,
}

impl App {
    /// The session for `region` with `credentials`, said in the log; a web identity token
    /// is written into `temp_dir` (the runner's private build dir, or a command's temp dir).
    pub async fn connect(
        region: &str,
        credentials: &CredentialRequest,
        temp_dir: &Path,
        log: &JobLog,
    ) -> Result<App, ReleaseError> {
        let _s = log.collapsed_section("release_credentials", "Release: AWS credentials");
        log.info(&format!("Using {} in {region}", credentials.describe()));
        let session = aws::session(region, credentials, temp_dir).await?;
        let ecs = aws_sdk_ecs::Client::new(&session.config);
        Ok(App { session, ecs })
    }

    /// The SDK configuration, for the ECR, STS and CloudWatch Logs clients of a phase.
    pub fn config(&self) -> &SdkConfig {
        &self.session.config
    }

    /// One service through the shared ECS client.
    pub fn service(&self, cluster: &str, service: &str) -> SdkEcs {
        SdkEcs::new(self.ecs.clone(), cluster, service)
    }
}
