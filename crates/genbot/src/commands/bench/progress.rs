//! What the operator sees while the suite runs: on a terminal, an overall bar and a spinner per
//! test with the live monitor line under it, grades in colour; otherwise (piped, CI) one plain
//! line per test; nothing with `--quiet`. Ends with a summary table.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use console::Style;
use genbot_bench::grade::{Grade, Lang};
use genbot_bench::monitor::Sample;
use genbot_bench::outcome::{TestId, TestOutcome};
use genbot_bench::suite::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Display {
    /// Bars and colours on a terminal.
    Rich,
    /// One plain line per test.
    Plain,
    Quiet,
}

impl Display {
    /// Rich on a terminal unless `NO_COLOR` is set; plain when piped; quiet when asked.
    pub(crate) fn detect(quiet: bool) -> Display {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            Display::Rich
        } else {
            Display::Plain
        }
    }
}

/// The [`Progress`] the CLI gives the suite.
#[derive(Debug)]
pub(crate) struct Terminal {
    display: Display,
    lang: Lang,
    bars: MultiProgress,
    overall: ProgressBar,
    current: Mutex<Option<(ProgressBar, Instant)>>,
}

impl Terminal {
    pub(crate) fn new(display: Display, lang: Lang, total: usize) -> Terminal {
        let target = if display == Display::Rich {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bars = MultiProgress::with_draw_target(target);
        let overall = bars.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} tests · {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Terminal {
            display,
            lang,
            bars,
            overall,
            current: Mutex::new(None),
        }
    }

    /// The grade label, coloured on a terminal.
    pub(crate) fn grade(&self, grade: Grade) -> String {
        let label = grade.label(self.lang);
        if self.display != Display::Rich {
            return label.to_owned();
        }
        let style = match grade {
            Grade::Excellent => Style::new().green().bold(),
            Grade::Good => Style::new().yellow().bold(),
            Grade::NeedsOptimization => Style::new().red().bold(),
            Grade::NeedsConfiguration => Style::new().blue().bold(),
        };
        style.force_styling(true).apply_to(label).to_string()
    }

    /// The verdict label (grade, or not applicable), coloured on a terminal.
    pub(crate) fn verdict(&self, test: &TestOutcome) -> String {
        if test.applies() {
            return self.grade(test.grade);
        }
        let label = test.verdict(self.lang);
        if self.display != Display::Rich {
            return label.to_owned();
        }
        Style::new()
            .dim()
            .force_styling(true)
            .apply_to(label)
            .to_string()
    }

    /// The table printed after the run: every test, its grade and its headline figure.
    pub(crate) fn summary(&self, tests: &[TestOutcome]) {
        if self.display == Display::Quiet {
            return;
        }
        self.overall.finish_and_clear();
        eprintln!();
        for test in tests {
            let headline = headline(test).unwrap_or_default();
            // Pad the plain label so colour codes do not break the columns.
            let pad = 28usize.saturating_sub(test.verdict(self.lang).chars().count());
            eprintln!(
                "  {:<36} {}{} {headline}",
                test.name,
                self.verdict(test),
                " ".repeat(pad)
            );
        }
        eprintln!();
    }
}

/// The one figure that says most about a test, for the summary table.
fn headline(test: &TestOutcome) -> Option<String> {
    if let Some(reason) = &test.not_applicable {
        return Some(reason.clone());
    }
    if test.id == TestId::ConcurrentUsers {
        if let Some(served) = concurrent_users_served(test) {
            return Some(served);
        }
    }
    let (name, unit, scale) = match test.id {
        TestId::DbRead | TestId::DbWrite => ("rps", " ops/s", 1.0),
        TestId::Cache => ("hit_rate", " % hits", 100.0),
        TestId::ConcurrentUsers => ("p99_ms", " ms p99", 1.0),
        TestId::Memory | TestId::MemoryUnderLoad => ("growth_mb", " MB growth", 1.0),
        TestId::SystemLimits => ("max_rps", " updates/s within SLO", 1.0),
        TestId::Semaphores => ("max_in_flight", " max in flight", 1.0),
        TestId::RateLimiting => ("measured_per_min", " /min measured", 1.0),
        TestId::ModelConfig => ("enabled", " models enabled", 1.0),
        TestId::CacheSettings => ("measured_expiry_ms", " ms to expire", 1.0),
        TestId::OperationSimulation => ("throughput_ratio", " % of bound", 100.0),
        TestId::Queue => ("lost_jobs", " jobs lost", 1.0),
        TestId::CrashRestart
        | TestId::RedisOutage
        | TestId::DatabaseOutage
        | TestId::ReplicateFaults
        | TestId::TelegramFaults
        | TestId::ReplicaFailover => ("jobs_lost", " jobs lost", 1.0),
        TestId::BadInput => ("bot_deaths", " deaths", 1.0),
    };
    let value = test.get(name)? * scale;
    value.is_finite().then(|| {
        if value.abs() >= 100.0 || value.fract() == 0.0 {
            format!("{value:.0}{unit}")
        } else {
            format!("{value:.2}{unit}")
        }
    })
}

/// The concurrent-users row when `genbot serve` was measured: users see the served p99 (the
/// grade is already the lower of both), so it leads; the in-process figure is capacity
/// without Telegram's send budget and is labelled so.
fn concurrent_users_served(test: &TestOutcome) -> Option<String> {
    let served = test
        .get(&format!(
            "{}p99_ms",
            genbot_bench::checks::served_users::PREFIX
        ))
        .filter(|v| v.is_finite())?;
    let mut line = format!("{served:.0} ms p99 served");
    if let Some(capacity) = test.get("p99_ms").filter(|v| v.is_finite()) {
        line.push_str(&format!(" (capacity {capacity:.0} ms p99)"));
    }
    Some(line)
}

fn monitor_line(sample: &Sample) -> String {
    format!(
        "CPU {:.0} % · RSS {:.0} MB · DB pool {}/{}{} · warnings/errors {}",
        sample.cpu_percent,
        sample.rss_mb,
        sample.pool_in_use,
        sample.pool_size,
        sample
            .pool_waiting
            .map_or_else(String::new, |w| format!(" ({w} waiting)")),
        sample.log_problems
    )
}

impl Progress for Terminal {
    fn started(&self, test: TestId, index: usize, total: usize) {
        let spinner = self
            .bars
            .insert_before(&self.overall, ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4}  {msg:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_prefix(format!("[{}/{total}] {}", index + 1, test.name(self.lang)));
        spinner.enable_steady_tick(Duration::from_millis(120));
        if self.display == Display::Plain {
            eprintln!("[{}/{total}] {} …", index + 1, test.name(self.lang));
        }
        if let Ok(mut current) = self.current.lock() {
            *current = Some((spinner, Instant::now()));
        }
    }

    fn sampled(&self, sample: &Sample) {
        if let Ok(current) = self.current.lock() {
            if let Some((spinner, _)) = current.as_ref() {
                spinner.set_message(monitor_line(sample));
            }
        }
    }

    fn finished(&self, outcome: &TestOutcome, latest: Option<&Sample>) {
        let Some((spinner, started)) = self.current.lock().ok().and_then(|mut c| c.take()) else {
            return;
        };
        let took = started.elapsed().as_secs_f64();
        let monitor = latest.map_or_else(String::new, |s| format!(" · {}", monitor_line(s)));
        match self.display {
            Display::Rich => {
                spinner.set_style(
                    ProgressStyle::with_template("✔ {prefix} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.finish_with_message(format!("{} ({took:.1} s)", self.verdict(outcome)));
                self.overall.inc(1);
            }
            Display::Plain => {
                spinner.finish_and_clear();
                eprintln!("    {} ({took:.1} s{monitor})", outcome.verdict(self.lang));
            }
            Display::Quiet => spinner.finish_and_clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_scales_ratios_to_percent_and_skips_missing_figures() {
        let mut cache = TestOutcome::new(TestId::Cache, Lang::En);
        cache.metric("hit_rate", 0.996);
        assert_eq!(headline(&cache).as_deref(), Some("99.60 % hits"));
        let empty = TestOutcome::new(TestId::DbRead, Lang::En);
        assert_eq!(headline(&empty), None);
    }

    #[test]
    fn concurrent_users_headline_leads_with_the_served_figure() {
        let mut users = TestOutcome::new(TestId::ConcurrentUsers, Lang::En);
        users.metric("p99_ms", 207.0);
        assert_eq!(headline(&users).as_deref(), Some("207 ms p99"));
        users.metric("serve_p99_ms", 1480.4);
        assert_eq!(
            headline(&users).as_deref(),
            Some("1480 ms p99 served (capacity 207 ms p99)")
        );
    }

    #[test]
    fn grades_are_plain_off_a_terminal() {
        let plain = Terminal::new(Display::Plain, Lang::Ru, 1);
        assert_eq!(plain.grade(Grade::Excellent), "ОТЛИЧНО ✅");
        let rich = Terminal::new(Display::Rich, Lang::En, 1);
        assert!(rich.grade(Grade::NeedsOptimization).contains("\u{1b}["));
    }
}
