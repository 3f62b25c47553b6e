//! The check of each input's value: `None` when it is well formed, else what is wrong, in
//! words the requester can act on.

use std::time::Duration;

use regex::Regex;

use super::PreDeploy;
use crate::release::ecs::HookAction;
use crate::settings::{PauseMode, RollbackMode};

pub(super) fn check_variable_name(v: &str) -> Option<String> {
    let ok = v
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (!ok).then(|| format!("entry `{v}` must be a variable name"))
}

pub(super) fn check_build_arg(v: &str) -> Option<String> {
    let name = v.split_once('=').map_or(v, |(name, _)| name);
    if name.to_ascii_uppercase().starts_with("BUILDKIT_") {
        // BuildKit reads these as its own settings (the frontend, the cache namespace, the
        // sandbox): on a shared runner they are the executor's alone.
        return Some(format!(
            "entry `{name}` is a BuildKit control argument, which only the executor sets"
        ));
    }
    check_variable_name(name).map(|_| format!("entry `{name}` must be NAME or NAME=value"))
}

pub(super) fn check_build_target(v: &str) -> Option<String> {
    check_ecs_name(v).map(|_| "must be a stage name of the Dockerfile".into())
}

pub(super) fn check_pre_deploy_command(v: &str) -> Option<String> {
    PreDeploy::command_of(v)
        .is_none()
        .then(|| "must be a shell command or a JSON array of strings (the command as is)".into())
}

pub(super) fn check_hook_action(v: &str) -> Option<String> {
    HookAction::parse(v)
        .is_none()
        .then(|| "must be `continue` or `rollback`".into())
}

pub(super) fn check_service_deployment(v: &str) -> Option<String> {
    (!(v.starts_with("arn:") && v.contains(":service-deployment/")))
        .then(|| "must be a service deployment ARN (arn:aws:ecs:…:service-deployment/…)".into())
}

pub(super) fn check_region(v: &str) -> Option<String> {
    let ok = Regex::new(r"^[a-z]{2}(-[a-z]+)+-\d+$").is_ok_and(|re| re.is_match(v));
    (!ok).then(|| "must be a region name such as eu-west-1".into())
}

pub(super) fn check_duration(v: &str) -> Option<String> {
    parse_duration(v)
        .is_none()
        .then(|| "must be a duration such as 600, 90s, 15m or 1h".into())
}

pub(super) fn check_pause_mode(v: &str) -> Option<String> {
    PauseMode::parse(v)
        .is_none()
        .then(|| "must be `wait` or `succeed`".into())
}

pub(super) fn check_rollback(v: &str) -> Option<String> {
    RollbackMode::parse(v)
        .is_none()
        .then(|| "must be `auto` or `never`".into())
}

pub(super) fn check_registry(v: &str) -> Option<String> {
    let ok = Regex::new(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$")
        .is_ok_and(|re| re.is_match(v));
    (!ok).then(|| "must be a registry host such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com (no scheme, no path)".into())
}

pub(super) fn check_repository(v: &str) -> Option<String> {
    let ok = v.len() <= 256
        && Regex::new(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
            .is_ok_and(|re| re.is_match(v));
    (!ok).then(|| "must be an ECR repository name: lowercase letters, digits, `._-` and `/`".into())
}

pub(super) fn check_ecs_name(v: &str) -> Option<String> {
    let ok = v.starts_with("arn:aws")
        || (v.len() <= 255
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    (!ok).then(|| "must be a name (letters, digits, `-`, `_`) or an ARN".into())
}

pub(super) fn check_task_definition(v: &str) -> Option<String> {
    let family = v.split(':').next().unwrap_or(v);
    let ok = v.starts_with("arn:aws")
        || (check_ecs_name(family).is_none()
            && v.split_once(':')
                .is_none_or(|(_, rev)| rev.parse::<u32>().is_ok()));
    (!ok).then(|| "must be a task definition family, family:revision or ARN".into())
}

pub(super) fn check_container(v: &str) -> Option<String> {
    check_ecs_name(v).map(|_| "must be a container name from the task definition".into())
}

/// `600`, `90s`, `15m`, `1h`, `7d`: a positive duration.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (digits, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = digits.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// Build paths are relative to the project and may not leave it.
pub(super) fn check_relative(v: &str) -> Option<String> {
    let escapes = v.starts_with('/') || v.split('/').any(|part| part == "..");
    escapes.then(|| "must be a path inside the project directory (no leading `/`, no `..`)".into())
}
