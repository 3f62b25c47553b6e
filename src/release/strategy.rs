//! How a service deploys, read from its `deploymentConfiguration` and controller: which
//! strategy ECS runs (rolling, blue/green, linear, canary), the least time it takes by
//! configuration, and the services a release must not touch. Pure.

use std::time::Duration;

use aws_sdk_ecs::types::{
    DeploymentConfiguration, DeploymentControllerType, DeploymentLifecycleHookTargetType,
    ResourceManagementType, Service,
};

/// The deployment strategy ECS runs for a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// Rolling update, optionally with the circuit breaker and alarms.
    Rolling,
    /// All production traffic at once after test traffic, then `bake`.
    BlueGreen {
        /// `bakeTimeInMinutes`.
        bake: Duration,
    },
    /// Production traffic in equal steps.
    Linear {
        /// `linearConfiguration.stepPercent`.
        step_percent: f64,
        /// `linearConfiguration.stepBakeTimeInMinutes`.
        step_bake: Duration,
        /// `bakeTimeInMinutes`.
        bake: Duration,
    },
    /// A canary share, then all of it.
    Canary {
        /// `canaryConfiguration.canaryPercent`.
        percent: f64,
        /// `canaryConfiguration.canaryBakeTimeInMinutes`.
        canary_bake: Duration,
        /// `bakeTimeInMinutes`.
        bake: Duration,
    },
}

/// ECS's defaults where the configuration leaves a value out (API reference).
const DEFAULT_STEP_PERCENT: f64 = 10.0;
const DEFAULT_STEP_BAKE_MINUTES: i32 = 6;
const DEFAULT_CANARY_PERCENT: f64 = 5.0;
const DEFAULT_CANARY_BAKE_MINUTES: i32 = 10;

fn minutes(m: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(m.unwrap_or(default)).unwrap_or(0) * 60)
}

impl Strategy {
    /// The strategy of a service's (or a service deployment's) configuration.
    pub fn of(config: Option<&DeploymentConfiguration>) -> Strategy {
        let Some(config) = config else {
            return Strategy::Rolling;
        };
        let bake = minutes(config.bake_time_in_minutes(), 0);
        match config.strategy().map(|s| s.as_str()) {
            Some("BLUE_GREEN") => Strategy::BlueGreen { bake },
            Some("LINEAR") => {
                let linear = config.linear_configuration();
                Strategy::Linear {
                    step_percent: linear
                        .and_then(|l| l.step_percent())
                        .unwrap_or(DEFAULT_STEP_PERCENT),
                    step_bake: minutes(
                        linear.and_then(|l| l.step_bake_time_in_minutes()),
                        DEFAULT_STEP_BAKE_MINUTES,
                    ),
                    bake,
                }
            }
            Some("CANARY") => {
                let canary = config.canary_configuration();
                Strategy::Canary {
                    percent: canary
                        .and_then(|c| c.canary_percent())
                        .unwrap_or(DEFAULT_CANARY_PERCENT),
                    canary_bake: minutes(
                        canary.and_then(|c| c.canary_bake_time_in_minutes()),
                        DEFAULT_CANARY_BAKE_MINUTES,
                    ),
                    bake,
                }
            }
            _ => Strategy::Rolling,
        }
    }

    /// Production traffic shifts a linear deployment makes: `ceil(100 / stepPercent)`,
    /// counted in tenths of a percent as ECS specifies the step.
    fn linear_shifts(step_percent: f64) -> u32 {
        let tenths = (step_percent * 10.0).round().clamp(1.0, 1000.0) as u32;
        1000u32.div_ceil(tenths)
    }

    /// The least time a deployment takes by its configuration alone: the bake times ECS
    /// waits through (scale-up, health checks and hooks come on top).
    pub fn min_duration(&self) -> Duration {
        match self {
            Strategy::Rolling => Duration::ZERO,
            Strategy::BlueGreen { bake } => *bake,
            Strategy::Linear {
                step_percent,
                step_bake,
                bake,
            } => {
                // No step bake after the last shift to 100 %.
                let waits = Self::linear_shifts(*step_percent).saturating_sub(1);
                *step_bake * waits + *bake
            }
            Strategy::Canary {
                canary_bake, bake, ..
            } => *canary_bake + *bake,
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = |d: &Duration| d.as_secs() / 60;
        match self {
            Strategy::Rolling => write!(f, "rolling update"),
            Strategy::BlueGreen { bake } => write!(f, "blue/green, bake {} min", m(bake)),
            Strategy::Linear {
                step_percent,
                step_bake,
                bake,
            } => write!(
                f,
                "linear, {step_percent} % steps {} min apart, bake {} min",
                m(step_bake),
                m(bake)
            ),
            Strategy::Canary {
                percent,
                canary_bake,
                bake,
            } => write!(
                f,
                "canary {percent} % for {} min, bake {} min",
                m(canary_bake),
                m(bake)
            ),
        }
    }
}

/// A service a release refuses to touch, and what to use instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// Deployed by CodeDeploy.
    #[error(
        "service {0} uses the CODE_DEPLOY deployment controller: its task definition changes \
         only through a CodeDeploy deployment (aws deploy create-deployment with an AppSpec), \
         not UpdateService. Release it with CodeDeploy, or move it to ECS's own blue/green \
         strategy (deploymentController ECS, strategy BLUE_GREEN), which this executor follows"
    )]
    CodeDeploy(String),
    /// Deployed with task sets by an external tool.
    #[error(
        "service {0} uses the EXTERNAL deployment controller: new versions are task sets \
         (CreateTaskSet, UpdateServicePrimaryTaskSet) made by the tool that owns it, not \
         UpdateService. Release it with that tool"
    )]
    External(String),
    /// An ECS Express Mode service, whose resources ECS manages.
    #[error(
        "service {0} is an ECS Express Mode service (resourceManagementType ECS): ECS manages \
         its deployments; update it with UpdateExpressGatewayService (console or CLI: aws ecs \
         update-express-gateway-service), not a task definition release"
    )]
    Express(String),
}

/// Refuses services a task definition release must not change.
pub fn check_service(service: &Service) -> Result<(), Unsupported> {
    let name = service.service_name().unwrap_or("?").to_string();
    if service.resource_management_type() == Some(&ResourceManagementType::Ecs) {
        return Err(Unsupported::Express(name));
    }
    match service.deployment_controller().map(|c| c.r#type()) {
        Some(DeploymentControllerType::CodeDeploy) => Err(Unsupported::CodeDeploy(name)),
        Some(DeploymentControllerType::External) => Err(Unsupported::External(name)),
        _ => Ok(()),
    }
}

/// The stages of the service's PAUSE lifecycle hooks (approval gates), for the log.
pub fn pause_stages(config: Option<&DeploymentConfiguration>) -> Vec<String> {
    config
        .map(|c| c.lifecycle_hooks())
        .unwrap_or_default()
        .iter()
        .filter(|h| h.target_type() == Some(&DeploymentLifecycleHookTargetType::Pause))
        .flat_map(|h| h.lifecycle_stages().iter().map(|s| s.as_str().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{
        CanaryConfiguration, DeploymentController, DeploymentLifecycleHook,
        DeploymentLifecycleHookStage, DeploymentStrategy, LinearConfiguration,
    };

    use super::*;

    fn config(
        strategy: DeploymentStrategy,
    ) -> aws_sdk_ecs::types::builders::DeploymentConfigurationBuilder {
        DeploymentConfiguration::builder()
            .strategy(strategy)
            .bake_time_in_minutes(5)
    }

    #[test]
    fn minimum_durations_follow_the_documented_formulas() {
        let min = |c: DeploymentConfiguration| Strategy::of(Some(&c)).min_duration().as_secs() / 60;
        assert_eq!(min(config(DeploymentStrategy::BlueGreen).build()), 5);
        // 10 % steps: 10 shifts, 9 step bakes of 6 minutes, then the bake.
        assert_eq!(min(config(DeploymentStrategy::Linear).build()), 9 * 6 + 5);
        let linear = |step: f64| {
            config(DeploymentStrategy::Linear)
                .linear_configuration(
                    LinearConfiguration::builder()
                        .step_percent(step)
                        .step_bake_time_in_minutes(2)
                        .build(),
                )
                .build()
        };
        // 11 %: 10 shifts (CloudFormation's "floor(100/11) = 9" steps of bake).
        assert_eq!(min(linear(11.0)), 9 * 2 + 5);
        // 33.3 %: 33.3, 66.6, 99.9, 100 — four shifts, three step bakes.
        assert_eq!(min(linear(33.3)), 3 * 2 + 5);
        assert_eq!(min(linear(100.0)), 5);
        let canary = config(DeploymentStrategy::Canary)
            .canary_configuration(
                CanaryConfiguration::builder()
                    .canary_percent(10.0)
                    .canary_bake_time_in_minutes(15)
                    .build(),
            )
            .build();
        assert_eq!(min(canary.clone()), 15 + 5);
        assert_eq!(
            Strategy::of(Some(&canary)).to_string(),
            "canary 10 % for 15 min, bake 5 min"
        );
        assert_eq!(Strategy::of(None), Strategy::Rolling);
        assert_eq!(min(config(DeploymentStrategy::Rolling).build()), 0);
    }

    #[test]
    fn code_deploy_external_and_express_services_are_refused() {
        let service = |controller: DeploymentControllerType| {
            Service::builder()
                .service_name("web")
                .deployment_controller(
                    DeploymentController::builder()
                        .r#type(controller)
                        .build()
                        .unwrap(),
                )
                .build()
        };
        assert!(check_service(&service(DeploymentControllerType::Ecs)).is_ok());
        assert!(matches!(
            check_service(&service(DeploymentControllerType::CodeDeploy)),
            Err(Unsupported::CodeDeploy(_))
        ));
        assert!(matches!(
            check_service(&service(DeploymentControllerType::External)),
            Err(Unsupported::External(_))
        ));
        let express = Service::builder()
            .service_name("api")
            .resource_management_type(ResourceManagementType::Ecs)
            .build();
        let e = check_service(&express).unwrap_err();
        assert!(e.to_string().contains("UpdateExpressGatewayService"), "{e}");
        assert!(check_service(&Service::builder().build()).is_ok());
    }

    #[test]
    fn pause_hook_stages_are_listed() {
        let c = config(DeploymentStrategy::BlueGreen)
            .lifecycle_hooks(
                DeploymentLifecycleHook::builder()
                    .target_type(DeploymentLifecycleHookTargetType::Pause)
                    .lifecycle_stages(DeploymentLifecycleHookStage::PostTestTrafficShift)
                    .build(),
            )
            .lifecycle_hooks(
                DeploymentLifecycleHook::builder()
                    .target_type(DeploymentLifecycleHookTargetType::AwsLambda)
                    .lifecycle_stages(DeploymentLifecycleHookStage::PostScaleUp)
                    .build(),
            )
            .build();
        assert_eq!(pause_stages(Some(&c)), ["POST_TEST_TRAFFIC_SHIFT"]);
    }
}
