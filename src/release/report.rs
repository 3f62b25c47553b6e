//! The end of a release: a summary in the job log and `ecs-release.env` in the project
//! directory, for `artifacts:reports:dotenv`.

use std::time::Duration;

use std::path::PathBuf;

use super::deploy::DeployReport;
use super::ecs::short_td;
use super::image::ImageOutcome;
use super::request::{ProjectSource, ReleaseRequest};
use super::ReleaseError;
use crate::docker::archive;
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;

/// What a release did.
#[derive(Debug, Clone)]
pub struct ReleaseReport {
    /// The image.
    pub image: ImageOutcome,
    /// The image as the new revisions name it (by digest with `release.pin_digest`).
    pub released: ImageRef,
    /// The ECS half, for the `release` action: one report per service, in `ECS_SERVICE`'s
    /// order.
    pub deploy: Vec<DeployReport>,
}

/// The file a release leaves in the project directory.
pub const ENV_FILE: &str = "ecs-release.env";
/// GitLab's annotations report (`artifacts:reports:annotations`): links on the job's page.
pub const ANNOTATIONS_FILE: &str = "ecs-release-annotations.json";

/// How long the parts of a release took.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// Getting the image into the registry.
    pub image: Duration,
    /// The whole release.
    pub total: Duration,
}

/// A service name as a variable name suffix: `shop-web` → `SHOP_WEB`.
fn env_suffix(service: &str) -> String {
    service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The annotations report: the image and each service's deployments in the console.
fn annotations(
    req: &ReleaseRequest,
    report: &ReleaseReport,
    links: &[(String, String)],
) -> serde_json::Value {
    let image = &report.released;
    let mut entries = vec![serde_json::json!({"external_link": {
        "label": format!("Image {image} ({})", report.image.digest()),
        "url": ecr_console(image, &req.inputs.region),
    }})];
    entries.extend(
        links
            .iter()
            .map(|(label, url)| serde_json::json!({"external_link": {"label": label, "url": url}})),
    );
    serde_json::json!({ "ECS release": entries })
}

/// The console page of an ECR repository; other registries' hosts are linked as they are.
fn ecr_console(image: &crate::image_ref::ImageRef, region: &str) -> String {
    let host = image.registry_host();
    match host.split('.').next() {
        Some(account) if host.contains(".dkr.ecr.") => format!(
            "https://{region}.console.aws.amazon.com/ecr/repositories/private/{account}/{}?region={region}",
            image.path()
        ),
        _ => format!("https://{host}/{}", image.path()),
    }
}

/// Writes a report file into the project directory; returns its path.
async fn write_report(
    source: &ProjectSource,
    name: &str,
    contents: &[u8],
    docker: &bollard::Docker,
) -> Result<PathBuf, ReleaseError> {
    match source {
        ProjectSource::Directory { reports, .. } => {
            let path = reports.join(name);
            std::fs::write(&path, contents).map_err(|e| ReleaseError::Report {
                path: path.clone(),
                message: e.to_string(),
            })?;
            Ok(path)
        }
        ProjectSource::Volume {
            container,
            project_dir,
        } => {
            archive::write_file(docker, container, project_dir, name, contents)
                .await
                .map_err(|e| ReleaseError::Report {
                    path: PathBuf::from(format!("{project_dir}/{name}")),
                    message: e.to_string(),
                })?;
            Ok(PathBuf::from(format!("{project_dir}/{name}")))
        }
    }
}

/// Prints the summary and writes `ecs-release.env`.
pub(crate) async fn summarize(
    req: &ReleaseRequest,
    report: &ReleaseReport,
    timings: Timings,
    docker: &bollard::Docker,
    log: &JobLog,
) -> Result<(), ReleaseError> {
    let _s = log.section("release_summary", "Release: summary");
    let image = &report.released;
    let digest = report.image.digest();
    let mut named: Vec<(String, String)> = Vec::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut env = vec![
        ("ECS_RELEASE_TAG", req.inputs.tag().to_string()),
        ("ECS_RELEASE_IMAGE_URI", image.to_string()),
        ("ECS_RELEASE_IMAGE_DIGEST", digest.clone()),
    ];
    let existing = matches!(report.image, super::image::ImageOutcome::Existing { .. });
    log.info(&format!(
        "image:     {}@{digest}{}",
        image,
        if existing {
            " (already in the registry)"
        } else {
            ""
        }
    ));
    let several = report.deploy.len() > 1;
    if several {
        let names: Vec<&str> = req.inputs.ecs.iter().map(|t| t.service.as_str()).collect();
        env.push(("ECS_RELEASE_SERVICES", names.join(",")));
    }
    for (d, target) in report.deploy.iter().zip(&req.inputs.ecs) {
        let revision = if d.already_deployed {
            format!("{} (already deployed, unchanged)", short_td(&d.new_arn))
        } else {
            format!("{} -> {}", short_td(&d.previous_arn), short_td(&d.new_arn))
        };
        log.info(&format!(
            "service:   {} in {}",
            target.service, target.cluster
        ));
        log.info(&format!("revision:  {revision}"));
        if let Some(id) = &d.deployment_id {
            log.info(&format!("deployment: {id}"));
        }
        let state = match (&d.awaiting, d.already_deployed) {
            (Some(pause), _) => {
                log.info(&format!(
                    "state:     awaiting approval at {} (hooks {})",
                    pause.stage,
                    pause.hook_ids.join(", ")
                ));
                "awaiting_approval"
            }
            (None, true) => "already_deployed",
            (None, false) => "deployed",
        };
        let console = ecs_console_url(&req.inputs.region, &target.cluster, &target.service);
        log.info(&format!("console:   {console}"));
        links.push((format!("ECS deployments of {}", target.service), console));
        let mut values = vec![
            ("ECS_RELEASE_TASK_DEFINITION_ARN", d.new_arn.clone()),
            (
                "ECS_RELEASE_PREVIOUS_TASK_DEFINITION_ARN",
                d.previous_arn.clone(),
            ),
            (
                "ECS_RELEASE_DEPLOYMENT_ID",
                d.deployment_id.clone().unwrap_or_default(),
            ),
            ("ECS_RELEASE_STATE", state.to_string()),
        ];
        if let Some(pause) = &d.awaiting {
            // What a later `continue` job needs (through `needs:` and the dotenv report).
            values.extend([
                ("ECS_RELEASE_DEPLOYMENT_ARN", pause.deployment.clone()),
                ("ECS_RELEASE_HOOK_IDS", pause.hook_ids.join(",")),
            ]);
        }
        for (key, value) in values {
            // Several services: one set of values each, suffixed with the service's name.
            let key = if several {
                format!("{key}_{}", env_suffix(&target.service))
            } else {
                key.to_string()
            };
            named.push((key, value));
        }
    }
    log.info(&format!(
        "timings:   image {:.1} s, release {:.1} s",
        timings.image.as_secs_f64(),
        timings.total.as_secs_f64()
    ));
    let text: String = env
        .iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(named.iter().map(|(k, v)| (k.clone(), v)))
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    let path = write_report(&req.source, ENV_FILE, text.as_bytes(), docker).await?;
    log.info(&format!(
        "wrote {} (publish it with artifacts:reports:dotenv)",
        path.display()
    ));
    let annotations = annotations(req, report, &links);
    let path = write_report(
        &req.source,
        ANNOTATIONS_FILE,
        annotations.to_string().as_bytes(),
        docker,
    )
    .await?;
    log.info(&format!(
        "wrote {} (publish it with artifacts:reports:annotations)",
        path.display()
    ));
    Ok(())
}

/// The ECS console page of a service's deployments.
pub fn ecs_console_url(region: &str, cluster: &str, service: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/services/{service}/deployments?region={region}"
    )
}
