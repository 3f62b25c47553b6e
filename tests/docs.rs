//! The documentation cannot drift from the code: every settings key is documented, every
//! example parses, and the IAM policy lists exactly the AWS actions the code performs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gitlab_ecs_executor::local::pipeline::Pipeline;
use gitlab_ecs_executor::settings::Settings;

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
    let defaults = toml::Table::try_from(Settings::default()).unwrap();
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

fn sdk_actions() -> BTreeSet<String> {
    let re = regex::Regex::new(r#""((ecr|ecs|sts|logs):[A-Z][A-Za-z]+)""#).unwrap();
    let mut found = BTreeSet::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
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

#[test]
fn the_iam_policy_lists_exactly_the_actions_the_code_uses() {
    let doc = read(&root().join("docs/aws.md"));
    let policy = code_blocks(&doc, "json")
        .into_iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(&b).unwrap())
        .find(|v| v["Statement"].is_array())
        .expect("an IAM policy in docs/aws.md");
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
    let mut expected = sdk_actions();
    expected.extend(REGISTRY_ACTIONS.iter().map(|a| a.to_string()));
    expected.insert("iam:PassRole".into());
    assert_eq!(listed, expected, "docs/aws.md policy vs the code");
}
