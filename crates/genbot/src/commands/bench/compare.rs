//! `genbot bench compare OLD.json NEW.json`: prints the comparison, writes it as HTML, and
//! exits 1 when a metric regressed beyond `--max-regression` and beyond noise, went missing,
//! or a grade or readiness fell.

use std::process::ExitCode;

use genbot_bench::compare::{Comparison, Run};

use crate::cli::CompareArgs;
use crate::UsageError;

/// Exit code when a metric regressed.
const EXIT_REGRESSED: u8 = 1;

pub(super) fn run(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let usage = |e: genbot_bench::compare::CompareError| UsageError(e.to_string());
    let load = |first: &std::path::Path, more: &[std::path::PathBuf]| {
        std::iter::once(first)
            .chain(more.iter().map(std::path::PathBuf::as_path))
            .map(Run::load)
            .collect::<Result<Vec<Run>, _>>()
    };
    let olds = load(&args.old, &args.old_repeat).map_err(usage)?;
    let news = load(&args.new, &args.new_repeat).map_err(usage)?;
    let comparison = Comparison::repeated(olds, news, args.max_regression).map_err(usage)?;
    print!("{}", comparison.text());
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => args
            .new
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
    };
    let page = dir.join("comparison.html");
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&page, comparison.html()))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", page.display()))?;
    eprintln!("comparison: {}", page.display());
    Ok(if !comparison.fails() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REGRESSED)
    })
}
