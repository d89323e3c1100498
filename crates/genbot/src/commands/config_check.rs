//! `genbot config check`: the effective settings, redacted, with where each came from.

use genbot_assembly::TestHooks;
use genbot_config::Settings;
use genbot_engine::catalogue::Catalogue;

use crate::UsageError;

/// Prints the effective settings, after checking what only the catalogue can tell: that
/// `MODELS_FILE` parses and `DEFAULT_MODEL` is one of its enabled models (`serve` would refuse
/// to start otherwise, so a check that passed them would promise a start that fails).
/// The test hooks are checked as `serve` reads them (a bad value exits 2), and armed ones
/// are warned of on stderr.
pub(crate) fn run(settings: &Settings) -> anyhow::Result<()> {
    Catalogue::load(settings.models_file.as_deref(), &settings.default_model)
        .map_err(|e| UsageError(e.to_string()))?;
    let hooks = TestHooks::from_env().map_err(|e| UsageError(e.to_string()))?;
    print!("{}", render(settings));
    if let Some(warning) = hooks.warning() {
        eprintln!("genbot: warning: {warning}");
    }
    Ok(())
}

fn render(settings: &Settings) -> String {
    let effective = settings.effective();
    let width = effective
        .iter()
        .map(|e| e.key.name().len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("configuration is valid\n");
    match settings.file() {
        Some(path) => out.push_str(&format!("file: {}\n\n", path.display())),
        None => out.push_str("file: none (environment and defaults only)\n\n"),
    }
    for setting in effective {
        let origin = setting
            .origin
            .map_or_else(|| "unset".to_owned(), |o| o.to_string());
        out.push_str(&format!(
            "{:width$}  {:<44} [{origin}]\n",
            setting.key.name(),
            setting.shown,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use genbot_config::Sources;

    use super::*;

    #[test]
    fn lists_every_key_and_hides_secrets() {
        let env: HashMap<String, String> = [
            ("TELEGRAM_BOT_TOKEN", "42:very-secret"),
            ("DATABASE_URL", "postgres://u:pw-secret@127.0.0.1/test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings = Settings::from_sources(&Sources::from_env(env)).unwrap();
        let text = render(&settings);
        for key in genbot_config::Key::ALL {
            assert!(text.contains(key.name()), "{key} missing:\n{text}");
        }
        assert!(
            !text.contains("very-secret") && !text.contains("pw-secret"),
            "{text}"
        );
        assert!(text.contains("postgres://***:***@127.0.0.1/test"), "{text}");
    }
}
