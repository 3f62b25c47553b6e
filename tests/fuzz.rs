//! Property-based fuzzing of every parser that takes input from a job, an operator or AWS:
//! whatever arrives, the result is a value or an error, never a panic.
//! Cases per property: `FUZZ_CASES` (default 2000).

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition};
use gitlab_ecs_executor::docker::effective_policies;
use gitlab_ecs_executor::exec::pipeline::expand::expand_all;
use gitlab_ecs_executor::exec::pipeline::{Pipeline, Repository, RuleContext, VarDef};
use gitlab_ecs_executor::exec::rules;
use gitlab_ecs_executor::image_ref::ImageRef;
use gitlab_ecs_executor::protocol::{JobContext, JobPayload, Stage};
use gitlab_ecs_executor::release::image::context::DockerIgnore;
use gitlab_ecs_executor::release::inputs::{
    self, parse_duration, ImageAction, JobVariables, Requester,
};
use gitlab_ecs_executor::release::{taskdef, trigger};
use gitlab_ecs_executor::settings::{
    parse_volume, AwsSettings, MemorySize, Pattern, PullPolicy, ReleaseSettings, Settings,
};
use proptest::prelude::*;

/// A repository in which every file changed and exists.
struct Changed;

impl Repository for Changed {
    fn changed_files(&self, _: Option<&str>) -> Result<Option<Vec<String>>, String> {
        Ok(Some(vec!["a".into(), "b/c".into()]))
    }

    fn files(&self) -> Result<Vec<String>, String> {
        Ok(vec!["a".into(), "b/c".into()])
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    ProptestConfig::with_cases(cases)
}

/// Text biased toward the syntax of the parser under test.
fn text_with(alphabet: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => proptest::sample::select(alphabet.chars().collect::<Vec<_>>()),
            1 => any::<char>(),
        ],
        0..200,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Arbitrary JSON, nested.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof!["id|job_info|git_info|variables|steps|image|services|name|stage|ref|key|value|masked|pull_policy|entrypoint|alias".prop_map(String::from), ".{0,8}"],
                inner,
                0..8
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn job_payloads(value in json(), raw in text_with("{}[]\":,0123456789truefalsenull ")) {
        let _ = serde_json::from_value::<JobPayload>(value);
        let _ = serde_json::from_str::<JobPayload>(&raw);
    }

    #[test]
    fn custom_env(pairs in proptest::collection::vec(("(CUSTOM_ENV_)?[A-Z_]{1,20}", ".{0,30}"), 0..20), payload in json()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("response.json");
        std::fs::write(&file, payload.to_string()).unwrap();
        let mut env: Vec<(String, String)> = pairs;
        env.push(("JOB_RESPONSE_FILE".into(), file.display().to_string()));
        for id in ["CI_RUNNER_ID", "CI_PROJECT_ID", "CI_JOB_ID", "CI_CONCURRENT_PROJECT_ID"] {
            env.insert(0, (format!("CUSTOM_ENV_{id}"), "1".into()));
        }
        if let Ok(ctx) = JobContext::from_vars(env) {
            let _ = ctx.secret_values();
            let _ = ctx.project_dir();
            let _ = ctx.job_timeout_secs();
        }
    }

    #[test]
    fn settings_files(text in text_with("[]=\"'\n.abcdefghijklmnopqrstuvwxyz_0123456789 "),
                      key in "(builds_dir|docker\\.memory|docker\\.volumes|docker\\.pull_policy|release\\.tag_pattern|ecs\\.rollback|aws\\.id_token_variable|docker\\.cpus)",
                      value in ".{0,20}") {
        let _ = Settings::from_toml(&text, Path::new("fuzz.toml"));
        let (table, leaf) = key.split_once('.').map(|(t, l)| (Some(t), l)).unwrap_or((None, key.as_str()));
        let quoted = toml::Value::String(value.clone()).to_string();
        let doc = match table {
            Some(t) => format!("[{t}]\n{leaf} = {quoted}\n"),
            None => format!("{leaf} = {quoted}\n"),
        };
        let _ = Settings::from_toml(&doc, Path::new("fuzz.toml"));
        let _ = MemorySize::parse(&value);
        let _ = parse_volume(&value);
    }

    #[test]
    fn tags_stages_and_patterns(stage in ".{0,12}", tag in ".{0,20}", native in proptest::option::of(".{0,6}"), pattern in text_with("^$v\\d+.*()[]|?")) {
        let mut settings = ReleaseSettings::default();
        if let Ok(compiled) = Pattern::new(&pattern) {
            settings.tag_pattern = compiled;
            let _ = trigger::decide(&stage, Some(&tag), true, native.as_deref(), &settings);
        }
        let decided = trigger::decide("deploy", Some(&tag), true, native.as_deref(), &settings);
        if let trigger::Trigger::Release { tag, .. } = decided {
            prop_assert!(!settings.mutable_tags.iter().any(|m| m.eq_ignore_ascii_case(&tag)));
        }
        let _ = stage.parse::<Stage>();
    }

    #[test]
    fn rule_expressions(expr in text_with("$ABC_ \"'/=!~&|()null^.*\\d"), value in ".{0,10}") {
        let _ = rules::evaluate(&expr, &|name: &str| (name == "A").then(|| value.clone()));
    }

    #[test]
    fn pipelines(text in text_with("abc:-[]{}&*<>|\n .#$'\"!extendsrulesreferencewhenifscriptimagevariablesneedsparallelmatrixchangesexists"), job in ".{0,8}") {
        if let Ok(p) = Pipeline::parse(&text) {
            if let Ok(def) = p.job(&job) {
                let _ = def.decide(&RuleContext { var: &|_: &str| None, repository: &Changed });
                let _ = expand_all(&def.variables);
            }
            let _ = p.select(&job, &[]);
        }
    }

    #[test]
    fn variable_expansion(values in proptest::collection::vec(text_with("AB$${}%_ "), 0..6)) {
        let vars: Vec<VarDef> = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| VarDef { key: ["A", "B", "AB"][i % 3].into(), value, raw: i % 4 == 3 })
            .collect();
        if let Ok(out) = expand_all(&vars) {
            prop_assert_eq!(out.len(), vars.len());
        }
    }

    #[test]
    fn release_inputs(vars in proptest::collection::btree_map(
        "(ECR_REGISTRY|ECR_REPOSITORY|ECS_CLUSTER|ECS_SERVICE|TASK_DEFINITION|ECS_CONTAINER|AWS_DEFAULT_REGION|AWS_REGION|AWS_ROLE_ARN|AWS_ID_TOKEN|DOCKERFILE|DOCKER_BUILD_CONTEXT|ECS_ROLLOUT_TIMEOUT|ECS_ROLLBACK|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY)",
        ".{0,40}", 0..16)) {
        let vars: BTreeMap<String, String> = vars;
        for action in [ImageAction::Release, ImageAction::Push] {
            let aws = AwsSettings::default();
            let source = JobVariables::new(|k: &str| vars.get(k).cloned(), &aws);
            let requester = Requester::Job { project_path: "g/p", job_id: 1 };
            if let Ok(inputs) = inputs::collect(action, "v1.2.3", &source, &aws, requester) {
                prop_assert!(!inputs.dockerfile.starts_with('/') && !inputs.dockerfile.split('/').any(|p| p == ".."));
            }
        }
        for v in vars.values() {
            let _ = parse_duration(v);
        }
    }

    #[test]
    fn task_definitions(names in proptest::collection::vec(".{0,12}", 0..5), images in proptest::collection::vec(".{0,40}", 0..5),
                        named in proptest::option::of(".{0,12}"), repo in ".{0,30}", other in ".{0,12}", version in ".{0,12}") {
        let mut td = TaskDefinition::builder().family("f").revision(1);
        for (name, image) in names.iter().zip(images.iter()) {
            td = td.container_definitions(ContainerDefinition::builder().name(name).image(image).build());
        }
        let td = td.build();
        let named: Vec<String> = named.into_iter().collect();
        if let Ok(targets) = taskdef::target_containers(&td, &named, &repo) {
            prop_assert!(!targets.is_empty());
            if let Ok(input) = taskdef::copy(&td, &targets, "r/app:v1", Vec::new()) {
                let containers = input.container_definitions.unwrap_or_default();
                prop_assert_eq!(containers.len(), names.len().min(images.len()));
                // Only the chosen containers change.
                for (i, c) in containers.iter().enumerate() {
                    let changed = c.image.as_deref() != td.container_definitions()[i].image();
                    prop_assert!(!changed || targets.contains(&i));
                }
            }
        }
        for image in &images {
            let r = ImageRef::parse(image);
            let _ = (r.registry(), r.registry_host(), r.tag(), r.digest(), r.pull_target());
            prop_assert_eq!(ImageRef::parse(&r.to_string()), r);
        }
        let _ = taskdef::compare_versions(&other, &version);
        let _ = taskdef::check_family(&td, &other);
        let _ = taskdef::traceability_tags(&[(other.as_str(), version.as_str())]);
    }

    #[test]
    fn task_definition_documents(a in json(), b in json()) {
        for body in [&a, &b] {
            for doc in [taskdef::Document::from_describe_response(body), taskdef::Document::from_register_request(body)].into_iter().flatten() {
                prop_assert!(doc.diff(&doc).is_empty());
            }
        }
        if let (Ok(x), Ok(y)) = (taskdef::Document::from_register_request(&a), taskdef::Document::from_register_request(&b)) {
            let _ = x.diff(&y);
            let _ = x.lost_in(&y);
        }
    }

    #[test]
    fn dockerignore(text in text_with("*?[]!/.\\\n#abc"), path in text_with("abc/._*")) {
        if let Ok(ignore) = DockerIgnore::parse(&text) {
            let _ = ignore.excludes(&path);
        }
    }

    #[test]
    fn pull_policies(job in proptest::collection::vec(".{0,16}", 0..4)) {
        let settings = Settings::from_toml(
            "[docker]\npull_policy = [\"always\"]\nallowed_pull_policies = [\"always\", \"never\"]",
            Path::new("fuzz.toml"),
        )
        .unwrap();
        let image = ImageRef::parse("alpine:3");
        if let Ok(policies) = effective_policies(&image, &job, &settings.docker) {
            prop_assert!(policies.iter().all(|p| matches!(p, PullPolicy::Always | PullPolicy::Never)));
        }
    }
}
