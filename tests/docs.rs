//! The documentation cannot drift from the code: every settings key is documented, every
//! example parses, and the IAM policy lists exactly the AWS actions the code performs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gitlab_ecs_executor::exec::pipeline::Pipeline;
use gitlab_ecs_executor::settings::{EcsJobsSettings, Settings};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Dotted keys of a TOML table, tables themselves included.
fn keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            // `release.stages` is a map of stage names, not fixed keys.
            toml::Value::Table(t) if key != "release.stages" => keys(&key, t, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

#[test]
fn every_settings_key_is_documented() {
    // `[ecs_jobs]` is absent by default; its keys are documented all the same.
    let all_sections = Settings {
        ecs_jobs: Some(EcsJobsSettings::default()),
        ..Settings::default()
    };
    let defaults = toml::Table::try_from(all_sections).unwrap();
    let mut all = BTreeSet::new();
    keys("", &defaults, &mut all);
    let doc = read(&root().join("docs/configuration.md"));
    for key in &all {
        let leaf = key.rsplit('.').next().unwrap();
        let section = key.rsplit_once('.').map(|(s, _)| format!("[{s}]"));
        assert!(
            doc.contains(&format!("| `{leaf}` |")),
            "docs/configuration.md does not document `{key}`"
        );
        if let Some(section) = section {
            assert!(
                doc.contains(&format!("`{section}`")),
                "docs/configuration.md has no section {section}"
            );
        }
    }
    assert!(all.len() >= 20, "{all:?}");
}

#[test]
fn the_example_settings_file_is_the_defaults() {
    let path = root().join("runner-config/config.toml");
    assert_eq!(Settings::from_file(&path).unwrap(), Settings::default());
}

fn code_blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == fence => current = Some(String::new()),
            Some(block) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

fn docs() -> Vec<(PathBuf, String)> {
    let mut files = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.into_iter().map(|p| (p.clone(), read(&p))).collect()
}

#[test]
fn every_example_parses() {
    let mut checked = 0;
    for (path, text) in docs() {
        for block in code_blocks(&text, "toml") {
            // Settings examples must be valid settings; runner config.toml snippets valid TOML.
            if block.contains("[[runners]]") {
                toml::from_str::<toml::Table>(&block)
                    .unwrap_or_else(|e| panic!("{}: {e}\n{block}", path.display()));
            } else {
                Settings::from_toml(&block, &path)
                    .unwrap_or_else(|e| panic!("{}: {e}\n{block}", path.display()));
            }
            checked += 1;
        }
        for block in code_blocks(&text, "yaml") {
            Pipeline::parse(&block).unwrap_or_else(|e| panic!("{}: {e}\n{block}", path.display()));
            checked += 1;
        }
        for block in code_blocks(&text, "json") {
            serde_json::from_str::<serde_json::Value>(&block)
                .unwrap_or_else(|e| panic!("{}: {e}\n{block}", path.display()));
            checked += 1;
        }
    }
    for file in [
        "runner-config/config.toml",
        "runner-config/gitlab-runner.toml",
    ] {
        toml::from_str::<toml::Table>(&read(&root().join(file))).unwrap();
    }
    Pipeline::parse(&read(&root().join("runner-config/.gitlab-ci.yml"))).unwrap();
    assert!(checked >= 8, "only {checked} examples found");
}

/// Actions the Docker engine performs against ECR with the token during pull and push: not
/// SDK calls, but the policy must allow them.
const REGISTRY_ACTIONS: &[&str] = &[
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
];

/// The AWS actions the SDK calls under `dir` name, `except` the folders given.
fn sdk_actions(dir: &str, except: &[&str]) -> BTreeSet<String> {
    let re = regex::Regex::new(r#""((ecr|ecs|sts|logs):[A-Z][A-Za-z]+)""#).unwrap();
    let mut found = BTreeSet::new();
    let mut stack = vec![root().join(dir)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if except.iter().any(|e| path == root().join(e)) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = read(&path);
                found.extend(re.captures_iter(&text).map(|c| c[1].to_string()));
                // Every SDK call must name its action as a literal, or this test is blind.
                let sends = text.matches(".send()").count();
                let named = re.captures_iter(&text).count();
                assert!(
                    sends <= named,
                    "{}: {sends} SDK calls but {named} named actions",
                    path.display()
                );
            }
        }
    }
    found
}

/// The actions of the first IAM policy in `doc`.
fn policy_actions(doc: &str) -> BTreeSet<String> {
    let text = read(&root().join(doc));
    let policy = code_blocks(&text, "json")
        .into_iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(&b).unwrap())
        .find(|v| v["Statement"].is_array())
        .unwrap_or_else(|| panic!("an IAM policy in {doc}"));
    let mut listed = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                listed.insert(a.clone());
            }
            serde_json::Value::Array(a) => {
                listed.extend(a.iter().map(|v| v.as_str().unwrap().to_string()))
            }
            other => panic!("unexpected Action {other}"),
        }
    }
    listed
}

/// Beside the SDK's own actions: tagging on create (RegisterTaskDefinition and RunTask
/// carry tags, which ECS authorizes as `ecs:TagResource`) and passing the task's roles.
const IMPLIED_ACTIONS: &[&str] = &["ecs:TagResource", "iam:PassRole"];

#[test]
fn the_iam_policy_lists_exactly_the_actions_the_code_uses() {
    // The ECS job environment's calls are the runner host's own, in a policy of their own.
    let mut expected = sdk_actions("src", &["src/ecs_jobs"]);
    expected.extend(REGISTRY_ACTIONS.iter().map(|a| a.to_string()));
    expected.extend(IMPLIED_ACTIONS.iter().map(|a| a.to_string()));
    assert_eq!(
        policy_actions("docs/aws.md"),
        expected,
        "docs/aws.md policy vs the code"
    );
}

#[test]
fn the_ecs_job_environments_policy_lists_exactly_the_actions_its_code_uses() {
    let mut expected = sdk_actions("src/ecs_jobs", &[]);
    expected.extend(IMPLIED_ACTIONS.iter().map(|a| a.to_string()));
    assert_eq!(
        policy_actions("docs/ecs-jobs.md"),
        expected,
        "docs/ecs-jobs.md policy vs the code"
    );
}

/// gitlab-runner 19.x `[runners.docker]` keys (`common/config.go` `DockerConfig` and its
/// embedded `Credentials`).
const DOCKER_EXECUTOR_KEYS: &[&str] = &[
    "host",
    "tls_cert_path",
    "tls_verify",
    "hostname",
    "image",
    "runtime",
    "memory",
    "memory_swap",
    "memory_reservation",
    "cgroup_parent",
    "cpuset_cpus",
    "cpuset_mems",
    "cpus",
    "cpu_shares",
    "dns",
    "dns_search",
    "privileged",
    "services_privileged",
    "disable_entrypoint_overwrite",
    "user",
    "allowed_users",
    "group_add",
    "userns_mode",
    "cap_add",
    "cap_drop",
    "oom_kill_disable",
    "oom_score_adjust",
    "security_opt",
    "services_security_opt",
    "devices",
    "device_cgroup_rules",
    "gpus",
    "services_devices",
    "disable_cache",
    "volumes",
    "volume_keep",
    "volume_driver",
    "volume_driver_ops",
    "cache_dir",
    "extra_hosts",
    "volumes_from",
    "network_mode",
    "pid_mode",
    "ipcmode",
    "mac_address",
    "links",
    "services",
    "services_limit",
    "service_memory",
    "service_memory_swap",
    "service_memory_reservation",
    "service_cgroup_parent",
    "service_slot_cgroup_template",
    "service_cpuset_cpus",
    "service_cpus",
    "service_cpu_shares",
    "service_gpus",
    "wait_for_services_timeout",
    "allowed_images",
    "allowed_privileged_images",
    "allowed_privileged_services",
    "allowed_pull_policies",
    "allowed_services",
    "pull_policy",
    "isolation",
    "shm_size",
    "tmpfs",
    "services_tmpfs",
    "sysctls",
    "helper_image",
    "helper_image_flavor",
    "container_labels",
    "enable_ipv6",
    "ulimit",
    "network_mtu",
    "log_options",
];

#[test]
fn every_docker_executor_key_is_classified_and_supported_ones_exist() {
    let doc = read(&root().join("docs/configuration.md"));
    let table = doc
        .split("## `[runners.docker]` keys")
        .nth(1)
        .expect("a [runners.docker] section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut rows = std::collections::BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        rows.insert(cells[1].trim_matches('`').to_string(), cells[2].to_string());
    }
    let defaults = toml::Table::try_from(Settings::default()).unwrap();
    let ours = defaults["docker"].as_table().unwrap();
    for key in DOCKER_EXECUTOR_KEYS {
        let status = rows
            .get(*key)
            .unwrap_or_else(|| panic!("docs/configuration.md does not classify `{key}`"));
        assert!(
            ["supported", "differs", "not applicable"].contains(&status.as_str()),
            "`{key}`: {status}"
        );
        // A supported key is accepted in [docker] under the docker executor's name.
        if status == "supported" {
            let text = format!("[docker]\n{key} = {}", sample(key, ours.get(*key)));
            Settings::from_toml(&text, Path::new("docs"))
                .unwrap_or_else(|e| panic!("`{key}` is marked supported: {e}"));
        }
    }
    assert_eq!(rows.len(), DOCKER_EXECUTOR_KEYS.len(), "{rows:?}");
}

/// A valid value for a `[docker]` key: its default, or a sample for keys without one.
fn sample(key: &str, default: Option<&toml::Value>) -> String {
    match (key, default) {
        (_, Some(v)) => v.to_string(),
        ("image", None) => "\"debian:bookworm-slim\"".into(),
        ("services_privileged", None) => "true".into(),
        (_, None) => "1".into(),
    }
}

/// The command lines of the docs' `sh` blocks and inline code that run the binary, with
/// continuation lines joined and comments removed.
fn command_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = code_blocks(text, "sh")
        .iter()
        .flat_map(|block| {
            block
                .replace("\\\n", " ")
                .lines()
                .map(|l| l.split(" #").next().unwrap_or_default().trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    lines.extend(
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(|span| span.trim().to_string()),
    );
    lines.retain(|l| l.starts_with("gitlab-ecs-executor "));
    lines
}

#[test]
fn every_cli_example_uses_a_command_and_flags_that_exist() {
    let mut checked = 0;
    for (path, text) in docs() {
        for line in command_lines(&text) {
            let words: Vec<&str> = line.split_whitespace().skip(1).collect();
            let mut rest = words.iter().copied().peekable();
            let mut command = None;
            while let Some(word) = rest.next() {
                if word == "--config" {
                    rest.next();
                } else if !word.starts_with('-') {
                    command = Some(word);
                    break;
                }
            }
            let Some(command) = command else { continue };
            let help_of = |words: &[&str]| {
                std::process::Command::new(env!("CARGO_BIN_EXE_gitlab-ecs-executor"))
                    .args(words)
                    .arg("--help")
                    .output()
                    .unwrap()
            };
            let mut help = help_of(&[command]);
            assert!(
                help.status.success(),
                "{}: `{line}`: no command `{command}`",
                path.display()
            );
            // A verb's own verbs (`agent serve`): their flags are theirs.
            let mut verbs = vec![command];
            while let Some(word) = rest.peek().copied().filter(|w| !w.starts_with('-')) {
                let deeper = help_of(&[verbs.as_slice(), &[word]].concat());
                if !deeper.status.success() {
                    break;
                }
                verbs.push(word);
                help = deeper;
                rest.next();
            }
            let command = verbs.join(" ");
            let help = String::from_utf8_lossy(&help.stdout);
            for flag in rest.filter(|w| w.starts_with("--")) {
                let flag = flag.split('=').next().unwrap_or(flag);
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "{}: `{line}`: `{command}` has no flag {flag}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} command lines found");
}
