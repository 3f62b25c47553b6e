//! The [`Ecs`] trait over aws-sdk-ecs. Every failure is classified from the SDK's typed
//! error ([`CallError`]) before it leaves this file.

use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::{
    ContainerOverride, DeploymentLifecycleHookAction, DesiredStatus, Service, ServiceDeployment,
    SortOrder, StopServiceDeploymentStopType, Task, TaskDefinitionField, TaskDefinitionStatus,
    TaskOverride,
};

use super::wire::{RequestPreview, ResponseBody};
use super::{revision_number, short_td, Ecs, EcsError, HookAction, Revision, Started, TaskRun};
use crate::aws::CallError;
use crate::release::taskdef::{self, Document};

/// One ECS service, through the SDK.
#[derive(Clone)]
pub struct SdkEcs {
    client: aws_sdk_ecs::Client,
    cluster: String,
    service: String,
}

impl SdkEcs {
    /// The service `service` in `cluster`.
    pub fn new(client: aws_sdk_ecs::Client, cluster: &str, service: &str) -> Self {
        SdkEcs {
            client,
            cluster: cluster.to_string(),
            service: service.to_string(),
        }
    }
}

fn call<E, R>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_ecs::error::SdkError<E, R>) -> EcsError
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| EcsError::Call(CallError::from_sdk(operation, e))
}

fn unreadable(operation: &'static str, message: String) -> EcsError {
    EcsError::Call(CallError::unreadable(operation, message))
}

impl Ecs for SdkEcs {
    fn cluster(&self) -> &str {
        &self.cluster
    }

    fn service(&self) -> &str {
        &self.service
    }

    async fn describe_service(&self) -> Result<Service, EcsError> {
        let out = self
            .client
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.service)
            .send()
            .await
            .map_err(call("ecs:DescribeServices"))?;
        out.services()
            .first()
            .cloned()
            .ok_or_else(|| EcsError::ServiceMissing {
                cluster: self.cluster.clone(),
                service: self.service.clone(),
            })
    }

    async fn task_definition(&self, arn: &str) -> Result<Revision, EcsError> {
        const OP: &str = "ecs:DescribeTaskDefinition";
        let body = ResponseBody::default();
        let out = self
            .client
            .describe_task_definition()
            .task_definition(arn)
            .include(TaskDefinitionField::Tags)
            .customize()
            .interceptor(body.clone())
            .send()
            .await
            .map_err(call(OP))?;
        let definition = out
            .task_definition()
            .cloned()
            .ok_or_else(|| unreadable(OP, format!("no task definition returned for {arn}")))?;
        let raw = body
            .take()
            .ok_or_else(|| unreadable(OP, format!("the response for {arn} is not JSON")))?;
        let document = Document::from_describe_response(&raw)
            .map_err(|e| unreadable(OP, format!("{arn}: {e}")))?;
        Ok(Revision {
            definition,
            tags: out.tags().to_vec(),
            document,
        })
    }

    async fn preview_register(
        &self,
        input: RegisterTaskDefinitionInput,
    ) -> Result<Document, EcsError> {
        const OP: &str = "ecs:RegisterTaskDefinition";
        let preview = RequestPreview::default();
        let result = taskdef::register_request(&self.client, input)
            .customize()
            .interceptor(preview.clone())
            .send()
            .await;
        match (preview.body(), result) {
            (Some(body), Err(_)) => Document::from_register_request(&body)
                .map_err(|e| unreadable(OP, format!("cannot read the serialized request: {e}"))),
            (None, Err(e)) => Err(call(OP)(e)),
            (_, Ok(_)) => Err(unreadable(OP, "a previewed registration was sent".into())),
        }
    }

    async fn register(&self, input: RegisterTaskDefinitionInput) -> Result<String, EcsError> {
        const OP: &str = "ecs:RegisterTaskDefinition";
        let out = taskdef::register_request(&self.client, input)
            .send()
            .await
            .map_err(call(OP))?;
        out.task_definition()
            .and_then(|td| td.task_definition_arn())
            .map(str::to_string)
            .ok_or_else(|| unreadable(OP, "no task definition returned".into()))
    }

    async fn deregister(&self, arn: &str) -> Result<(), EcsError> {
        self.client
            .deregister_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map(|_| ())
            .map_err(call("ecs:DeregisterTaskDefinition"))
    }

    async fn update_service(&self, arn: &str) -> Result<Started, EcsError> {
        const OP: &str = "ecs:UpdateService";
        let out = self
            .client
            .update_service()
            .cluster(&self.cluster)
            .service(&self.service)
            .task_definition(arn)
            .send()
            .await
            .map_err(call(OP))?;
        let service = out.service();
        let deployment_id = service
            .into_iter()
            .flat_map(|s| s.deployments())
            .find(|d| d.status() == Some("PRIMARY") && d.task_definition() == Some(arn))
            .and_then(|d| d.id())
            .map(str::to_string)
            .ok_or_else(|| {
                unreadable(
                    OP,
                    format!(
                        "the response names no PRIMARY deployment of {}",
                        short_td(arn)
                    ),
                )
            })?;
        Ok(Started {
            deployment_id,
            service_deployment: service
                .and_then(|s| s.current_service_deployment())
                .filter(|a| !a.is_empty())
                .map(str::to_string),
        })
    }

    async fn service_deployment(&self, arn: &str) -> Result<ServiceDeployment, EcsError> {
        const OP: &str = "ecs:DescribeServiceDeployments";
        let out = self
            .client
            .describe_service_deployments()
            .service_deployment_arns(arn)
            .send()
            .await
            .map_err(call(OP))?;
        if let Some(d) = out.service_deployments().first() {
            return Ok(d.clone());
        }
        let why = out
            .failures()
            .first()
            .and_then(|f| f.reason())
            .unwrap_or("not returned");
        Err(unreadable(OP, format!("service deployment {arn}: {why}")))
    }

    async fn stop_service_deployment(&self, arn: &str) -> Result<(), EcsError> {
        self.client
            .stop_service_deployment()
            .service_deployment_arn(arn)
            .stop_type(StopServiceDeploymentStopType::Rollback)
            .send()
            .await
            .map(|_| ())
            .map_err(call("ecs:StopServiceDeployment"))
    }

    async fn continue_service_deployment(
        &self,
        arn: &str,
        hook_id: &str,
        action: HookAction,
    ) -> Result<(), EcsError> {
        self.client
            .continue_service_deployment()
            .service_deployment_arn(arn)
            .hook_id(hook_id)
            .action(match action {
                HookAction::Continue => DeploymentLifecycleHookAction::Continue,
                HookAction::Rollback => DeploymentLifecycleHookAction::Rollback,
            })
            .send()
            .await
            .map(|_| ())
            .map_err(call("ecs:ContinueServiceDeployment"))
    }

    async fn run_task(&self, run: &TaskRun) -> Result<String, EcsError> {
        const OP: &str = "ecs:RunTask";
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(&run.container)
                    .set_command(Some(run.command.clone()))
                    .build(),
            )
            .build();
        let like = &run.like;
        // A capacity provider strategy and a launch type exclude each other.
        let strategy = Some(like.capacity_provider_strategy().to_vec()).filter(|s| !s.is_empty());
        let launch_type = like.launch_type().cloned().filter(|_| strategy.is_none());
        let out = self
            .client
            .run_task()
            .cluster(&self.cluster)
            .task_definition(&run.task_definition)
            .count(1)
            .started_by("gitlab-ecs-executor")
            .overrides(overrides)
            .set_launch_type(launch_type)
            .set_capacity_provider_strategy(strategy)
            .set_network_configuration(like.network_configuration().cloned())
            .set_platform_version(like.platform_version().map(str::to_string))
            .send()
            .await
            .map_err(call(OP))?;
        if let Some(task) = out.tasks().first().and_then(|t| t.task_arn()) {
            return Ok(task.to_string());
        }
        let why = out
            .failures()
            .first()
            .map(|f| {
                format!(
                    "{}{}",
                    f.reason().unwrap_or("no reason given"),
                    f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "no task and no failure returned".into());
        Err(EcsError::NoTaskStarted { reason: why })
    }

    async fn task(&self, arn: &str) -> Result<Task, EcsError> {
        const OP: &str = "ecs:DescribeTasks";
        let out = self
            .client
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(arn)
            .send()
            .await
            .map_err(call(OP))?;
        out.tasks()
            .first()
            .cloned()
            .ok_or_else(|| unreadable(OP, format!("task {arn} was not returned")))
    }

    async fn stop_task(&self, arn: &str, reason: &str) -> Result<(), EcsError> {
        self.client
            .stop_task()
            .cluster(&self.cluster)
            .task(arn)
            .reason(reason)
            .send()
            .await
            .map(|_| ())
            .map_err(call("ecs:StopTask"))
    }

    async fn revisions(&self, family: &str) -> Result<Vec<String>, EcsError> {
        let out = self
            .client
            .list_task_definitions()
            .family_prefix(family)
            .status(TaskDefinitionStatus::Active)
            .sort(SortOrder::Desc)
            .max_results(100)
            .send()
            .await
            .map_err(call("ecs:ListTaskDefinitions"))?;
        // The prefix also matches longer family names; and the order is ours to make sure of.
        let mut arns: Vec<(i32, String)> = out
            .task_definition_arns()
            .iter()
            .filter(|arn| {
                short_td(arn)
                    .rsplit_once(':')
                    .is_some_and(|(f, _)| f == family)
            })
            .filter_map(|arn| Some((revision_number(arn)?, arn.clone())))
            .collect();
        arns.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
        Ok(arns.into_iter().map(|(_, arn)| arn).collect())
    }

    async fn stopped_tasks(&self, deployment_id: &str) -> Result<Vec<Task>, EcsError> {
        let listed = self
            .client
            .list_tasks()
            .cluster(&self.cluster)
            .started_by(deployment_id)
            .desired_status(DesiredStatus::Stopped)
            .send()
            .await
            .map_err(call("ecs:ListTasks"))?;
        let arns: Vec<String> = listed.task_arns().iter().take(100).cloned().collect();
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let described = self
            .client
            .describe_tasks()
            .cluster(&self.cluster)
            .set_tasks(Some(arns))
            .send()
            .await
            .map_err(call("ecs:DescribeTasks"))?;
        Ok(described.tasks().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_ecs::types::{ContainerDefinition, LogConfiguration, LogDriver, TaskDefinition};
    use serde_json::json;

    use super::*;

    /// A client whose requests could not leave the process: previews never need them to.
    fn offline() -> SdkEcs {
        let conf = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .region(aws_sdk_ecs::config::Region::new("eu-west-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        SdkEcs::new(aws_sdk_ecs::Client::from_conf(conf), "c", "s")
    }

    fn described(
        options: HashMap<String, String>,
        labels: HashMap<String, String>,
    ) -> TaskDefinition {
        TaskDefinition::builder()
            .family("shop")
            .revision(3)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("r/shop:v1")
                    .set_docker_labels(Some(labels))
                    .log_configuration(
                        LogConfiguration::builder()
                            .log_driver(LogDriver::Awslogs)
                            .set_options(Some(options))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn the_copy_as_sent_does_not_depend_on_map_order() {
        let ecs = offline();
        let options = [
            ("awslogs-group", "/ecs/shop"),
            ("awslogs-region", "eu-west-1"),
            ("awslogs-stream-prefix", "ecs"),
        ];
        let labels = [("owner", "ops"), ("tier", "web"), ("team", "payments")];
        let expected = Document::from_register_request(&json!({
            "family": "shop",
            "containerDefinitions": [{"name": "app", "image": "r/shop:v2",
                "dockerLabels": {"team": "payments", "owner": "ops", "tier": "web"},
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-stream-prefix": "ecs", "awslogs-group": "/ecs/shop",
                    "awslogs-region": "eu-west-1"}}}]
        }))
        .unwrap();
        for round in 0..10 {
            // Each HashMap iterates in its own random order.
            let mut opts: Vec<_> = options.to_vec();
            opts.rotate_left(round % 3);
            let base = described(map(&opts), map(&labels));
            let input = taskdef::copy(&base, &[0], "r/shop:v2", Vec::new()).unwrap();
            let sent = ecs.preview_register(input).await.unwrap();
            assert_eq!(sent.diff(&expected), Vec::new(), "round {round}");
        }
    }
}
