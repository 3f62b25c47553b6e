//! `rollback`: return the service to the previous release's revision, a tag's or a numbered
//! one, chosen here from the family's revisions, and follow the switch with the release's
//! watcher.

use aws_sdk_ecs::types::TaskDefinition;

use crate::image_ref::ImageRef;
use crate::release::ecs::Ecs;
use crate::release::inputs::ServiceAccess;
use crate::release::strategy::{self, Strategy};
use crate::release::{taskdef, ReleaseError};

/// Which revision `rollback` returns to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTo {
    /// The newest older revision that runs a different image than the current one.
    Previous,
    /// The newest revision whose image has this tag.
    Tag(String),
    /// This revision number of the family.
    Revision(i32),
}

/// A revision of the family: ARN, revision number and the target container's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Task definition ARN.
    pub arn: String,
    /// Revision number.
    pub revision: i32,
    /// Image of the release container.
    pub image: String,
}

/// Why no revision to roll back to can be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoTarget {
    /// No older revision runs another image.
    #[error("no older ACTIVE revision runs another image than {image} (revision {revision})")]
    NoPrevious {
        /// The image the service runs.
        image: String,
        /// Its revision.
        revision: i32,
    },
    /// No revision runs the tag.
    #[error("no ACTIVE revision of {family} runs an image tagged {tag}{}", tag_hint(.tag, .tags))]
    NoSuchTag {
        /// The tag asked for.
        tag: String,
        /// The task definition family searched.
        family: String,
        /// The tags its ACTIVE revisions run, newest first.
        tags: Vec<String>,
    },
    /// The revision is not an active one of the family.
    #[error("revision {revision} is not an ACTIVE revision of {family} (ACTIVE: {})", revisions(.active))]
    NoSuchRevision {
        /// The revision asked for.
        revision: i32,
        /// The family searched.
        family: String,
        /// Its ACTIVE revisions, newest first.
        active: Vec<i32>,
    },
}

fn tag_hint(tag: &str, tags: &[String]) -> String {
    let listed = match tags.is_empty() {
        true => "; none of its revisions runs a tagged image".to_string(),
        false => format!("; its revisions run {}", tags.join(", ")),
    };
    let with_v = format!("v{tag}");
    match tags.contains(&with_v) {
        true => format!("{listed}. Did you mean {with_v}?"),
        false => listed,
    }
}

fn revisions(active: &[i32]) -> String {
    active
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where `rollback` takes the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// To this revision.
    Switch(Candidate),
    /// Nowhere: it already runs the revision asked for.
    AlreadyThere(Candidate),
}

/// Picks the revision to roll back to among the family's ACTIVE `candidates`, in revision
/// order whatever order the server listed them in.
pub fn pick_rollback(
    current: &Candidate,
    family: &str,
    candidates: &[Candidate],
    to: &RollbackTo,
) -> Result<Pick, NoTarget> {
    let mut newest_first: Vec<&Candidate> = candidates.iter().collect();
    newest_first.sort_by_key(|c| std::cmp::Reverse(c.revision));
    let found = match to {
        RollbackTo::Previous => newest_first
            .iter()
            .find(|c| c.revision < current.revision && c.image != current.image),
        RollbackTo::Tag(tag) => newest_first
            .iter()
            .find(|c| ImageRef::parse(&c.image).tag() == Some(tag.as_str())),
        RollbackTo::Revision(n) => newest_first.iter().find(|c| c.revision == *n),
    };
    let found = found.map(|c| (*c).clone()).ok_or_else(|| match to {
        RollbackTo::Previous => NoTarget::NoPrevious {
            image: current.image.clone(),
            revision: current.revision,
        },
        RollbackTo::Tag(tag) => {
            let mut tags: Vec<String> = Vec::new();
            for c in &newest_first {
                if let Some(t) = ImageRef::parse(&c.image).tag() {
                    if !tags.iter().any(|seen| seen == t) {
                        tags.push(t.to_string());
                    }
                }
            }
            NoTarget::NoSuchTag {
                tag: tag.clone(),
                family: family.to_string(),
                tags,
            }
        }
        RollbackTo::Revision(n) => NoTarget::NoSuchRevision {
            revision: *n,
            family: family.to_string(),
            active: newest_first.iter().map(|c| c.revision).collect(),
        },
    })?;
    Ok(match found.arn == current.arn {
        true => Pick::AlreadyThere(found),
        false => Pick::Switch(found),
    })
}

/// What the operator's rollback found: where the service is and where it would go.
pub struct Choice {
    /// The revision the service runs now.
    pub here: Candidate,
    /// Where to go, or that the service is already there.
    pub pick: Pick,
    /// How the service deploys, for following the switch.
    pub strategy: Strategy,
}

/// Reads the service and its family's revisions and picks the one `to` names; changes
/// nothing.
pub async fn choose(
    ecs: &impl Ecs,
    access: &ServiceAccess,
    to: &RollbackTo,
) -> Result<Choice, ReleaseError> {
    let service = ecs.describe_service().await?;
    strategy::check_service(&service)?;
    let strategy = Strategy::of(service.deployment_configuration());
    let current_arn = service.task_definition().unwrap_or_default().to_string();
    let current = ecs.task_definition(&current_arn).await?.definition;
    let repository = access.repository.clone().unwrap_or_default();
    let targets = taskdef::target_containers(&current, &access.target.containers, &repository)?;
    // The release's containers share one image; the first one tells which release it is.
    let container_name = targets
        .first()
        .and_then(|i| current.container_definitions()[*i].name());
    let image_of = |td: &TaskDefinition| {
        td.container_definitions()
            .iter()
            .find(|c| c.name() == container_name)
            .and_then(|c| c.image())
            .unwrap_or_default()
            .to_string()
    };
    let family = current.family().unwrap_or_default().to_string();
    let mut candidates = Vec::new();
    for arn in ecs.revisions(&family).await? {
        let td = ecs.task_definition(&arn).await?.definition;
        candidates.push(Candidate {
            arn,
            revision: td.revision(),
            image: image_of(&td),
        });
    }
    let here = Candidate {
        arn: current_arn,
        revision: current.revision(),
        image: image_of(&current),
    };
    let pick = pick_rollback(&here, &family, &candidates, to)?;
    Ok(Choice {
        here,
        pick,
        strategy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(rev: i32, tag: &str) -> Candidate {
        Candidate {
            arn: format!("arn:aws:ecs:r:1:task-definition/app:{rev}"),
            revision: rev,
            image: format!("r/app:{tag}"),
        }
    }

    fn picked(result: Result<Pick, NoTarget>) -> i32 {
        match result {
            Ok(Pick::Switch(c)) => c.revision,
            other => panic!("expected a switch, got {other:?}"),
        }
    }

    #[test]
    fn rollback_targets_in_revision_order_whatever_the_listing_order() {
        // As a server that ignores sort=DESC lists them.
        let all = [
            c(2, "v1.1.0"),
            c(5, "v1.3.0"),
            c(1, "v1.0.0"),
            c(3, "v1.2.3"),
            c(4, "v1.3.0"),
        ];
        let current = c(5, "v1.3.0");
        assert_eq!(
            picked(pick_rollback(&current, "app", &all, &RollbackTo::Previous)),
            3
        );
        assert_eq!(
            picked(pick_rollback(
                &current,
                "app",
                &all,
                &RollbackTo::Tag("v1.1.0".into())
            )),
            2
        );
        assert_eq!(
            picked(pick_rollback(
                &current,
                "app",
                &all,
                &RollbackTo::Revision(4)
            )),
            4
        );
        assert_eq!(
            pick_rollback(&current, "app", &all, &RollbackTo::Revision(5)),
            Ok(Pick::AlreadyThere(c(5, "v1.3.0")))
        );
        assert!(pick_rollback(&c(1, "v1.0.0"), "app", &all[2..3], &RollbackTo::Previous).is_err());
    }

    #[test]
    fn a_missing_tag_names_the_family_its_tags_and_a_missing_v() {
        let all = [c(3, "v1.2.3"), c(2, "v1.2.3"), c(1, "v1.0.0")];
        let err = pick_rollback(&all[0], "shop", &all, &RollbackTo::Tag("1.0.0".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no ACTIVE revision of shop runs an image tagged 1.0.0; its revisions run v1.2.3, \
             v1.0.0. Did you mean v1.0.0?"
        );
        let err = pick_rollback(&all[0], "shop", &all, &RollbackTo::Revision(9))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "revision 9 is not an ACTIVE revision of shop (ACTIVE: 3, 2, 1)"
        );
    }
}
