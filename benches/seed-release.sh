#!/usr/bin/env bash
# The seed article's two jobs as shell commands on the host (docker CLI, aws CLI, jq), against
# the same registry and endpoints as the executor. Usage: seed-release.sh <context dir> [--no-wait]
set -euo pipefail
context="$1"
export DOCKER_CONFIG="${DOCKER_CONFIG:?}"
aws ecr get-login-password --region "$AWS_DEFAULT_REGION" --endpoint-url "$MOTO" \
  | docker login --username AWS --password-stdin "$ECR_REGISTRY" >/dev/null 2>&1
docker build -q -t "$ECR_REGISTRY/$ECR_REPOSITORY:$CI_COMMIT_TAG" "$context" >/dev/null
docker push -q "$ECR_REGISTRY/$ECR_REPOSITORY:$CI_COMMIT_TAG" >/dev/null
"$(dirname "$0")/seed-deploy.sh" "${2:-}"
