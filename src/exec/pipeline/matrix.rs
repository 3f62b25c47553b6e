//! `parallel:` as GitLab expands it: `parallel: N` makes jobs `name 1/N` … `name N/N`;
//! `parallel: matrix:` makes one job per combination of each entry's values, named
//! `name: [value1, value2]` (the values in the order the entry lists its keys), with the
//! combination's values as job variables. Every instance gets `CI_NODE_INDEX` (from 1) and
//! `CI_NODE_TOTAL`.

use serde_norway::Value;

use super::values::{scalar, shape};
use super::PipelineError;

/// GitLab's limit on the jobs one `parallel:` makes.
const MAX_INSTANCES: usize = 200;

/// A job's `parallel:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parallel {
    /// `parallel: N`.
    Count(usize),
    /// `parallel: matrix:`, as its combinations.
    Matrix(Vec<Combination>),
}

/// One combination of matrix values, in the order the entry lists its keys.
pub type Combination = Vec<(String, String)>;

/// `value` with each `$[[ matrix.KEY ]]` replaced by `KEY`'s value in `values` (left as
/// written when the instance has no such key).
pub fn with_instance_values(value: &str, values: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$[[") {
        let Some(len) = rest[start..].find("]]") else {
            break;
        };
        let inner = rest[start + 3..start + len].trim();
        let found = inner
            .strip_prefix("matrix.")
            .and_then(|key| values.iter().find(|(k, _)| k == key.trim()));
        out.push_str(&rest[..start]);
        match found {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// One instance of a parallel job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The name the job has in the file.
    pub base: String,
    /// From 1 (`CI_NODE_INDEX`).
    pub index: usize,
    /// How many instances (`CI_NODE_TOTAL`).
    pub total: usize,
    /// The matrix values of this instance (none for `parallel: N`).
    pub values: Combination,
}

impl Parallel {
    /// Reads `parallel:` of `job`.
    pub fn parse(v: &Value, job: &str) -> Result<Parallel, PipelineError> {
        let err = |message: &str| shape(job, "parallel", message);
        match v {
            Value::Number(n) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n @ 1..=MAX_INSTANCES) => Ok(Parallel::Count(n)),
                _ => Err(err(&format!("must be a number from 1 to {MAX_INSTANCES}"))),
            },
            Value::Mapping(m) => {
                let Some(Value::Sequence(entries)) = m.get("matrix") else {
                    return Err(err("must be a number or have a `matrix:` list"));
                };
                let combinations = matrix(entries, job)?;
                if combinations.is_empty() || combinations.len() > MAX_INSTANCES {
                    return Err(err(&format!(
                        "matrix must make from 1 to {MAX_INSTANCES} jobs, not {}",
                        combinations.len()
                    )));
                }
                Ok(Parallel::Matrix(combinations))
            }
            _ => Err(err("must be a number or have a `matrix:` list")),
        }
    }

    /// The instances of the job `base`.
    pub fn instances(&self, base: &str) -> Vec<(String, Instance)> {
        let combinations: Vec<Combination> = match self {
            Parallel::Count(n) => vec![Vec::new(); *n],
            Parallel::Matrix(c) => c.clone(),
        };
        let total = combinations.len();
        combinations
            .into_iter()
            .enumerate()
            .map(|(i, values)| {
                let name = match self {
                    Parallel::Count(n) => format!("{base} {}/{n}", i + 1),
                    Parallel::Matrix(_) => instance_name(base, &values),
                };
                let instance = Instance {
                    base: base.to_string(),
                    index: i + 1,
                    total,
                    values,
                };
                (name, instance)
            })
            .collect()
    }
}

/// The name GitLab gives the matrix instance of `base` with `values`.
pub fn instance_name(base: &str, values: &Combination) -> String {
    let values: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
    format!("{base}: [{}]", values.join(", "))
}

/// The combinations of a `matrix:` list: per entry, every combination of its keys' values.
pub(super) fn matrix(entries: &[Value], job: &str) -> Result<Vec<Combination>, PipelineError> {
    let err = |message: &str| shape(job, "parallel", message);
    let mut all = Vec::new();
    for entry in entries {
        let Value::Mapping(m) = entry else {
            return Err(err(
                "matrix entries must be mappings of variables to values",
            ));
        };
        let mut combinations: Vec<Combination> = vec![Vec::new()];
        for (k, v) in m {
            let key = k
                .as_str()
                .ok_or_else(|| err("matrix variable names must be strings"))?;
            let values: Vec<String> = match v {
                Value::Sequence(items) => items.iter().map(scalar).collect::<Option<_>>(),
                other => scalar(other).map(|s| vec![s]),
            }
            .filter(|values: &Vec<String>| !values.is_empty())
            .ok_or_else(|| {
                err(&format!(
                    "matrix `{key}` must be a value or a list of values"
                ))
            })?;
            combinations = combinations
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |value| {
                        let mut c = c.clone();
                        c.push((key.to_string(), value.clone()));
                        c
                    })
                })
                .collect();
            if combinations.len() > MAX_INSTANCES {
                return Err(err(&format!("matrix makes more than {MAX_INSTANCES} jobs")));
            }
        }
        all.extend(combinations);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Parallel, PipelineError> {
        Parallel::parse(&serde_norway::from_str(text).unwrap(), "deploy")
    }

    #[test]
    fn matrix_instances_are_named_as_gitlab_names_them() {
        let p = parse(
            "matrix:\n  - PROVIDER: aws\n    STACK: [monitoring, app1]\n  - PROVIDER: [gcp, vultr]\n    STACK: data\n",
        )
        .unwrap();
        let names: Vec<String> = p.instances("deploy").into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "deploy: [aws, monitoring]",
                "deploy: [aws, app1]",
                "deploy: [gcp, data]",
                "deploy: [vultr, data]"
            ]
        );
        let (_, last) = &p.instances("deploy")[3];
        assert_eq!((last.index, last.total), (4, 4));
        assert_eq!(
            last.values,
            [
                ("PROVIDER".to_string(), "vultr".to_string()),
                ("STACK".to_string(), "data".to_string())
            ]
        );
    }

    #[test]
    fn a_count_makes_numbered_jobs_and_bad_shapes_are_named() {
        let names: Vec<String> = parse("3")
            .unwrap()
            .instances("test")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["test 1/3", "test 2/3", "test 3/3"]);
        for bad in [
            "0",
            "201",
            "matrix: x",
            "matrix: [x]",
            "matrix: [{A: []}]",
            "x",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("`deploy`") && err.contains("parallel"),
                "{bad}: {err}"
            );
        }
    }
}
