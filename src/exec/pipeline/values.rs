//! Reading YAML values of the shapes `.gitlab-ci.yml` uses: strings or lists of them, script
//! lines, variables, durations. Every shape error names the job and the key.

use std::time::Duration;

use serde_norway::Value;

use super::{PipelineError, VarDef};

/// A shape error of `key` in `job`.
pub(super) fn shape(job: &str, key: &str, message: &str) -> PipelineError {
    PipelineError::Shape {
        job: job.to_string(),
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// A string, number or boolean as text.
pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A string or a list of strings.
pub(super) fn strings(v: &Value, job: &str, key: &str) -> Result<Vec<String>, PipelineError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Sequence(items) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| shape(job, key, "must contain strings")))
            .collect(),
        _ => Err(shape(job, key, "must be a string or a list of strings")),
    }
}

/// Script lines: strings or lists, nested lists (from anchors and `!reference`) flattened.
pub(super) fn script_lines(v: &Value, job: &str, key: &str) -> Result<Vec<String>, PipelineError> {
    match v {
        Value::Sequence(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(script_lines(item, job, key)?);
            }
            Ok(out)
        }
        other => scalar(other)
            .map(|s| vec![s])
            .ok_or_else(|| shape(job, key, "must be a string or a list of strings")),
    }
}

/// A list whose entries may be nested lists (from `!reference`), flattened one level as
/// GitLab flattens `rules:` and `needs:`.
pub(super) fn flattened(items: &[Value]) -> Vec<&Value> {
    items
        .iter()
        .flat_map(|item| match item {
            Value::Sequence(inner) => inner.iter().collect(),
            other => vec![other],
        })
        .collect()
}

/// `KEY: value` or `KEY: {value: …, description: …, expand: false}`.
pub(super) fn variables(v: &Value, job: &str) -> Result<Vec<VarDef>, PipelineError> {
    let Value::Mapping(m) = v else {
        return Err(shape(job, "variables", "must be a mapping"));
    };
    m.iter()
        .map(|(k, v)| {
            let key = k
                .as_str()
                .ok_or_else(|| shape(job, "variables", "keys must be strings"))?;
            let bad = || {
                shape(
                    job,
                    "variables",
                    &format!("`{key}` must be a string, number or {{value: …}}"),
                )
            };
            let (value, raw) = match v {
                Value::Mapping(inner) => {
                    let value = match inner.get("value") {
                        None | Some(Value::Null) => String::new(),
                        Some(value) => scalar(value).ok_or_else(bad)?,
                    };
                    let raw = match inner.get("expand") {
                        None => false,
                        Some(Value::Bool(expand)) => !expand,
                        Some(_) => {
                            return Err(shape(
                                job,
                                "variables",
                                &format!("`{key}`: `expand` must be true or false"),
                            ))
                        }
                    };
                    (value, raw)
                }
                Value::Null => (String::new(), false),
                other => (scalar(other).ok_or_else(bad)?, false),
            };
            Ok(VarDef {
                key: key.to_string(),
                value,
                raw,
            })
        })
        .collect()
}

/// A `timeout:` as GitLab reads it: `3600` (seconds), `1h 30m`, `2 hours 10 minutes`,
/// `90 seconds`, `1d`; `None` when it is not such a duration.
pub(super) fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    let mut parts = 0;
    while !rest.trim_start().is_empty() {
        rest = rest.trim_start();
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start_matches([',', ' ']);
        let per = match unit {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(per)?)?;
        parts += 1;
    }
    (parts > 0).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_as_gitlab_writes_them() {
        for (text, secs) in [
            ("3600", 3600),
            ("1h", 3600),
            ("1h 30m", 5400),
            ("1h30m", 5400),
            ("2 hours 10 minutes", 7800),
            ("90 seconds", 90),
            ("1d", 86_400),
            ("3 minutes, 4 seconds", 184),
        ] {
            assert_eq!(duration(text), Some(Duration::from_secs(secs)), "{text}");
        }
        for bad in ["", "soon", "1 fortnight", "h", "-5m"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn variables_with_expand_false_are_raw() {
        let v: Value = serde_norway::from_str(
            "A: 1\nB: {value: \"$A\", expand: false}\nC: {value: x, description: d}\nD:",
        )
        .unwrap();
        let vars = variables(&v, "job").unwrap();
        let got: Vec<(&str, &str, bool)> = vars
            .iter()
            .map(|v| (v.key.as_str(), v.value.as_str(), v.raw))
            .collect();
        assert_eq!(
            got,
            [
                ("A", "1", false),
                ("B", "$A", true),
                ("C", "x", false),
                ("D", "", false)
            ]
        );
        let bad: Value = serde_norway::from_str("A: {value: x, expand: maybe}").unwrap();
        assert!(variables(&bad, "job")
            .unwrap_err()
            .to_string()
            .contains("expand"));
    }
}
