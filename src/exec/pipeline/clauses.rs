//! The rule clauses that look at the repository, shared by `rules:` and `only:`/`except:`:
//! `changes:` (the files the commit changed) and `exists:` (the files of its tree), with
//! paths matched as GitLab matches them. [`Repository`] is the seam to git.

use super::expand::expand_value;
use super::PipelineError;
use crate::glob;

/// `changes:` of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Path patterns.
    pub paths: Vec<String>,
    /// `compare_to:`: the ref to compare with instead of the pipeline's base.
    pub compare_to: Option<String>,
}

/// What `changes:` and `exists:` look at: the git history and tree of the pipeline's commit.
pub trait Repository {
    /// The files that differ between the pipeline's commit and `compare_to` (or the
    /// pipeline's own base when `None`); `Ok(None)` when there is nothing to compare with
    /// (a tag, a first commit), where GitLab counts `changes:` as matching.
    fn changed_files(&self, compare_to: Option<&str>) -> Result<Option<Vec<String>>, String>;
    /// Every file in the commit's tree.
    fn files(&self) -> Result<Vec<String>, String>;
}

/// What rules are evaluated against.
pub struct RuleContext<'a> {
    /// The job's variables as GitLab expanded them (`None`: undefined).
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// The project's history and tree.
    pub repository: &'a dyn Repository,
}

/// Path patterns with the variables GitLab knows expanded and `{a,b}` made alternatives.
fn patterns(paths: &[String], ctx: &RuleContext) -> Vec<String> {
    paths
        .iter()
        .flat_map(|p| alternatives(&expand_value(p, ctx.var)))
        .collect()
}

/// Whether the commit changed a file `changes` names (always, with nothing to compare).
pub(super) fn changes_hold(
    changes: &Changes,
    ctx: &RuleContext,
    job: &str,
) -> Result<bool, PipelineError> {
    let changed = ctx
        .repository
        .changed_files(changes.compare_to.as_deref())
        .map_err(|message| PipelineError::Repository {
            job: job.to_string(),
            message,
        })?;
    Ok(changed.is_none_or(|changed| {
        let patterns = patterns(&changes.paths, ctx);
        changed
            .iter()
            .any(|f| patterns.iter().any(|p| glob::matches(p, f)))
    }))
}

/// Whether the commit's tree holds a file `paths` names.
pub(super) fn exists_hold(
    paths: &[String],
    ctx: &RuleContext,
    job: &str,
) -> Result<bool, PipelineError> {
    let files = ctx
        .repository
        .files()
        .map_err(|message| PipelineError::Repository {
            job: job.to_string(),
            message,
        })?;
    let patterns = patterns(paths, ctx);
    Ok(files
        .iter()
        .any(|f| patterns.iter().any(|p| glob::matches(p, f))))
}

/// Ruby's `File.fnmatch` with `FNM_EXTGLOB`, which GitLab matches paths with: `{a,b}`
/// alternatives, expanded here into plain patterns.
fn alternatives(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_string()];
    };
    let Some(close) = pattern[open..].find('}').map(|c| open + c) else {
        return vec![pattern.to_string()];
    };
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    pattern[open + 1..close]
        .split(',')
        .flat_map(|alt| alternatives(&format!("{head}{alt}{tail}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_expand() {
        assert_eq!(alternatives("a.{rs,toml}"), ["a.rs", "a.toml"]);
        assert_eq!(alternatives("{x,y}/{1,2}"), ["x/1", "x/2", "y/1", "y/2"]);
        assert_eq!(alternatives("plain"), ["plain"]);
    }
}
