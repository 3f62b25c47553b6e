//! A job's `services:`, read as the runner hands them over: `CI_JOB_SERVICES` lists them in
//! the payload's order with names and the first alias expanded; the payload carries what it
//! leaves out (pull policies, every alias, `docker:` options, variables as GitLab sent them).
//! Both job environments start services from this one reading.

use std::collections::BTreeMap;

use super::{env, expand, ImageSpec, JobContext, ProtocolError};

/// One `services:` entry with a name.
pub struct RequestedService<'a> {
    /// As `CI_JOB_SERVICES` lists it (expanded by the runner).
    pub listed: ImageSpec,
    /// The payload's entry at the same position.
    pub full: Option<&'a ImageSpec>,
}

impl RequestedService<'_> {
    /// The job's aliases (`"db,pg"`), expanded as the runner expands image options.
    pub fn alias(&self, ctx: &JobContext) -> String {
        self.full
            .map(|s| ctx.expanded(&s.alias))
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| self.listed.alias.clone())
    }

    /// The entry's own `variables:`, expanded against each other and the job's variables,
    /// as the runner does (older runners list them in `CI_JOB_SERVICES` already expanded).
    pub fn variables(&self, ctx: &JobContext) -> BTreeMap<String, String> {
        match self.full {
            Some(full) if self.listed.variables.is_empty() && !full.variables.is_empty() => {
                let lookup = |k: &str| {
                    full.variables
                        .get(k)
                        .cloned()
                        .or_else(|| ctx.var(k).map(str::to_string))
                };
                full.variables
                    .iter()
                    .map(|(k, v)| (k.clone(), expand::expand(v, &lookup)))
                    .collect()
            }
            _ => self.listed.variables.clone(),
        }
    }

    /// The pull policies the job allows for it.
    pub fn pull_policies(&self) -> &[String] {
        self.full
            .map(|s| s.pull_policy.as_slice())
            .unwrap_or_default()
    }
}

/// The job's services that name an image, in order.
pub fn requested_services(ctx: &JobContext) -> Result<Vec<RequestedService<'_>>, ProtocolError> {
    let Some(text) = ctx.non_empty_var(env::JOB_SERVICES) else {
        return Ok(Vec::new());
    };
    let listed: Vec<ImageSpec> =
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidVariable {
            name: env::job_variable(env::JOB_SERVICES),
            reason: format!("is not the runner's JSON list of services: {e}"),
        })?;
    // Empty names are listed too, keeping positions aligned with the payload's.
    Ok(listed
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !s.name.is_empty())
        .map(|(position, listed)| RequestedService {
            full: ctx.payload.services.get(position),
            listed,
        })
        .collect())
}
