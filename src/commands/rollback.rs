//! `rollback`: return the service to the previous (or a named) release's revision, with the
//! release's watcher.

use std::time::Instant;

use super::{interrupt, operator_log, temp_dir, CommandError, Target};
use crate::clock;
use crate::release::deadline::rollout_deadline;
use crate::release::ecs::short_td;
use crate::release::inputs;
use crate::release::report::ecs_console_url;
use crate::release::undo::{switch, Switch};
use crate::release::verbs::rollback::{choose, Pick, RollbackTo};
use crate::release::App;
use crate::settings::Settings;

/// Rolls the service back as `to` says; with `dry_run`, only says where it would go.
pub async fn rollback(
    settings: &Settings,
    target: &Target,
    to: RollbackTo,
    dry_run: bool,
) -> Result<(), CommandError> {
    let started = Instant::now();
    let access = inputs::collect_service(target, &settings.aws)?;
    let temp = temp_dir()?;
    let log = operator_log();
    let app = App::connect(&access.region, &access.credentials, temp.path(), &log).await?;
    let ecs = app.service(&access.target.cluster, &access.target.service);
    let choice = choose(&ecs, &access, &to).await?;
    let here = &choice.here;
    let chosen = match choice.pick {
        Pick::AlreadyThere(c) => {
            log.info(&format!(
                "{} already runs {} ({}): nothing to roll back",
                access.target.service,
                short_td(&c.arn),
                c.image
            ));
            return Ok(());
        }
        Pick::Switch(c) => c,
    };
    let move_line = format!(
        "{} from {} ({}) to {} ({})",
        access.target.service,
        short_td(&here.arn),
        here.image,
        short_td(&chosen.arn),
        chosen.image
    );
    if dry_run {
        log.info(&format!("Would roll {move_line}"));
        log.info("Dry run: the service was not changed");
        return Ok(());
    }
    log.step(&format!("Rolling {move_line}"));
    let mut cancel = interrupt()?;
    let spec = Switch {
        from: &here.arn,
        to: &chosen.arn,
        deadline: rollout_deadline(settings, &access.target, None, &log),
        poll: settings.ecs.poll_interval,
        strategy: &choice.strategy,
    };
    let report = switch(&ecs, &spec, &log, &mut cancel).await?;
    log.info(&format!(
        "The service runs {} again (deployment {})",
        short_td(&report.new_arn),
        report.deployment_id.unwrap_or_default()
    ));
    let console = ecs_console_url(
        &access.region,
        &access.target.cluster,
        &access.target.service,
    );
    log.info(&format!("rolled back: {move_line}"));
    log.info(&format!(
        "took:      {}",
        clock::human_duration(started.elapsed().as_secs() as i64)
    ));
    log.info(&format!("console:   {console}"));
    Ok(())
}
