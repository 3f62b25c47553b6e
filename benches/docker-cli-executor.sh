#!/usr/bin/env bash
# Baseline (a): a custom executor shaped like GitLab's docker executor, driving the `docker`
# CLI: per project and slot a builds and a cache volume; per job a network of its own (the
# docker executor's FF_NETWORK_PER_BUILD, its only way to keep jobs apart), a helper
# container for the housekeeping stages and a build container for the user's stages, both
# mounting only those volumes; every stage is `docker start -ai <container> < script`;
# cleanup removes the containers and the network and keeps the volumes.
# Called like gitlab-ecs-executor: [--config FILE] config|prepare|run <script> <stage>|cleanup.
set -eo pipefail
[ "$1" = "--config" ] && shift 2
helper_image="${BENCH_HELPER_IMAGE:?}"
job="bench-cli-r${CUSTOM_ENV_CI_RUNNER_ID}-p${CUSTOM_ENV_CI_PROJECT_ID}-j${CUSTOM_ENV_CI_JOB_ID}-c${CUSTOM_ENV_CI_CONCURRENT_ID}"
volumes="bench-cli-project-${CUSTOM_ENV_CI_PROJECT_ID}-concurrent-${CUSTOM_ENV_CI_CONCURRENT_ID}"
mounts=(-v "$volumes-builds:/builds" -v "$volumes-cache:/cache")
case "$1" in
  config)
    printf '{"builds_dir":"/builds","cache_dir":"/cache","builds_dir_is_shared":false,"driver":{"name":"docker-cli"}}\n'
    ;;
  prepare)
    trap 'exit $SYSTEM_FAILURE_EXIT_CODE' ERR
    docker volume create "$volumes-builds" >/dev/null
    docker volume create "$volumes-cache" >/dev/null
    docker network create "$job-net" >/dev/null
    docker create -i --name "$job-helper" --network "$job-net" "${mounts[@]}" "$helper_image" bash >/dev/null
    docker create -i --name "$job-build" --network "$job-net" "${mounts[@]}" "${CUSTOM_ENV_CI_JOB_IMAGE}" bash >/dev/null
    ;;
  run)
    case "$3" in
      build_script|after_script|step_*) container="$job-build" ;;
      *) container="$job-helper" ;;
    esac
    docker start -ai "$container" < "$2" || exit "$BUILD_FAILURE_EXIT_CODE"
    ;;
  cleanup)
    docker rm -f "$job-helper" "$job-build" >/dev/null 2>&1 || true
    docker network rm "$job-net" >/dev/null 2>&1 || true
    ;;
esac
