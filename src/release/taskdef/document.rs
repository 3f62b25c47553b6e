//! A task definition revision as the JSON document ECS speaks (`taskDefinition` members plus
//! `tags`), compared structurally: maps by key whatever their order, lists of named things
//! by name, and lists in order only where order means something to ECS.
//!
//! Both sides of every comparison come off the wire (a `DescribeTaskDefinition` response, a
//! `RegisterTaskDefinition` request), never through the SDK's typed shapes or their `Debug`
//! text, so a field the SDK does not know is still seen and a map's iteration order never is.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// Members of a described task definition that ECS sets itself and never takes as input.
/// `inferenceAccelerators` is here too: ECS no longer accepts Elastic Inference, so a
/// revision cannot carry it over.
pub const OUTPUT_ONLY: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "deregisteredAt",
    "deleteRequestedAt",
    "registeredBy",
    "inferenceAccelerators",
];

/// Lists whose elements are identified by a member: compared element by element under that
/// identity, whatever their order. Pairs (a tag, an environment variable) also name the
/// member that holds their value, which is then shown alone.
const KEYED_LISTS: &[(&str, &str, Option<&str>)] = &[
    ("containerDefinitions", "name", None),
    ("volumes", "name", None),
    ("tags", "key", Some("value")),
    ("environment", "name", Some("value")),
    ("secrets", "name", Some("valueFrom")),
    ("secretOptions", "name", Some("valueFrom")),
    ("ulimits", "name", None),
    ("systemControls", "namespace", Some("value")),
    ("extraHosts", "hostname", Some("ipAddress")),
    ("mountPoints", "containerPath", None),
    ("volumesFrom", "sourceContainer", None),
    ("dependsOn", "containerName", Some("condition")),
    ("resourceRequirements", "type", Some("value")),
    ("devices", "hostPath", None),
    ("tmpfs", "containerPath", None),
    ("properties", "name", Some("value")),
];

/// Lists that ECS treats as sets: equal when they hold the same elements in any order.
const SET_LISTS: &[&str] = &[
    "requiresCompatibilities",
    "placementConstraints",
    "portMappings",
    "links",
    "dockerSecurityOptions",
    "credentialSpecs",
    "add",
    "drop",
    "ignoredExitCodes",
];

/// One task definition revision as JSON, without the members ECS sets itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Document(Map<String, Value>);

/// A document that is not the JSON object ECS sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(String);

impl Document {
    /// The document of a `DescribeTaskDefinition` response body
    /// (`{"taskDefinition": {…}, "tags": […]}`).
    pub fn from_describe_response(body: &Value) -> Result<Self, DocumentError> {
        let mut members = body
            .get("taskDefinition")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| {
                DocumentError("the DescribeTaskDefinition response has no taskDefinition".into())
            })?;
        for member in OUTPUT_ONLY {
            members.remove(*member);
        }
        if let Some(tags) = body.get("tags") {
            members.insert("tags".into(), tags.clone());
        }
        Ok(Document::normalized(members))
    }

    /// The document of a `RegisterTaskDefinition` request body: what the new revision will
    /// contain.
    pub fn from_register_request(body: &Value) -> Result<Self, DocumentError> {
        body.as_object()
            .cloned()
            .map(Document::normalized)
            .ok_or_else(|| {
                DocumentError("the RegisterTaskDefinition request is not an object".into())
            })
    }

    /// A container's `cpu` of 0 is what ECS stores when none is given, and what the SDK
    /// sends for one it read as absent: both mean "no reservation".
    fn normalized(mut members: Map<String, Value>) -> Self {
        if let Some(Value::Array(containers)) = members.get_mut("containerDefinitions") {
            for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                if container.get("cpu").and_then(Value::as_i64) == Some(0) {
                    container.remove("cpu");
                }
            }
        }
        Document(members)
    }

    /// Every difference between `self` (the base) and `other`, as paths in ECS's own names
    /// (`containerDefinitions[app].logConfiguration.options.awslogs-group`).
    pub fn diff(&self, other: &Document) -> Vec<FieldChange> {
        let mut changes = Vec::new();
        compare_maps("", &self.0, &other.0, &mut changes);
        changes
    }

    /// Paths that hold a value in `self` and none in `other`: what `other` would drop.
    pub fn lost_in(&self, other: &Document) -> Vec<String> {
        self.diff(other)
            .into_iter()
            .filter(|c| c.new.is_none())
            .map(|c| c.path)
            .collect()
    }
}

/// One difference between two documents.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// `cpu`, `containerDefinitions[app].image`, `tags[gitlab:tag]`, …
    pub path: String,
    /// The base's value; `None` when absent.
    pub old: Option<Value>,
    /// The other side's value; `None` when absent.
    pub new: Option<Value>,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            shown(self.old.as_ref()),
            shown(self.new.as_ref())
        )
    }
}

/// A value as one compact line; `(none)` for an absent one.
pub fn shown(value: Option<&Value>) -> String {
    match value {
        None => "(none)".into(),
        Some(Value::String(s)) => Value::String(s.clone()).to_string(),
        Some(v) => v.to_string(),
    }
}

/// `null`, `[]` and `{}` say the same as an absent member: ECS describes a revision with
/// empty lists its request never sent.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !is_empty(v))
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}

fn compare_maps(
    path: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    out: &mut Vec<FieldChange>,
) {
    let mut members: Vec<&String> = old.keys().chain(new.keys()).collect();
    members.sort();
    members.dedup();
    for member in members {
        compare(
            &join(path, member),
            member,
            present(old.get(member)),
            present(new.get(member)),
            out,
        );
    }
}

fn compare(
    path: &str,
    member: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    let change = |out: &mut Vec<FieldChange>| {
        out.push(FieldChange {
            path: path.to_string(),
            old: old.cloned(),
            new: new.cloned(),
        })
    };
    let is_keyed = KEYED_LISTS.iter().any(|(list, _, _)| *list == member);
    match (old, new) {
        (None, None) => {}
        (Some(Value::Object(o)), Some(Value::Object(n))) => compare_maps(path, o, n, out),
        (Some(Value::Array(o)), Some(Value::Array(n))) => compare_lists(path, member, o, n, out),
        // A keyed list that appears or goes is still compared element by element, so that
        // the first tag added to an untagged revision reads `tags[gitlab:tag]`, not `tags`.
        (None, Some(Value::Array(n))) if is_keyed => compare_lists(path, member, &[], n, out),
        (Some(Value::Array(o)), None) if is_keyed => compare_lists(path, member, o, &[], out),
        (Some(o), Some(n)) if o == n => {}
        _ => change(out),
    }
}

fn compare_lists(
    path: &str,
    member: &str,
    old: &[Value],
    new: &[Value],
    out: &mut Vec<FieldChange>,
) {
    if let Some(&(_, key, value)) = KEYED_LISTS.iter().find(|(list, _, _)| *list == member) {
        if let (Some(o), Some(n)) = (keyed(old, key), keyed(new, key)) {
            let mut ids: Vec<&String> = o.keys().chain(n.keys()).collect();
            ids.sort();
            ids.dedup();
            for id in ids {
                let element = format!("{path}[{id}]");
                let (a, b) = (
                    o.get(id).map(|v| unkeyed(v, key, value)),
                    n.get(id).map(|v| unkeyed(v, key, value)),
                );
                compare(&element, "", a.as_ref(), b.as_ref(), out);
            }
            return;
        }
    }
    let same = if SET_LISTS.contains(&member) {
        canonical_set(old) == canonical_set(new)
    } else if old.len() == new.len() {
        for (i, (a, b)) in old.iter().zip(new).enumerate() {
            compare(&format!("{path}[{i}]"), "", Some(a), Some(b), out);
        }
        true
    } else {
        false
    };
    if !same {
        out.push(FieldChange {
            path: path.to_string(),
            old: Some(Value::Array(old.to_vec())),
            new: Some(Value::Array(new.to_vec())),
        });
    }
}

/// The elements by their identity, if every element has a distinct one.
fn keyed<'v>(list: &'v [Value], key: &str) -> Option<BTreeMap<String, &'v Value>> {
    let mut by_id = BTreeMap::new();
    for element in list {
        let id = match element.get(key)? {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if by_id.insert(id, element).is_some() {
            return None;
        }
    }
    Some(by_id)
}

/// An element named in its path, without its name; a pair's value alone: a tag
/// `{"key": "k", "value": "v"}` under `tags[k]` is just `"v"`.
fn unkeyed(element: &Value, key: &str, value: Option<&str>) -> Value {
    let mut rest = element.as_object().cloned().unwrap_or_default();
    rest.remove(key);
    match value {
        Some(member) if rest.len() == 1 && rest.contains_key(member) => {
            rest.remove(member).unwrap_or(Value::Null)
        }
        _ => Value::Object(rest),
    }
}

/// The elements as sorted canonical text: `serde_json` maps print their keys sorted.
fn canonical_set(list: &[Value]) -> Vec<String> {
    let mut texts: Vec<String> = list.iter().map(Value::to_string).collect();
    texts.sort();
    texts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Document {
        Document::from_register_request(&v).unwrap()
    }

    #[test]
    fn maps_compare_by_key_and_named_lists_by_name() {
        let a = doc(json!({
            "family": "shop",
            "containerDefinitions": [
                {"name": "log-router", "image": "fluent-bit:2"},
                {"name": "app", "image": "app:v1",
                 "dockerLabels": {"owner": "ops", "tier": "web", "team": "payments"},
                 "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
            ]
        }));
        let b = doc(json!({
            "containerDefinitions": [
                {"image": "app:v2", "name": "app",
                 "environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
                 "dockerLabels": {"team": "payments", "owner": "ops", "tier": "web"}},
                {"name": "log-router", "image": "fluent-bit:2"}
            ],
            "family": "shop"
        }));
        let changes = a.diff(&b);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].path, "containerDefinitions[app].image");
        assert_eq!(
            changes[0].to_string(),
            "containerDefinitions[app].image: \"app:v1\" -> \"app:v2\""
        );
    }

    #[test]
    fn a_container_cpu_of_zero_is_no_cpu() {
        let a = doc(json!({"containerDefinitions": [{"name": "app", "cpu": 0}]}));
        let b = doc(json!({"containerDefinitions": [{"name": "app"}]}));
        assert!(a.diff(&b).is_empty());
        let c = doc(json!({"containerDefinitions": [{"name": "app", "cpu": 256}]}));
        assert_eq!(a.diff(&c).len(), 1);
    }

    #[test]
    fn order_counts_where_ecs_reads_it_in_order() {
        let a = doc(
            json!({"containerDefinitions": [{"name": "app", "command": ["a", "b"],
            "portMappings": [{"containerPort": 80}, {"containerPort": 443}]}]}),
        );
        let b = doc(
            json!({"containerDefinitions": [{"name": "app", "command": ["b", "a"],
            "portMappings": [{"containerPort": 443}, {"containerPort": 80}]}]}),
        );
        let paths: Vec<String> = a.diff(&b).into_iter().map(|c| c.path).collect();
        assert_eq!(
            paths,
            [
                "containerDefinitions[app].command[0]",
                "containerDefinitions[app].command[1]"
            ]
        );
    }

    #[test]
    fn empty_members_equal_absent_ones_and_losses_are_named() {
        let described = Document::from_describe_response(&json!({
            "taskDefinition": {"family": "f", "revision": 3, "status": "ACTIVE",
                "containerDefinitions": [{"name": "app", "mountPoints": [], "volumesFrom": [],
                    "restartPolicy": {"enabled": true, "restartAttemptPeriod": 60}}],
                "enableFaultInjection": false, "someFieldFrom2027": {"x": 1}},
            "tags": [{"key": "team", "value": "web"}]
        }))
        .unwrap();
        let request = doc(json!({"family": "f",
            "containerDefinitions": [{"name": "app", "restartPolicy": {"enabled": true}}],
            "enableFaultInjection": false, "tags": [{"key": "team", "value": "web"}]}));
        assert_eq!(
            described.lost_in(&request),
            [
                "containerDefinitions[app].restartPolicy.restartAttemptPeriod",
                "someFieldFrom2027"
            ]
        );
    }

    #[test]
    fn the_first_tags_of_an_untagged_revision_are_named_one_by_one() {
        let untagged = Document::from_describe_response(&json!({
            "taskDefinition": {"family": "f", "containerDefinitions": [{"name": "app"}]},
            "tags": []
        }))
        .unwrap();
        let tagged = doc(
            json!({"family": "f", "containerDefinitions": [{"name": "app"}],
            "tags": [{"key": "gitlab:tag", "value": "v1.2.3"}, {"key": "gitlab:pipeline", "value": "7"}]}),
        );
        let paths = |changes: Vec<FieldChange>| -> Vec<String> {
            changes.into_iter().map(|c| c.path).collect()
        };
        assert_eq!(
            paths(untagged.diff(&tagged)),
            ["tags[gitlab:pipeline]", "tags[gitlab:tag]"]
        );
        assert_eq!(
            paths(tagged.diff(&untagged)),
            ["tags[gitlab:pipeline]", "tags[gitlab:tag]"]
        );
    }

    /// A Fargate web service shaped like AWS's documented examples: awslogs, labels,
    /// secrets, a health check, an X-Ray sidecar and a volume.
    fn fargate_web(labels: &BTreeMap<String, String>) -> Value {
        json!({
            "family": "shop",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE", "EC2"],
            "cpu": "512", "memory": "1024",
            "containerDefinitions": [
                {"name": "xray-daemon", "image": "amazon/aws-xray-daemon", "cpu": 32,
                 "memoryReservation": 256, "portMappings": [{"containerPort": 2000, "protocol": "udp"}]},
                {"name": "app", "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop:v1.0.0",
                 "essential": true,
                 "portMappings": [{"containerPort": 8080, "protocol": "tcp"}, {"containerPort": 9090, "protocol": "tcp"}],
                 "environment": [{"name": "MODE", "value": "production"}, {"name": "PORT", "value": "8080"}],
                 "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:eu-west-1:123456789012:parameter/db"}],
                 "dockerLabels": labels,
                 "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"],
                                 "interval": 30, "retries": 3},
                 "logConfiguration": {"logDriver": "awslogs", "options": {
                     "awslogs-group": "/ecs/shop", "awslogs-region": "eu-west-1",
                     "awslogs-stream-prefix": "ecs"}},
                 "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp"}],
                 "dependsOn": [{"containerName": "xray-daemon", "condition": "START"}]}
            ],
            "volumes": [{"name": "tmp"}],
            "tags": [{"key": "team", "value": "payments"}, {"key": "tier", "value": "web"}]
        })
    }

    fn next(rng: &mut u64) -> u64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    }

    /// `value` as JSON text with every object's members in a random order and every
    /// list that ECS reads by name or as a set shuffled.
    fn shuffled_text(value: &Value, member: &str, rng: &mut u64) -> String {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                for i in (1..entries.len()).rev() {
                    entries.swap(i, (next(rng) % (i as u64 + 1)) as usize);
                }
                let members: Vec<String> = entries
                    .into_iter()
                    .map(|(k, v)| {
                        format!("{}:{}", Value::from(k.as_str()), shuffled_text(v, k, rng))
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            Value::Array(list) => {
                let mut items: Vec<&Value> = list.iter().collect();
                let reorderable =
                    SET_LISTS.contains(&member) || KEYED_LISTS.iter().any(|(l, _, _)| *l == member);
                if reorderable {
                    for i in (1..items.len()).rev() {
                        items.swap(i, (next(rng) % (i as u64 + 1)) as usize);
                    }
                }
                let items: Vec<String> = items
                    .into_iter()
                    .map(|v| shuffled_text(v, "", rng))
                    .collect();
                format!("[{}]", items.join(","))
            }
            other => other.to_string(),
        }
    }

    proptest::proptest! {
        /// The diff of a task definition with itself, maps rebuilt in any member order and
        /// named lists in any order, is empty; one changed value is exactly one change.
        #[test]
        fn a_task_definition_equals_itself_in_any_order(
            seed in 1..u64::MAX,
            labels in proptest::collection::btree_map("[a-z.-]{1,12}", "[a-z0-9 ]{0,12}", 2..8),
        ) {
            let mut rng = seed;
            let original = fargate_web(&labels);
            let text = shuffled_text(&original, "", &mut rng);
            let reparsed: Value = serde_json::from_str(&text).unwrap();
            let (a, b) = (doc(original.clone()), doc(reparsed));
            proptest::prop_assert_eq!(a.diff(&b), Vec::<FieldChange>::new());
            proptest::prop_assert!(a.lost_in(&b).is_empty());

            let mut changed = original;
            let label = labels.keys().nth((next(&mut rng) % labels.len() as u64) as usize).unwrap().clone();
            changed["containerDefinitions"][1]["dockerLabels"][&label] = json!("changed value");
            let changes = a.diff(&doc(changed));
            proptest::prop_assert_eq!(changes.len(), 1);
            proptest::prop_assert_eq!(&changes[0].path, &format!("containerDefinitions[app].dockerLabels.{label}"));
        }
    }
}
