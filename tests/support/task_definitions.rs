//! Task definitions shaped like the examples in AWS's ECS developer guide, as
//! `RegisterTaskDefinition` requests: multi-key maps, sidecars, volumes and dependencies, the
//! things a minimal fixture hides. The container named `app` runs the release image.

use serde_json::{json, Value};

/// Tags a service's revision carries before any release.
pub fn base_tags() -> Vec<Value> {
    vec![
        json!({"key": "team", "value": "payments"}),
        json!({"key": "cost-center", "value": "cc-1234"}),
        json!({"key": "environment", "value": "production"}),
    ]
}

/// A Fargate web service (the guide's "Fargate task definition" and "X-Ray sidecar"
/// examples): awslogs with three options, three Docker labels, secrets from Secrets Manager
/// and SSM, a health check, and an X-Ray daemon sidecar listed first.
pub fn fargate_web(family: &str, app_image: &str) -> Value {
    json!({
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "1024",
        "memory": "2048",
        "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "taskRoleArn": "arn:aws:iam::123456789012:role/shop-web",
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "containerDefinitions": [
            {
                "name": "xray-daemon",
                "image": "public.ecr.aws/xray/aws-xray-daemon:3.3.12",
                "cpu": 32,
                "memoryReservation": 256,
                "essential": true,
                "portMappings": [{"containerPort": 2000, "hostPort": 2000, "protocol": "udp"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/shop-web",
                        "awslogs-region": "eu-west-1",
                        "awslogs-stream-prefix": "xray"
                    }
                }
            },
            {
                "name": "app",
                "image": app_image,
                "cpu": 960,
                "memory": 1792,
                "essential": true,
                "portMappings": [
                    {"name": "http", "containerPort": 8080, "hostPort": 8080, "protocol": "tcp", "appProtocol": "http"},
                    {"name": "metrics", "containerPort": 9090, "hostPort": 9090, "protocol": "tcp"}
                ],
                "environment": [
                    {"name": "AWS_XRAY_DAEMON_ADDRESS", "value": "127.0.0.1:2000"},
                    {"name": "PORT", "value": "8080"},
                    {"name": "SPRING_PROFILES_ACTIVE", "value": "production"}
                ],
                "secrets": [
                    {"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop/db-AbCdEf"},
                    {"name": "API_KEY", "valueFrom": "arn:aws:ssm:eu-west-1:123456789012:parameter/shop/api-key"}
                ],
                "dockerLabels": {
                    "com.example.owner": "payments",
                    "com.example.tier": "web",
                    "com.example.team": "checkout"
                },
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -f http://localhost:8080/health || exit 1"],
                    "interval": 30,
                    "timeout": 5,
                    "retries": 3,
                    "startPeriod": 60
                },
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/shop-web",
                        "awslogs-region": "eu-west-1",
                        "awslogs-stream-prefix": "app"
                    }
                },
                "dependsOn": [{"containerName": "xray-daemon", "condition": "START"}],
                "stopTimeout": 30
            }
        ]
    })
}

/// An EC2 service with bridge networking (the guide's "WordPress and MySQL" and "host
/// volume" examples): dynamic host ports, a host bind volume, Docker labels, ulimits,
/// container-level memory, a placement constraint and a firelens log router.
pub fn ec2_bridge(family: &str, app_image: &str) -> Value {
    json!({
        "family": family,
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "placementConstraints": [
            {"type": "memberOf", "expression": "attribute:ecs.instance-type =~ m6i.*"}
        ],
        "volumes": [
            {"name": "webdata", "host": {"sourcePath": "/ecs/webdata"}},
            {"name": "scratch", "dockerVolumeConfiguration": {
                "scope": "task", "driver": "local",
                "driverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=64m"},
                "labels": {"purpose": "scratch", "owner": "ops"}
            }}
        ],
        "containerDefinitions": [
            {
                "name": "log-router",
                "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0",
                "memoryReservation": 50,
                "essential": true,
                "firelensConfiguration": {
                    "type": "fluentbit",
                    "options": {"enable-ecs-log-metadata": "true", "config-file-type": "file",
                                "config-file-value": "/fluent-bit/configs/parse-json.conf"}
                }
            },
            {
                "name": "app",
                "image": app_image,
                "memory": 512,
                "memoryReservation": 256,
                "essential": true,
                "links": ["log-router"],
                "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}],
                "mountPoints": [
                    {"sourceVolume": "webdata", "containerPath": "/var/www/html", "readOnly": false},
                    {"sourceVolume": "scratch", "containerPath": "/scratch"}
                ],
                "dockerLabels": {
                    "traefik.enable": "true",
                    "traefik.http.routers.web.rule": "Host(`shop.example.com`)",
                    "com.example.service": "web"
                },
                "ulimits": [
                    {"name": "nofile", "softLimit": 65536, "hardLimit": 65536},
                    {"name": "nproc", "softLimit": 4096, "hardLimit": 8192}
                ],
                "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
                "extraHosts": [{"hostname": "legacy-db", "ipAddress": "10.0.12.7"}],
                "logConfiguration": {
                    "logDriver": "awsfirelens",
                    "options": {"Name": "cloudwatch", "region": "eu-west-1",
                                "log_group_name": "/ecs/shop-ec2", "log_stream_prefix": "app-"}
                }
            }
        ]
    })
}

/// A worker on Fargate with EFS (the guide's "Amazon EFS volumes" example): an access point
/// with IAM authorization and transit encryption, an init container the app depends on
/// finishing, and ephemeral storage.
pub fn efs_worker(family: &str, app_image: &str) -> Value {
    json!({
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "512",
        "memory": "1024",
        "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "taskRoleArn": "arn:aws:iam::123456789012:role/shop-worker",
        "ephemeralStorage": {"sizeInGiB": 40},
        "volumes": [
            {"name": "shared", "efsVolumeConfiguration": {
                "fileSystemId": "fs-0123456789abcdef0",
                "rootDirectory": "/",
                "transitEncryption": "ENABLED",
                "transitEncryptionPort": 2999,
                "authorizationConfig": {"accessPointId": "fsap-0123456789abcdef0", "iam": "ENABLED"}
            }}
        ],
        "containerDefinitions": [
            {
                "name": "init-permissions",
                "image": "public.ecr.aws/docker/library/busybox:1.36",
                "essential": false,
                "command": ["sh", "-c", "chown -R 1000:1000 /shared && echo ready"],
                "mountPoints": [{"sourceVolume": "shared", "containerPath": "/shared"}]
            },
            {
                "name": "app",
                "image": app_image,
                "essential": true,
                "user": "1000:1000",
                "workingDirectory": "/srv",
                "entryPoint": ["/usr/local/bin/worker"],
                "command": ["--queue", "orders", "--concurrency", "4"],
                "mountPoints": [{"sourceVolume": "shared", "containerPath": "/shared", "readOnly": false}],
                "dependsOn": [{"containerName": "init-permissions", "condition": "SUCCESS"}],
                "environment": [
                    {"name": "QUEUE_URL", "value": "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"},
                    {"name": "SHARED_DIR", "value": "/shared"}
                ],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/shop-worker",
                        "awslogs-region": "eu-west-1",
                        "awslogs-stream-prefix": "worker",
                        "mode": "non-blocking",
                        "max-buffer-size": "25m"
                    }
                },
                "linuxParameters": {"initProcessEnabled": true,
                                    "capabilities": {"drop": ["NET_RAW", "MKNOD"]}}
            }
        ]
    })
}

/// `revision` without the members ECS sets, the `app` image and the executor's tags: what
/// must be identical between a base revision and any release of it.
pub fn invariant_part(revision: &Value, tags: &[Value]) -> (Value, Vec<Value>) {
    let mut td = revision.clone();
    if let Some(obj) = td.as_object_mut() {
        for member in [
            "taskDefinitionArn",
            "revision",
            "status",
            "requiresAttributes",
            "compatibilities",
            "registeredAt",
            "registeredBy",
        ] {
            obj.remove(member);
        }
    }
    if let Some(app) = td["containerDefinitions"]
        .as_array_mut()
        .and_then(|c| c.iter_mut().find(|c| c["name"] == "app"))
    {
        app["image"] = Value::Null;
    }
    let tags = tags
        .iter()
        .filter(|t| !t["key"].as_str().unwrap_or_default().starts_with("gitlab:"))
        .cloned()
        .collect();
    (td, tags)
}

/// An app and a background worker built from one image (the worker with its own command),
/// behind a FireLens log router from another repository: one release must move both and
/// leave the router alone.
pub fn web_and_worker(family: &str, image: &str) -> Value {
    json!({
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "1024",
        "memory": "2048",
        "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "taskRoleArn": "arn:aws:iam::123456789012:role/shop",
        "containerDefinitions": [
            {
                "name": "log-router",
                "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0",
                "essential": true,
                "firelensConfiguration": {"type": "fluentbit", "options": {"enable-ecs-log-metadata": "true"}},
                "memoryReservation": 50,
                "user": "0"
            },
            {
                "name": "app",
                "image": image,
                "essential": true,
                "portMappings": [{"name": "http", "containerPort": 3000, "protocol": "tcp"}],
                "environment": [{"name": "RAILS_ENV", "value": "production"}, {"name": "PORT", "value": "3000"}],
                "secrets": [{"name": "DATABASE_URL", "valueFrom": "arn:aws:ssm:ap-northeast-1:123456789012:parameter/shop/database-url"}],
                "logConfiguration": {"logDriver": "awsfirelens", "options": {"Name": "cloudwatch_logs", "region": "ap-northeast-1", "log_group_name": "/ecs/shop", "log_stream_prefix": "app/"}},
                "dependsOn": [{"containerName": "log-router", "condition": "START"}]
            },
            {
                "name": "worker",
                "image": image,
                "essential": false,
                "command": ["bundle", "exec", "sidekiq", "-C", "config/sidekiq.yml"],
                "environment": [{"name": "RAILS_ENV", "value": "production"}, {"name": "SIDEKIQ_CONCURRENCY", "value": "10"}],
                "secrets": [{"name": "DATABASE_URL", "valueFrom": "arn:aws:ssm:ap-northeast-1:123456789012:parameter/shop/database-url"}],
                "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/shop", "awslogs-region": "ap-northeast-1", "awslogs-stream-prefix": "worker"}},
                "dependsOn": [{"containerName": "log-router", "condition": "START"}]
            }
        ]
    })
}

/// A task definition using essentially every `RegisterTaskDefinition` field: an App Mesh
/// proxy configuration, an Envoy sidecar with a health check, ulimits, system controls and
/// Linux parameters, a FireLens router, EFS with an access point, a Docker volume, a host
/// volume, secrets, environment files, dependencies, a restart policy, fault injection,
/// ephemeral storage, the runtime platform, placement constraints and tags.
pub fn everything(family: &str, app_image: &str) -> Value {
    let envoy = json!({
        "name": "envoy",
        "image": "840364872350.dkr.ecr.ap-northeast-1.amazonaws.com/aws-appmesh-envoy:v1.29.6.0-prod",
        "essential": true,
        "user": "1337",
        "memoryReservation": 256,
        "environment": [{"name": "APPMESH_RESOURCE_ARN", "value": "arn:aws:appmesh:ap-northeast-1:123456789012:mesh/shop/virtualNode/api"}],
        "healthCheck": {"command": ["CMD-SHELL", "curl -s http://localhost:9901/server_info | grep state | grep -q LIVE"],
                        "interval": 5, "timeout": 2, "retries": 3, "startPeriod": 10},
        "ulimits": [{"name": "nofile", "softLimit": 15000, "hardLimit": 15000}],
        "systemControls": [{"namespace": "net.ipv4.tcp_keepalive_time", "value": "300"}]
    });
    let router = json!({
        "name": "log-router",
        "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0",
        "essential": false,
        "firelensConfiguration": {"type": "fluentbit", "options": {"enable-ecs-log-metadata": "true", "config-file-type": "file", "config-file-value": "/fluent-bit/configs/parse-json.conf"}},
        "memoryReservation": 64
    });
    let app = json!({
        "name": "app",
        "image": app_image,
        "essential": true,
        "cpu": 1536,
        "memory": 3072,
        "portMappings": [{"name": "http", "containerPort": 8080, "protocol": "tcp", "appProtocol": "http2"}],
        "environment": [{"name": "PORT", "value": "8080"}, {"name": "LOG_FORMAT", "value": "json"}],
        "environmentFiles": [{"value": "arn:aws:s3:::shop-config/production.env", "type": "s3"}],
        "secrets": [
            {"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:shop/db-AbCdEf"},
            {"name": "STRIPE_KEY", "valueFrom": "arn:aws:ssm:ap-northeast-1:123456789012:parameter/shop/stripe"}
        ],
        "mountPoints": [
            {"sourceVolume": "uploads", "containerPath": "/srv/uploads", "readOnly": false},
            {"sourceVolume": "scratch", "containerPath": "/tmp/scratch"},
            {"sourceVolume": "certs", "containerPath": "/etc/ssl/extra", "readOnly": true}
        ],
        "dependsOn": [{"containerName": "envoy", "condition": "HEALTHY"}, {"containerName": "log-router", "condition": "START"}],
        "restartPolicy": {"enabled": true, "ignoredExitCodes": [0, 143], "restartAttemptPeriod": 60},
        "startTimeout": 120,
        "stopTimeout": 60,
        "readonlyRootFilesystem": true,
        "dockerLabels": {"com.example.owner": "payments", "com.example.service": "api", "com.example.tier": "backend"},
        "linuxParameters": {
            "initProcessEnabled": true,
            "capabilities": {"add": ["SYS_PTRACE"], "drop": ["NET_RAW", "MKNOD"]},
            "sharedMemorySize": 128,
            "tmpfs": [{"containerPath": "/run", "size": 64, "mountOptions": ["noexec", "nosuid"]}],
            "maxSwap": 512,
            "swappiness": 10
        },
        "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}, {"name": "nproc", "softLimit": 4096, "hardLimit": 8192}],
        "logConfiguration": {"logDriver": "awsfirelens", "options": {"Name": "cloudwatch_logs", "region": "ap-northeast-1", "log_group_name": "/ecs/shop-api", "log_stream_prefix": "app/"},
                             "secretOptions": [{"name": "apikey", "valueFrom": "arn:aws:ssm:ap-northeast-1:123456789012:parameter/shop/log-key"}]},
        "versionConsistency": "disabled"
    });
    json!({
        "family": family,
        "taskRoleArn": "arn:aws:iam::123456789012:role/shop-api",
        "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "2048",
        "memory": "4096",
        "pidMode": "task",
        "ipcMode": "task",
        "enableFaultInjection": true,
        "ephemeralStorage": {"sizeInGiB": 40},
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.instance-type =~ m6i.*"}],
        "proxyConfiguration": {
            "type": "APPMESH",
            "containerName": "envoy",
            "properties": [
                {"name": "IgnoredUID", "value": "1337"},
                {"name": "ProxyIngressPort", "value": "15000"},
                {"name": "ProxyEgressPort", "value": "15001"},
                {"name": "AppPorts", "value": "8080"},
                {"name": "EgressIgnoredIPs", "value": "169.254.170.2,169.254.169.254"}
            ]
        },
        "volumes": [
            {"name": "uploads", "efsVolumeConfiguration": {
                "fileSystemId": "fs-0123456789abcdef0", "rootDirectory": "/",
                "transitEncryption": "ENABLED", "transitEncryptionPort": 2999,
                "authorizationConfig": {"accessPointId": "fsap-0123456789abcdef0", "iam": "ENABLED"}}},
            {"name": "scratch", "dockerVolumeConfiguration": {
                "scope": "shared", "autoprovision": true, "driver": "local",
                "driverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=64m"},
                "labels": {"team": "payments", "purpose": "scratch"}}},
            {"name": "certs", "host": {"sourcePath": "/etc/pki/ca-trust"}}
        ],
        "containerDefinitions": [envoy, router, app]
    })
}
