//! `workflow:`: whether GitLab creates the pipeline at all, and with which variables.
//! `workflow: rules:` are evaluated as job rules are, over the predefined and global
//! variables: the first rule that holds decides (`when: always`, its default, creates the
//! pipeline and adds its `variables:` to every job; `when: never` does not); none holding
//! creates no pipeline. `workflow: name:` becomes `CI_PIPELINE_NAME`. Other keys
//! (`auto_cancel`) are named as not acted on.

use serde_norway::Value;

use super::decide::{parse_rules, Rule, When};
use super::values::shape;
use super::{JobDef, PipelineError, VarDef};

/// `workflow:` as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// `rules:`; `None`: every pipeline is created.
    pub rules: Option<Vec<Rule>>,
    /// `name:`, as written.
    pub name: Option<String>,
}

impl Workflow {
    /// Reads `workflow:`, naming the keys `exec` does not act on in `not_acted_on`.
    pub fn parse(v: &Value, not_acted_on: &mut Vec<String>) -> Result<Workflow, PipelineError> {
        let Value::Mapping(m) = v else {
            return Err(shape("(global)", "workflow", "must be a mapping"));
        };
        for key in m.keys().filter_map(Value::as_str) {
            if !["rules", "name"].contains(&key) {
                not_acted_on.push(format!("workflow: {key}"));
            }
        }
        let rules = m
            .get("rules")
            .map(|r| parse_rules(r, "(workflow)"))
            .transpose()?;
        for rule in rules.iter().flatten() {
            if !matches!(rule.when, None | Some(When::Always | When::Never)) {
                return Err(shape(
                    "(workflow)",
                    "rules",
                    "`when` of a workflow rule must be always or never",
                ));
            }
        }
        Ok(Workflow {
            rules,
            name: m.get("name").and_then(Value::as_str).map(String::from),
        })
    }

    /// A job of nothing but these rules and the global `variables`, which the job-rule
    /// machinery decides like any other: `Decision::Run` creates the pipeline.
    pub fn as_job(&self, variables: &[VarDef]) -> JobDef {
        JobDef::bare("(workflow)", variables, self.rules.clone())
    }
}
