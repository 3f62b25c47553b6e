#!/usr/bin/env bash
# The seed article's task-deploy commands: describe, jq twice, register, update, then
# `aws ecs wait services-stable` unless --no-wait.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
NEW_IMAGE="${ECR_REGISTRY}/${ECR_REPOSITORY}:${CI_COMMIT_TAG}"
aws ecs describe-task-definition --endpoint-url "$ECS" --task-definition "${TASK_DEFINITION}" --output json > "$work/temp.json"
jq '.taskDefinition | del (.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities, .registeredAt, .registeredBy)' "$work/temp.json" > "$work/task-def.json"
jq --arg NEW_IMAGE "${NEW_IMAGE}" '.containerDefinitions[0].image = $NEW_IMAGE' "$work/task-def.json" > "$work/new-task-def.json"
aws ecs register-task-definition --endpoint-url "$ECS" --cli-input-json "file://$work/new-task-def.json" >/dev/null
aws ecs update-service --endpoint-url "$ECS" --cluster "${ECS_CLUSTER}" --service "${ECS_SERVICE}" --task-definition "${TASK_DEFINITION}" >/dev/null
if [ "${1:-}" != "--no-wait" ]; then
  aws ecs wait services-stable --endpoint-url "$ECS" --cluster "${ECS_CLUSTER}" --services "${ECS_SERVICE}"
fi
