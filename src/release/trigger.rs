//! Whether a job is a native release: a pure decision over the job's stage, tag and opt-out
//! variable and the operator's settings.

use crate::settings::{ReleaseAction, ReleaseSettings, TagVerdict};

/// The decision for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An ordinary job: its script runs as written.
    NotRelease,
    /// A release stage whose job set `ECS_EXECUTOR_NATIVE=false`: its script runs.
    OptedOut,
    /// A native release of `tag`.
    Release {
        /// What to do.
        action: ReleaseAction,
        /// The version tag.
        tag: String,
    },
    /// A release stage asked for something that must not be released.
    Refused(Refusal),
}

/// Why a release stage refused a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The tag is one of `release.mutable_tags`.
    #[error(
        "tag `{0}` is mutable and cannot be released: a release needs an immutable version tag \
         such as v1.2.3 (settings: release.mutable_tags)"
    )]
    MutableTag(String),
    /// The ref is not protected and settings release protected refs only.
    #[error(
        "tag `{0}` is not protected in GitLab, and this runner releases protected refs only \
         (release.require_protected_ref in the executor settings): protect the tag \
         (Settings > Repository > Protected tags, e.g. `v*`) and run the pipeline again"
    )]
    UnprotectedRef(String),
    /// The grants do not let the project release to what it names.
    #[error(transparent)]
    NotGranted(#[from] super::authorize::NotGranted),
    /// `ECS_EXECUTOR_NATIVE` is neither true nor false.
    #[error(
        "ECS_EXECUTOR_NATIVE must be `true` or `false` (it turns the native release of this \
         stage off)"
    )]
    BadSwitch,
}

/// Decides what a job in `stage` on `tag` (`None` for branch pipelines) is; `protected`
/// says whether GitLab protects the ref.
pub fn decide(
    stage: &str,
    tag: Option<&str>,
    protected: bool,
    native: Option<&str>,
    settings: &ReleaseSettings,
) -> Trigger {
    let Some(&action) = settings.stages.get(stage) else {
        return Trigger::NotRelease;
    };
    match native.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "true" | "1" | "yes") => {}
        Some("false" | "0" | "no") => return Trigger::OptedOut,
        Some(_) => return Trigger::Refused(Refusal::BadSwitch),
    }
    let Some(tag) = tag.filter(|t| !t.is_empty()) else {
        return Trigger::NotRelease;
    };
    match settings.judge_tag(tag) {
        TagVerdict::Mutable => Trigger::Refused(Refusal::MutableTag(tag.to_string())),
        TagVerdict::NotAVersion => Trigger::NotRelease,
        TagVerdict::Releasable if settings.require_protected_ref && !protected => {
            Trigger::Refused(Refusal::UnprotectedRef(tag.to_string()))
        }
        TagVerdict::Releasable => Trigger::Release {
            action,
            tag: tag.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(stage: &str, tag: Option<&str>, native: Option<&str>) -> Trigger {
        decide(stage, tag, true, native, &ReleaseSettings::default())
    }

    #[test]
    fn an_unprotected_tag_is_refused_unless_settings_allow_it() {
        let mut s = ReleaseSettings::default();
        assert_eq!(
            decide("deploy", Some("v1.2.3"), false, None, &s),
            Trigger::Refused(Refusal::UnprotectedRef("v1.2.3".into()))
        );
        // A branch or a tag that is no version is no release, protected or not.
        assert_eq!(
            decide("deploy", Some("v1.2"), false, None, &s),
            Trigger::NotRelease
        );
        s.require_protected_ref = false;
        assert!(matches!(
            decide("deploy", Some("v1.2.3"), false, None, &s),
            Trigger::Release { .. }
        ));
    }

    #[test]
    fn semantic_version_tags_on_the_deploy_stage_release() {
        assert_eq!(
            check("deploy", Some("v1.2.3"), None),
            Trigger::Release {
                action: ReleaseAction::Release,
                tag: "v1.2.3".into()
            }
        );
        assert!(matches!(
            check("deploy", Some("v10.20.30"), Some("true")),
            Trigger::Release { .. }
        ));
    }

    #[test]
    fn other_tags_branches_and_stages_are_ordinary_jobs() {
        for tag in [
            Some("v1.2"),
            Some("1.2.3"),
            Some("v1.2.3-rc1"),
            Some("v1.2.3\n"),
            None,
            Some(""),
        ] {
            assert_eq!(check("deploy", tag, None), Trigger::NotRelease, "{tag:?}");
        }
        assert_eq!(check("test", Some("v1.2.3"), None), Trigger::NotRelease);
    }

    #[test]
    fn opting_out_and_bad_switch_values() {
        assert_eq!(
            check("deploy", Some("v1.2.3"), Some("false")),
            Trigger::OptedOut
        );
        assert!(matches!(
            check("deploy", Some("v1.2.3"), Some("maybe")),
            Trigger::Refused(_)
        ));
    }

    #[test]
    fn mutable_tags_are_refused_even_with_a_loose_pattern() {
        let s = ReleaseSettings {
            tag_pattern: crate::settings::Pattern::new(".*").unwrap(),
            ..ReleaseSettings::default()
        };
        for tag in ["latest", "stable", "test", "LATEST"] {
            let t = decide("deploy", Some(tag), true, None, &s);
            assert!(
                matches!(&t, Trigger::Refused(Refusal::MutableTag(_))),
                "{tag}: {t:?}"
            );
        }
        // With the default pattern a moving tag is simply not a version: the job's script runs.
        assert_eq!(check("deploy", Some("latest"), None), Trigger::NotRelease);
    }

    #[test]
    fn push_action_for_a_mapped_build_stage() {
        let mut s = ReleaseSettings::default();
        s.stages.insert("build".into(), ReleaseAction::Push);
        assert_eq!(
            decide("build", Some("v2.0.0"), true, None, &s),
            Trigger::Release {
                action: ReleaseAction::Push,
                tag: "v2.0.0".into()
            }
        );
    }
}
