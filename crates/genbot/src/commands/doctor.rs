//! `genbot doctor [--webhook-url URL] [--format text|json]`: the preflight (see `crate::doctor`);
//! exit code 1 when any check FAILs.

use genbot_config::Settings;

use crate::cli::{DoctorArgs, DoctorFormat};
use crate::doctor::{self, Intent, Status};

/// Runs the checks and prints them; `Ok(false)` when one failed.
pub(crate) async fn run(settings: &Settings, args: DoctorArgs) -> bool {
    let report = doctor::run(
        settings,
        &Intent {
            webhook_url: args.webhook_url,
        },
    )
    .await;
    match args.format {
        DoctorFormat::Text => print!("{}", report.text()),
        DoctorFormat::Json => println!("{}", report.json()),
    }
    report.worst() != Status::Fail
}
