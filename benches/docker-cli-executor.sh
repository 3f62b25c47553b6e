#!/usr/bin/env bash
# Baseline (a): a custom executor in the shape of gitlab-runner's documented examples,
# driving the `docker` CLI: a container per job, `docker exec -i … bash < script`, remove.
# Called like gitlab-ecs-executor: [--config FILE] config|prepare|run <script> <stage>|cleanup.
set -eo pipefail
[ "$1" = "--config" ] && shift 2
builds="${BENCH_BUILDS_DIR:?}"
container="bench-cli-r${CUSTOM_ENV_CI_RUNNER_ID}-p${CUSTOM_ENV_CI_PROJECT_ID}-j${CUSTOM_ENV_CI_JOB_ID}-c${CUSTOM_ENV_CI_CONCURRENT_ID}"
case "$1" in
  config)
    printf '{"builds_dir":"%s","cache_dir":"%s/cache","builds_dir_is_shared":true,"driver":{"name":"docker-cli"}}\n' "$builds" "$builds"
    ;;
  prepare)
    trap 'exit $SYSTEM_FAILURE_EXIT_CODE' ERR
    mkdir -p "$builds"
    docker run -d --name "$container" -v "$builds:$builds" "${CUSTOM_ENV_CI_JOB_IMAGE}" sleep 999999999 >/dev/null
    ;;
  run)
    case "$3" in
      build_script|after_script|step_*) docker exec -i "$container" /bin/bash < "$2" || exit "$BUILD_FAILURE_EXIT_CODE" ;;
      *) bash "$2" || exit "$BUILD_FAILURE_EXIT_CODE" ;;
    esac
    ;;
  cleanup)
    docker rm -f "$container" >/dev/null 2>&1 || true
    ;;
esac
